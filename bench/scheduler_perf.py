"""Scheduler throughput, in the style of kube-scheduler's scheduler_perf ``SchedulingBasic``.

Why this exists: the scheduler must keep up with bursts of pod creations on large clusters (target:
more than 270 pods/s with 5,000 nodes on a 2-core machine), with every step going through the real
API server. This script measures it end to end:

1. start a real ``pilothouse server`` subprocess with its own temporary data dir;
2. use the scheduler ``pilothouse server`` embeds (a child process; its RSS/CPU are read from /proc),
   or with ``--separate-scheduler`` run the server with ``--disable scheduler`` and start
   ``run_scheduler`` as a process of our own (needed for ``--profile``). The controller manager is
   disabled, as scheduler_perf runs only the API server and the scheduler;
3. create N nodes (4 cpu, 32Gi, 110 pods, Ready, like scheduler_perf's node-default.yaml) and
   ``--existing-pods`` pods already bound (``spec.nodeName`` set) through the API;
4. create M pods (100m cpu / 500Mi memory requests, like pod-default.yaml) through the API and time,
   via a watch, until every one is bound.

It prints pods/s (first create sent -> last bound observed), p50/p99 of create -> bound latency and
the scheduler process's RSS. Usage (from the repository root):

    .venv/bin/python bench/scheduler_perf.py --nodes 100,1000,5000 --pods 1000
    .venv/bin/python bench/scheduler_perf.py --nodes 1000 --separate-scheduler --profile /tmp/sched.prof
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pilothouse.client.rest import APIClient, resource  # noqa: E402

__all__ = ["main"]

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
CONCURRENCY = 32

SCHEDULER_CODE = """
import asyncio, signal, sys
from pilothouse.components.scheduler import Scheduler
url, profile, events = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
profiler = None
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()

async def main():
    scheduler = Scheduler(url, record_scheduled_events=events)
    await scheduler.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print("scheduler stats:", scheduler.scheduled, "bound;", scheduler.stats, file=sys.stderr, flush=True)
    await scheduler.stop()

