"""What one pod event costs the API server with many node-filtered pod watches (issue 16).

Usage::

    .venv/bin/python bench/watch_fanout.py [--watchers 10,5000] [--events 400] [--no-index]

In this process: the store's watch fan-out (:class:`WatchHub`, as the SQLite store runs it) under the
registry's watch (:meth:`ResourceStorage.watch`: the filtering and translation every watch request
runs), with N watchers each filtered by ``spec.nodeName=node-i`` as kubelets watch, plus one
unfiltered watcher (an informer). Each event updates a Running pod (3.5 KB, bench/scalepods.py) on
one node, so it interests two watchers whatever N is. The figure is event-loop time per event from
publishing to the last interested watcher having received it (no disk, no HTTP: those cost the same
whatever N is). ``--no-index`` serves every watch without a trigger, as before the index: each event
is offered to every watcher, which decodes and filters it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Not bench/ on sys.path: tests import this module (tests/apiserver/test_per_pod_cost.py), and bench/dns.py
# would then shadow dnspython's ``dns`` for every test collected after them.
if __package__:
    from bench.scalepods import pod_key, running_pod
else:  # run as a script: its own directory is on the path already
    from scalepods import pod_key, running_pod  # type: ignore[no-redef]

from pilothouse.apiserver import admission, fieldindex  # noqa: E402
from pilothouse.apiserver.objects import encode_for_store  # noqa: E402
from pilothouse.apiserver.registry import ListOptions, ResourceStorage  # noqa: E402
from pilothouse.machinery.kinds import BUILTIN_RESOURCES  # noqa: E402
from pilothouse.machinery.selectors import parse_field_selector  # noqa: E402
from pilothouse.store.interface import EventType, KeyValue, ListResult, WatchEvent, WatchTrigger  # noqa: E402
from pilothouse.store.watchhub import Watch, WatchHub  # noqa: E402

__all__ = ["HubStore", "bare_hub", "main"]

PODS_PER_NODE = 30


class HubStore:
    """Just what ResourceStorage.watch asks of a store, over a bare hub (no disk)."""

    def __init__(self, hub: WatchHub) -> None:
        self.hub = hub

    async def current_revision(self) -> int:
        return self.hub.revision

    def watch(self, prefix: str, start_revision: int, trigger: WatchTrigger | None = None) -> Watch:
        return self.hub.watch(prefix, start_revision, trigger)


async def _no_history(prefix: str, after: int, upto: int, limit: int,
                      trigger: object) -> list[WatchEvent]:
    return []


async def _no_snapshot(prefix: str) -> ListResult:
    return ListResult([], 0, False)


def bare_hub(queue_size: int = 10000) -> WatchHub:
    """A hub with no history and no snapshot behind it: events are only what is published
    (``queue_size``: each watcher's queue, in events)."""
    return WatchHub(load_history=_no_history, load_snapshot=_no_snapshot, queue_size=queue_size)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(watchers: int, events: int) -> tuple[float, float]:
    """(seconds of event-loop time per event, KB of memory per watcher) with ``watchers`` node
    watches (and one unfiltered)."""
    hub = bare_hub()
    store = HubStore(hub)
    pods = next(r for r in BUILTIN_RESOURCES if r.plural == "pods" and not r.group)
    storage = ResourceStorage(pods, store, admission.NamespaceLifecycle(store))  # type: ignore[arg-type]
    received = [0]
    expected = [0]
    done = asyncio.Event()

    async def consume(selector: str) -> None:
        options = ListOptions(field_selector=parse_field_selector(selector))
        async for _ in storage.watch(None, options, send_initial=False):
            received[0] += 1
            if received[0] >= expected[0]:
                done.set()

    before = rss_mb()
    tasks = [asyncio.create_task(consume(f"spec.nodeName=node-{i:04d}")) for i in range(watchers)]
    tasks.append(asyncio.create_task(consume("")))
    await asyncio.sleep(0.5)  # every watcher registered and waiting
    per_watcher = (rss_mb() - before) * 1024 / (watchers + 1)
    nodes = max(watchers, 1)
    previous: dict[str, KeyValue] = {}
    batch: list[WatchEvent] = []
    revision = hub.revision
    for index in range(events):
        node = f"node-{index % nodes:04d}"
        name = f"density-5d4f8c7b9-{index:06d}"
        key = pod_key("default", name)
        revision += 1
        obj = running_pod("default", name, node, index)
        previous[key] = KeyValue(key, encode_for_store(obj), revision, revision)
        revision += 1
        obj["status"]["conditions"][2]["status"] = "False"
        kv = KeyValue(key, encode_for_store(obj), previous[key].create_revision, revision)
        batch.append(WatchEvent(EventType.PUT, kv, previous[key]))
    # Two interested watchers per event: the pod's node and the unfiltered one.
    expected[0] = 2 * events if watchers else events
    started = time.perf_counter()
    for start in range(0, events, 10):  # groups of ten, as the writer commits under load
        hub.publish(batch[start:start + 10])
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    hub.close()
    return elapsed / events, per_watcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", default="10,5000", help="comma-separated watcher counts")
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--no-index", action="store_true", help="no trigger: every watcher sees every event")
    args = parser.parse_args()
    if args.no_index:
        fieldindex.trigger_for = lambda *args: None  # type: ignore[assignment]
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    counts = [int(n) for n in args.watchers.split(",")]
    results = {}
    with runner:
        for count in counts:
            results[count], per_watcher = runner.run(run(count, args.events))
            print(f"{count:>6} node watchers (+1 unfiltered), index {'off' if args.no_index else 'on'}: "
                  f"{results[count] * 1e6:9.1f} µs per event; {per_watcher:.1f} KB per watcher (store and "
                  f"registry only)", flush=True)
    if len(counts) > 1:
        low, high = min(counts), max(counts)
        print(f"ratio {high} vs {low} watchers: {results[high] / results[low]:.2f}x")


if __name__ == "__main__":
    main()
