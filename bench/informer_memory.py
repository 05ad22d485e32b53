"""Memory per cached object in the scheduler and the controller manager (issue 16).

The full-scale density run left the scheduler and the controller manager at 1.8 GB of RSS each with
~70,000 pods, 5,000 Nodes and 5,000 Leases cached. This benchmark builds density's pods once and then
measures, each in a process of its own, what holding them costs:

1. Population: ``pilothouse server --disable scheduler,controller-manager`` (open flags), one
   ``pilothouse agent --simulate NODES`` (its nodes stay Ready and renew their Leases throughout), and
   a scheduler and a controller manager of this tree in child processes; Deployments of density's
   template (``tests/scale/workload.py``) scaled to ``--pods``; wait until every pod is Running (created
   by the ReplicaSet controller, bound by the scheduler, its status written by the agent, so each pod
   has density's managedFields). Then the scheduler and the controller manager stop: the Deployments
   stay satisfied, so nothing writes pods any more.
2. Measurement, ``--rounds`` times, alternating the trees given by ``--tree`` (each run as
   ``PYTHONPATH=<tree>``, e.g. a ``git archive`` of the base commit and this worktree): a child that
   starts ``Scheduler(url)`` or ``ControllerManager(url)`` (what ``pilothouse scheduler`` and
   ``pilothouse controller-manager`` run, without leader election and serving), waits until its
   caches are synced and its own CPU use has settled, collects garbage and reports its RSS before
   starting and after, the objects its informers cache, and RSS bytes per cached object. Mode
   ``informer`` is a bare pod ``Informer`` (``--transform none|strip|strip+intern``, the last two only
   where the tree has ``transform=``); ``breakdown`` is the same under tracemalloc, with the traced
   bytes per pod, the top allocation sites and a deep-size split of a cached pod (managedFields,
   strings that equal another one, the cache's own keys).

    .venv/bin/python bench/informer_memory.py --pods 20000 --nodes 500 --tree /tmp/base --tree .

Run it from a copy of the tree (``cp -r pilothouse bench tests``) when the worktree may change while
it runs: each child imports its tree when it starts. ``--decode-costs FILE`` only times decoding and
the transforms over a saved LIST of pods.

Every process runs in its own process group, stopped whatever ends the run; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve()
NAMESPACE = "density"


# ---------------------------------------------------------------------------- child side
# The child imports pilothouse from PYTHONPATH (the tree measured), never from this worktree.

def rss(field: str = "VmRSS:") -> int:
    """This process's resident set (``VmHWM:``: its peak), in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


