"""Server CPU per kubelet-style watch start from an old revision (issue 16, history reads).

M pods are created and bound across N nodes in a SQLite store whose ring is too small to hold them,
then each node starts a pod watch with its ``spec.nodeName`` trigger from revision 1 and reads its
node's events. Run both ways in one invocation: the trigger without ``field`` (the history range is
read and filtered in Python, as before) and with it (the log's node index). Prints CPU seconds per
watch start and the ratio.

    .venv/bin/python bench/watch_start.py --nodes 200 --pods 6000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import orjson

from pilothouse.store.interface import KeyValue, WatchTrigger
from pilothouse.store.sqlite import SQLiteStore

PREFIX = "/registry/core/pods/"


def _extract(kv: KeyValue) -> str | None:
    try:
        return str(orjson.loads(kv.value).get("spec", {}).get("nodeName", ""))
    except orjson.JSONDecodeError:
        return None


def _pod(i: int, node: str | None) -> bytes:
    spec: dict[str, object] = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                               "env": [{"name": f"E{j}", "value": "x" * 40} for j in range(20)]}]}
    if node is not None:
        spec["nodeName"] = node
    return orjson.dumps({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"p{i}", "namespace": "ns"}, "spec": spec})


async def _starts(store: SQLiteStore, nodes: list[str], upto: int, indexed: bool) -> tuple[float, int]:
    cpu = time.process_time()
    events = 0
    for node in nodes:
        needle = b'"nodeName":' + orjson.dumps(node)
        trigger = WatchTrigger(_extract, node, lambda kv, n=needle: n in kv.value,
                               "spec.nodeName" if indexed else None)
        watch = store.watch(PREFIX, 1, trigger)
        try:
            async for ev in watch:
                events += 1
                if ev.kv.key.endswith(f"/end-{node}") or ev.revision >= upto:
                    break
        finally:
            await watch.aclose()
    return time.process_time() - cpu, events


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--pods", type=int, default=6000)
    args = ap.parse_args()
    nodes = [f"node-{n}" for n in range(args.nodes)]
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteStore(Path(tmp) / "s.db", compact_interval=None, ring_size=16) as store:
            for i in range(args.pods):
                kv = await store.create(f"{PREFIX}ns/p{i}", _pod(i, None))
                await store.update(kv.key, _pod(i, nodes[i % len(nodes)]), expected_mod_revision=kv.mod_revision)
            # the last event on each node's watch: a marker pod per node, so every watch ends on its own
            for node in nodes:
                await store.create(f"{PREFIX}ns/end-{node}", _pod(-1, node))
            upto = await store.current_revision()
            results = {}
            for indexed in (False, True, False, True):
                cpu, events = await _starts(store, nodes, upto, indexed)
                results.setdefault(indexed, []).append((cpu, events))
    load = os.getloadavg()[0]
    for indexed, runs in results.items():
        best = min(cpu for cpu, _ in runs)
        print(f"{'indexed' if indexed else 'scan   '}: {best / len(nodes) * 1000:8.2f} ms CPU per watch start"
              f" ({runs[0][1]} events to {len(nodes)} watchers, {2 * args.pods + len(nodes)} revisions)")
    ratio = min(c for c, _ in results[False]) / max(1e-9, min(c for c, _ in results[True]))
    print(f"scan/indexed CPU ratio: {ratio:.1f}x  (load {load:.1f})")


if __name__ == "__main__":
    asyncio.run(main())