asyncio.run(main())
if profiler is not None:
    profiler.disable()
    profiler.dump_stats(profile)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            if response.read() == b"ok":
                return
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (to see who is the bottleneck on 2 cores)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def embedded_scheduler_pid(server_pid: int, timeout: float = 30.0) -> int:
    """The ``pilothouse scheduler`` child the server's supervisor started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if int(stat[1]) == server_pid and b"scheduler" in cmdline:
                    return int(entry.name)
        time.sleep(0.1)
    raise RuntimeError("the server did not start an embedded scheduler")


def node_object(i: int) -> dict[str, Any]:
    name = f"node-{i:05d}"
    resources = {"cpu": "4", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                   "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "spec": {},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def pod_object(name: str, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{
        "name": "pause", "image": "registry.k8s.io/pause:3.10", "ports": [{"containerPort": 80}],
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                      "limits": {"cpu": "100m", "memory": "500Mi"}}}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def create_all(client: APIClient, r: Any, objects: list[dict[str, Any]],
                     sent: dict[str, float] | None = None) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for obj in objects:
        queue.put_nowait(obj)

    async def worker() -> None:
        while not queue.empty():
            obj = queue.get_nowait()
            if sent is not None:
                sent[obj["metadata"]["name"]] = time.monotonic()
            await client.create(r, obj)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


async def run_case(nodes: int, existing: int, measured: int, profile: str, events: bool,
                   separate: bool, data_root: str | None = None) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="sched-perf-", dir=data_root))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = open(data_dir / "server.log", "wb")  # noqa: SIM115
    disable = "scheduler,controller-manager" if separate else "controller-manager"
    server = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                               "--port", str(port), "--disable", disable,
                               # The explicit opt-outs (tests/conftest.py's OPEN_FLAGS): plain HTTP, allow all.
                               "--secure=false", "--authorization-mode=AlwaysAllow"],
                              stdout=server_log, stderr=subprocess.STDOUT, cwd=ROOT)
    scheduler: subprocess.Popen[bytes] | None = None
    client = APIClient(url, user_agent="scheduler-perf")
    try:
        wait_ready(url, server)
        # No controller manager runs: make the account ServiceAccount admission wants.
        await client.create(resource("", "v1", "serviceaccounts"), {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}, "default")
        if separate:
            sched_log = open(data_dir / "scheduler.log", "wb")  # noqa: SIM115
            scheduler = subprocess.Popen([sys.executable, "-c", SCHEDULER_CODE, url, profile,
                                          "1" if events else "0"],
                                         stdout=sched_log, stderr=subprocess.STDOUT, cwd=ROOT)
            scheduler_pid = scheduler.pid
        else:
            scheduler_pid = embedded_scheduler_pid(server.pid)
        started = time.monotonic()
        await create_all(client, NODES, [node_object(i) for i in range(nodes)])
        await create_all(client, PODS, [pod_object(f"existing-{i}", f"node-{i % nodes:05d}")
                                        for i in range(existing)])
        setup = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the scheduler's informers catch up with the setup

        sent: dict[str, float] = {}
        bound: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            version = (await client.list(PODS, "default", limit=1))["metadata"]["resourceVersion"]
            async for event in client.watch(PODS, "default", resource_version=version, bookmarks=False):
                obj = event.get("object") or {}
                name = (obj.get("metadata") or {}).get("name", "")
                if name.startswith("measured-") and (obj.get("spec") or {}).get("nodeName") and name not in bound:
                    bound[name] = time.monotonic()
                    if len(bound) >= measured:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        cpu_before = (cpu_seconds(scheduler_pid), cpu_seconds(server.pid), time.process_time())
        first = time.monotonic()
        await create_all(client, PODS, [pod_object(f"measured-{i}") for i in range(measured)], sent)
        created = time.monotonic() - first
        try:
            await asyncio.wait_for(done.wait(), timeout=max(120.0, measured / 10))
        finally:
            watcher.cancel()
        last = max(bound.values())
        cpu_after = (cpu_seconds(scheduler_pid), cpu_seconds(server.pid), time.process_time())
        cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        latencies = [bound[n] - sent[n] for n in bound]
        return {"nodes": nodes, "pods": measured, "setup_s": setup, "create_s": created,
                "pods_per_s": measured / (last - first), "p50_ms": percentile(latencies, 0.5) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
                "scheduler_rss_mb": rss_mb(scheduler_pid), "server_rss_mb": rss_mb(server.pid),
                "scheduler_cpu_s": cpu[0], "server_cpu_s": cpu[1], "bench_cpu_s": cpu[2], "wall_s": last - first}
    finally:
        await client.close()
        for process in (scheduler, server):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
        if separate:
            print((data_dir / "scheduler.log").read_text().strip()[-600:], file=sys.stderr)
        if os.environ.get("KEEP_DATA"):
            print(f"data kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="100,1000", help="comma-separated node counts (e.g. 100,1000,5000)")
    parser.add_argument("--existing-pods", type=int, default=1000, help="pods created already bound")
    parser.add_argument("--pods", type=int, default=1000, help="pods to schedule and time")
    parser.add_argument("--separate-scheduler", action="store_true",
                        help="run the scheduler as our own process instead of the server's embedded one")
    parser.add_argument("--no-scheduled-events", action="store_true",
                        help="with --separate-scheduler: do not record Scheduled events (to see what they cost)")
    parser.add_argument("--data-root", default=None,
                        help="where the server's temp data dir goes (e.g. /dev/shm: no fsync latency)")
    parser.add_argument("--profile", default="", help="write a cProfile of the scheduler process here")
    args = parser.parse_args()
    print(f"{'nodes':>6} {'pods':>5} {'setup s':>8} {'create s':>8} {'pods/s':>7} {'p50 ms':>7} {'p99 ms':>8} "
          f"{'sched RSS MB':>12} {'server RSS MB':>13}  CPU s during the run (wall/sched/server/bench)")
    for count in (int(n) for n in args.nodes.split(",") if n):
        result = asyncio.run(run_case(count, args.existing_pods, args.pods, args.profile,
                                          not args.no_scheduled_events, args.separate_scheduler or bool(args.profile),
                                          args.data_root))
        print(f"{result['nodes']:>6.0f} {result['pods']:>5.0f} {result['setup_s']:>8.1f} {result['create_s']:>8.1f} "
              f"{result['pods_per_s']:>7.1f} {result['p50_ms']:>7.0f} {result['p99_ms']:>8.0f} "
              f"{result['scheduler_rss_mb']:>12.0f} {result['server_rss_mb']:>13.0f}  "
              f"{result['wall_s']:.1f}/{result['scheduler_cpu_s']:.1f}/{result['server_cpu_s']:.1f}/"
              f"{result['bench_cpu_s']:.1f}", flush=True)


if __name__ == "__main__":
    main()