async def settle(limit: float, window: float = 2.0, idle: float = 0.05) -> float:
    """Wait until this process used less than ``idle`` of a core over ``window`` seconds (the
    components have handled their initial events), at most ``limit`` seconds; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = time.process_time()
        await asyncio.sleep(window)
        if time.process_time() - before < idle * window:
            break
    return time.monotonic() - start


def intern_strings(value: Any) -> Any:
    """A candidate transform: every string value of at most 64 characters replaced by its interned
    copy (dict keys are already shared: orjson caches them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if len(item) <= 64:
                    value[key] = sys.intern(item)
            elif isinstance(item, (dict, list)):
                intern_strings(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                if len(item) <= 64:
                    value[index] = sys.intern(item)
            elif isinstance(item, (dict, list)):
                intern_strings(item)
    return value


def deep_split(cache: dict[str, Any]) -> dict[str, float]:
    """Bytes per cached object by what holds them, each object counted once however often it is
    referenced (sys.getsizeof of every dict, list and string reachable from the cache)."""
    seen: set[int] = set()
    totals = {"all": 0, "managedFields": 0, "str_values": 0, "str_values_if_shared": 0, "dict_keys": 0,
              "containers": 0, "cache_keys": sum(sys.getsizeof(k) for k in cache)}
    values_seen: set[str] = set()

    def walk(value: Any, bucket: str | None) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        size = sys.getsizeof(value)
        totals["all"] += size
        if bucket:
            totals[bucket] += size
        if isinstance(value, dict):
            totals["containers"] += size
            for key, item in value.items():
                if id(key) not in seen:
                    seen.add(id(key))
                    totals["all"] += sys.getsizeof(key)
                    totals["dict_keys"] += sys.getsizeof(key)
                    if bucket:
                        totals[bucket] += sys.getsizeof(key)
                walk(item, "managedFields" if key == "managedFields" else bucket)
        elif isinstance(value, list):
            totals["containers"] += size
            for item in value:
                walk(item, bucket)
        elif isinstance(value, str):
            totals["str_values"] += size
            if value not in values_seen:
                values_seen.add(value)
                totals["str_values_if_shared"] += size

    for obj in cache.values():
        walk(obj, None)
    count = max(1, len(cache))
    return {name: round(total / count) for name, total in totals.items()}


async def child(args: argparse.Namespace) -> None:
    from pilothouse.client.rest import APIClient, resource

    gc.collect()
    base = rss()
    started = time.process_time()
    import pilothouse

    report: dict[str, Any] = {"mode": args.child, "tree": str(Path(pilothouse.__file__).parent.parent),
                              "transform": args.transform}
    informers: list[Any] = []
    stop: Any = None
    if args.child in ("informer", "breakdown"):
        from pilothouse.client import informer as informer_module
        transform = None
        if args.transform != "none":
            strip = informer_module.strip_managed_fields
            transform = strip if args.transform == "strip" else (lambda obj: intern_strings(strip(obj)))
        client = APIClient(args.url)
        if args.child == "breakdown":
            tracemalloc.start(1)
            traced_before = tracemalloc.get_traced_memory()[0]
        kwargs: dict[str, Any] = {"transform": transform} if transform is not None else {}
        pods = informer_module.Informer(client, resource("", "v1", "pods"), **kwargs)
        pods.start()
        await pods.wait_synced(600)
        informers = [pods]
        stop = pods.stop
    elif args.child == "scheduler":
        from pilothouse.components.scheduler import Scheduler
        scheduler = Scheduler(args.url)
        await scheduler.start(sync_timeout=600)
        informers = list(scheduler.informers._informers.values())
        stop = scheduler.stop
    elif args.child == "controller-manager":
        from pilothouse.components.controllers.manager import ControllerManager
        manager = ControllerManager(args.url)
        await manager.start()
        informers = list(manager.informers._informers.values())
        stop = manager.stop
    synced_cpu = time.process_time() - started
    if args.run:  # population: keep working until killed
        await asyncio.Event().wait()
    report["settle_s"] = round(await settle(args.settle), 1)
    gc.collect()
    now = rss()
    objects = {informer.resource.plural: len(informer.cache) for informer in informers if informer.cache}
    total = sum(objects.values())
    report.update(rss_base_mb=round(base / 2**20, 1), rss_mb=round(now / 2**20, 1),
                  rss_peak_mb=round(rss("VmHWM:") / 2**20, 1),
                  objects=objects, cached=total, rss_bytes_per_object=round((now - base) / max(1, total)),
                  sync_cpu_s=round(synced_cpu, 2))
    if args.child == "breakdown":
        pods_cache = informers[0].cache
        traced = tracemalloc.get_traced_memory()[0] - traced_before
        report["traced_bytes_per_pod"] = round(traced / max(1, len(pods_cache)))
        top = tracemalloc.take_snapshot().statistics("lineno")[:8]
        report["top_sites"] = [f"{stat.traceback[0].filename.rsplit('/', 2)[-1]}:{stat.traceback[0].lineno} "
                               f"{stat.size / max(1, len(pods_cache)):.0f} B/pod" for stat in top]
        tracemalloc.stop()
        report["deep_bytes_per_pod"] = deep_split(pods_cache)
        sample: dict[str, Any] = next(iter(pods_cache.values()), {})
        report["sample_json_bytes"] = len(json.dumps(sample))
        start = time.process_time()
        copies = [json.loads(json.dumps(obj)) for obj in list(pods_cache.values())[:2000]]
        decoded = time.process_time() - start
        start = time.process_time()
        for obj in copies:
            intern_strings(obj)
        report["intern_us_per_pod"] = round((time.process_time() - start) / max(1, len(copies)) * 1e6, 1)
        report["json_roundtrip_us_per_pod"] = round(decoded / max(1, len(copies)) * 1e6, 1)
    print(json.dumps(report), flush=True)
    await stop()


def decode_costs(path: str) -> None:
    """CPU per pod event of the decode and of each transform, over the items of a saved LIST
    response (``curl URL/api/v1/namespaces/density/pods?limit=200 -o FILE``): best of 5 rounds."""
    import orjson

    from pilothouse.client.informer import share_strings, strip_managed_fields

    with open(path, "rb") as handle:
        raws = [orjson.dumps(item) for item in orjson.loads(handle.read())["items"]]

    def per_pod(function: Any, repeats: int = 20) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(repeats):
                for raw in raws:
                    function(raw)
            best = min(best, (time.process_time() - start) / (repeats * len(raws)))
        return round(best * 1e6, 1)

    print(json.dumps({"pods": len(raws), "json_bytes": sum(map(len, raws)) // max(1, len(raws)),
                      "decode_us": per_pod(orjson.loads),
                      "decode_strip_us": per_pod(lambda raw: strip_managed_fields(orjson.loads(raw))),
                      "decode_strip_share_us": per_pod(
                          lambda raw: share_strings(strip_managed_fields(orjson.loads(raw))))}))


# ---------------------------------------------------------------------------- parent side

def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def run_child(url: str, tree: str, mode: str, transform: str, settle_s: float, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, str(HERE), "--child", mode, "--url", url, "--transform", transform,
               "--settle", str(settle_s)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "tree": tree, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        return {"mode": mode, "tree": tree, "error": done.stderr.decode()[-2000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def populate(args: argparse.Namespace, url: str, group: Any, log: Any, data_dir: str) -> None:
    import urllib.request

    from tests.scale.workload import deployment

    def call(method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(url + path, method=method, data=None if body is None else
                                         json.dumps(body).encode(), headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def ready() -> int:
        """Pods Ready (simulated pods are Ready once Running), from the Deployments' status."""
        items = call("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")["items"]
        return sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in items)

    group.start([sys.executable, "-m", "pilothouse", "agent", "--server", url, "--simulate", str(args.nodes),
                 "--simulate-watch", "shared", "--node-name", "sim", "--port", str(free_port()),
                 "--root-dir", f"{data_dir}/agent"], stdout=log)
    components = [group.start([sys.executable, str(HERE), "--child", mode, "--url", url, "--run"], stdout=log,
                              env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)})
                  for mode in ("scheduler", "controller-manager")]
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and len(call("GET", "/api/v1/nodes")["items"]) < args.nodes:
        time.sleep(2)
    call("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    sizes = [args.pods_per_deployment] * (args.pods // args.pods_per_deployment)
    if args.pods % args.pods_per_deployment:
        sizes.append(args.pods % args.pods_per_deployment)
    for index, size in enumerate(sizes):
        call("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment(f"density-{index}"))
        call("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/density-{index}/scale",
             {"spec": {"replicas": size}}, "application/merge-patch+json")
    start = time.monotonic()
    running = 0
    while time.monotonic() < deadline and (running := ready()) < args.pods:
        time.sleep(5)
    print(f"population: {running}/{args.pods} pods Ready in {time.monotonic() - start:.0f} s "
          f"on {args.nodes} nodes; load {os.getloadavg()[0]:.1f}", flush=True)
    time.sleep(10)  # the last statuses' events reach the deployment and replica set controllers
    for process in components:
        os.killpg(process.pid, 15)
        process.wait(30)


def free_port() -> int:
    from tests.conftest import free_port as port
    return port()


def parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE.parent.parent))
    from bench.processes import ProcessGroup
    from tests.conftest import OPEN_FLAGS, wait_healthy

    url = f"http://127.0.0.1:{free_port()}"
    trees = [str(Path(tree).resolve()) for tree in args.tree] or [str(HERE.parent.parent)]
    with tempfile.TemporaryDirectory() as data_dir, open(args.log, "ab") as log, ProcessGroup() as group:
        server = group.start([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                              "--port", url.rsplit(":", 1)[1], "--disable", "scheduler,controller-manager",
                              *OPEN_FLAGS], stdout=log)
        wait_healthy(url, server)
        populate(args, url, group, log, data_dir)
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        for round_index in range(args.rounds):
            for tree in trees:
                for mode in modes:
                    # the bare informer's variants need transform=, so only the last tree (the new
                    # code) runs them; the tracemalloc breakdown is a diagnosis, taken once
                    if (mode in ("informer", "breakdown") and tree != trees[-1]) or \
                            (mode == "breakdown" and round_index):
                        continue
                    transforms = ["none", "strip", "strip+intern"] if mode in ("informer", "breakdown") \
                        else ["none"]
                    for transform in transforms:
                        before = cpu_seconds(server.pid)
                        result = run_child(url, tree, mode, transform, args.settle, args.child_timeout)
                        result["round"] = round_index
                        result["server_cpu_s"] = round(cpu_seconds(server.pid) - before, 1)
                        print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods-per-deployment", type=int, default=5000)
    parser.add_argument("--tree", action="append", default=[], help="a source tree to measure (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="breakdown,informer,scheduler,controller-manager")
    parser.add_argument("--settle", type=float, default=20.0, help="most seconds a child waits to go idle")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the population, in seconds")
    parser.add_argument("--child-timeout", type=float, default=300.0)
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("--decode-costs", default="", metavar="FILE",
                        help="only time decoding and the transforms over a saved LIST of pods")
    # child side
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--transform", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode_costs:
        decode_costs(args.decode_costs)
    elif args.child:
        asyncio.run(child(args))
    else:
        parent(args)


if __name__ == "__main__":
    main()
