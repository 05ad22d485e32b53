"""What one node Lease renewal costs the API server (issue 16): server CPU per renewal, PUT p50/p99.

Usage::

    .venv/bin/python bench/lease_renewal.py [--leases 2000] [--rate 200] [--windows 5] [--window 10]
        [--trees /tmp/old-tree,.] [--rounds 2] [--profile DIR]

At 5,000 nodes the kubelets' Leases are 500 PUTs a second before any pod is created. This starts one
``pilothouse server`` (SQLite, plain HTTP, AlwaysAllow, no scheduler or controller manager: only the
server's own CPU is measured), creates ``--leases`` Leases in ``kube-node-lease`` (as a kubelet's
lease controller writes them, with the Node as owner) and then renews them at ``--rate`` a second,
round robin, each a PUT of the object the last PUT returned with a new ``renewTime`` (the kubelet's
``latestLease``; a conflict refetches it), at most ``--concurrency`` at a time. Meanwhile, as in a
cluster: one informer on all Leases (the node lifecycle controller's: a LIST, then a watch whose
events are read) and ``--pod-watches`` kubelet pod watches (``fieldSelector=spec.nodeName=<node>``),
idle since no pod changes.

Per window of ``--window`` seconds (after ``--warmup``): renewals done, the server's CPU per renewal
(its threads' ``schedstat`` over the window, split into the event loop thread and the others,
mostly the SQLite writer), the PUT's p50 and p99 as this process sees them, and the Lease events the
informer received. ``--trees`` runs the same windows against each source tree in turn (``PYTHONPATH``
set to it; the default is this tree), ``--rounds`` times, alternating, so that old and new code are
compared in one invocation on a shared machine; the summary gives each tree's median and range.
``--profile DIR`` runs ``py-spy record --gil`` (``--native`` with ``--native``) over each run's windows.
Every loop is bounded by the windows' time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.leanhttp import LeanConnection  # noqa: E402
from bench.processes import ProcessGroup  # noqa: E402
from tests.conftest import OPEN_FLAGS, free_port, wait_healthy  # noqa: E402

NAMESPACE = "kube-node-lease"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
#: The agent's client sends its User-Agent as the field manager (client/rest.py).
MANAGER = "pilothouse-agent/sim0"


def renew_time() -> str:
    """``metav1.MicroTime`` as the kubelet writes it (meta.format_time_micro)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(index: int) -> dict[str, Any]:
    name = f"node-{index}"
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                              "uid": f"00000000-0000-4000-8000-{index:012d}"}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew_time()}}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the process's threads, from each thread's ``schedstat`` (ns): ``loop``
    (the main thread: the event loop) and ``threads`` (the others: the SQLite writer, mostly; Python
    does not name its threads for the kernel, so they are not told apart)."""
    out = {"loop": 0.0, "threads": 0.0}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                ns = int(handle.read().split()[0])
            out["loop" if int(task) == pid else "threads"] += ns / 1e9
    return out


@dataclass
class Counters:
    renewals: int = 0
    conflicts: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lease_events: int = 0
    pod_watch_bytes: int = 0


async def stream(host: str, port: int, path: str, counters: Counters, leases: bool) -> None:
    """A watch read until cancelled: counts the Lease events it carried (one JSON line each)."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        while chunk := await reader.read(1 << 16):
            if leases:
                counters.lease_events += chunk.count(b'{"type":"')
            else:
                counters.pod_watch_bytes += len(chunk)
    finally:
        writer.close()


async def renew(conn: LeanConnection, latest: list[dict[str, Any]], index: int, counters: Counters,
                record: bool) -> None:
    obj = latest[index]
    obj["spec"]["renewTime"] = renew_time()
    path = f"{LEASES}/{obj['metadata']['name']}?fieldManager={MANAGER}"
    start = time.perf_counter()
    status, body = await conn.request("PUT", path, orjson.dumps(obj))
    elapsed = time.perf_counter() - start
    if status == 200:
        latest[index] = orjson.loads(body)
        if record:
            counters.renewals += 1
            counters.latencies.append(elapsed)
        return
    if status == 409:  # the kubelet drops its latestLease and GETs it again
        counters.conflicts += 1
        status, body = await conn.request("GET", f"{LEASES}/{obj['metadata']['name']}")
        if status == 200:
            latest[index] = orjson.loads(body)
        return
    counters.errors += 1


async def renewals(port: int, latest: list[dict[str, Any]], rate: float, concurrency: int, seconds: float,
                   counters: Counters, recording: list[bool]) -> None:
    """Renew round robin at ``rate`` a second for ``seconds``, at most ``concurrency`` in flight."""
    pool: asyncio.Queue[LeanConnection] = asyncio.Queue()
    conns = [LeanConnection("127.0.0.1", port) for _ in range(concurrency)]
    for conn in conns:
        await conn.connect()
        pool.put_nowait(conn)
    in_flight: set[asyncio.Task[None]] = set()
    busy: set[int] = set()  # a Lease is renewed by one request at a time, as by its one kubelet

    async def one(index: int) -> None:
        conn = await pool.get()
        try:
            await renew(conn, latest, index, counters, recording[0])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counters.errors += 1
            await conn.close()
        finally:
            busy.discard(index)
            pool.put_nowait(conn)

    start = time.perf_counter()
    issued = 0
    while True:
        due = start + issued / rate
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if due > now:
            await asyncio.sleep(due - now)
        index = issued % len(latest)
        issued += 1
        if index in busy or len(in_flight) >= concurrency * 4:
            continue  # the server is behind: this renewal is skipped, as a late kubelet's would merge
        busy.add(index)
        task = asyncio.create_task(one(index))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    for conn in conns:
        await conn.close()


async def create_leases(port: int, count: int) -> list[dict[str, Any]]:
    latest: list[dict[str, Any]] = [{} for _ in range(count)]
    conns = [LeanConnection("127.0.0.1", port) for _ in range(16)]
    next_index = iter(range(count))

    async def worker(conn: LeanConnection) -> None:
        for index in next_index:
            status, body = await conn.request("POST", f"{LEASES}?fieldManager={MANAGER}",
                                              orjson.dumps(lease(index)))
            if status != 201:
                raise RuntimeError(f"creating lease {index}: {status} {body[:200]!r}")
            latest[index] = orjson.loads(body)
        await conn.close()

    await asyncio.gather(*(worker(conn) for conn in conns))
    return latest


@dataclass
class Window:
    tree: str
    renewals: int
    seconds: float
    cpu: dict[str, float]
    p50: float
    p99: float
    lease_events: int

    @property
    def ms_per_renewal(self) -> float:
        return sum(self.cpu.values()) / self.renewals * 1000 if self.renewals else float("nan")


async def measure(args: argparse.Namespace, tree: str, server_pid: int, port: int) -> list[Window]:
    latest = await create_leases(port, args.leases)
    counters = Counters()
    status, body = await LeanConnection("127.0.0.1", port).request("GET", "/apis/coordination.k8s.io/v1/leases")
    if status != 200:
        raise RuntimeError(f"listing leases: {status} {body[:200]!r}")
    revision = orjson.loads(body)["metadata"]["resourceVersion"]
    watches = [asyncio.create_task(stream(
        "127.0.0.1", port, f"/apis/coordination.k8s.io/v1/leases?watch=1&allowWatchBookmarks=true"
        f"&resourceVersion={revision}", counters, True))]
    for index in range(args.pod_watches):
        watches.append(asyncio.create_task(stream(
            "127.0.0.1", port, f"/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={revision}"
            f"&fieldSelector=spec.nodeName%3Dnode-{index}&timeoutSeconds=3600", counters, False)))
    await asyncio.sleep(min(5.0, 1.0 + args.pod_watches / 1000))  # the watches are open
    recording = [False]
    total = args.warmup + args.windows * args.window
    renewing = asyncio.create_task(renewals(port, latest, args.rate, args.concurrency, total, counters,
                                            recording))
    await asyncio.sleep(args.warmup)
    profiler = None
    if args.profile:
        out = Path(args.profile) / f"{len(os.listdir(args.profile)):02d}-{Path(tree).name or 'tree'}.txt"
        # --native needs the process stopped for each sample (py-spy refuses it with --nonblocking).
        profiler = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "--rate", str(args.profile_rate),
                                     *(["--native"] if args.native else ["--nonblocking"]), "--pid",
                                     str(server_pid), "--duration", str(int(args.windows * args.window)),
                                     "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    windows: list[Window] = []
    recording[0] = True
    for _ in range(args.windows):
        counters.renewals, counters.latencies = 0, []
        events_before = counters.lease_events
        cpu_before = thread_cpu(server_pid)
        start = time.perf_counter()
        await asyncio.sleep(args.window)
        cpu_after = thread_cpu(server_pid)
        elapsed = time.perf_counter() - start
        window = Window(tree, counters.renewals, elapsed, {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
                        quantile(counters.latencies, 0.5), quantile(counters.latencies, 0.99),
                        counters.lease_events - events_before)
        windows.append(window)
        print(f"  {tree:<28} {window.renewals / elapsed:7.0f}/s  server {window.ms_per_renewal:6.3f} ms/renewal "
              f"(loop {window.cpu['loop'] / max(1, window.renewals) * 1000:.3f}, threads "
              f"{window.cpu['threads'] / max(1, window.renewals) * 1000:.3f})  "
              f"{sum(window.cpu.values()) / elapsed:.2f} core  p50 {window.p50 * 1000:6.1f} ms  "
              f"p99 {window.p99 * 1000:6.1f} ms  informer events {window.lease_events}  "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    recording[0] = False
    await renewing
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    if profiler is not None:
        profiler.wait(timeout=60)
    if counters.conflicts or counters.errors:
        print(f"  ({counters.conflicts} conflicts, {counters.errors} errors)", flush=True)
    if counters.pod_watch_bytes > 1024 * args.pod_watches:
        print(f"  (pod watches received {counters.pod_watch_bytes} bytes)", flush=True)
    return windows


def run(args: argparse.Namespace, tree: str) -> list[Window]:
    port = free_port()
    # -P: the tree on PYTHONPATH comes first, not the working directory (nor the editable install).
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    with tempfile.TemporaryDirectory() as data_dir, ProcessGroup() as group:
        server = group.start([sys.executable, "-P", "-m", "pilothouse", "server", "--data-dir", data_dir,
                              "--port", str(port), "--disable", "scheduler,controller-manager", *OPEN_FLAGS],
                             stdout=subprocess.DEVNULL, env=env)
        wait_healthy(f"http://127.0.0.1:{port}", server, timeout=60)
        return asyncio.run(measure(args, tree, server.pid, port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--leases", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="renewals a second (2,000 nodes at 10 s: 200)")
    parser.add_argument("--concurrency", type=int, default=32, help="PUTs in flight at most (connections)")
    parser.add_argument("--pod-watches", type=int, default=None, help="kubelet pod watches (default: --leases)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--trees", default=str(ROOT), help="comma-separated source trees, run in turn")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", default="", help="directory for py-spy --gil raw profiles, one per run")
    parser.add_argument("--native", action="store_true", help="py-spy --native as well")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples a second")
    args = parser.parse_args()
    if args.pod_watches is None:
        args.pod_watches = args.leases
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    trees = [t for t in args.trees.split(",") if t]
    print(f"lease renewal: {args.leases} leases at {args.rate:.0f}/s, {args.concurrency} in flight, "
          f"{args.pod_watches} pod watches + 1 lease informer; {args.windows} x {args.window:.0f} s windows; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[Window]] = {tree: [] for tree in trees}
    for round_number in range(args.rounds):
        for tree in trees:
            print(f"round {round_number + 1}, {tree}:", flush=True)
            results[tree].extend(run(args, tree))
    print("\nserver CPU per renewal (ms): median [min-max] over windows; PUT p50 / p99 medians (ms)")
    for tree, windows in results.items():
        figures = [w.ms_per_renewal for w in windows]
        print(f"  {tree:<28} {statistics.median(figures):6.3f} [{min(figures):.3f}-{max(figures):.3f}]  "
              f"loop {statistics.median(w.cpu['loop'] / w.renewals * 1000 for w in windows):.3f}  "
              f"threads {statistics.median(w.cpu['threads'] / w.renewals * 1000 for w in windows):.3f}  "
              f"p50 {statistics.median(w.p50 for w in windows) * 1000:.1f}  "
              f"p99 {statistics.median(w.p99 for w in windows) * 1000:.1f}  "
              f"({sum(w.renewals for w in windows)} renewals)")


if __name__ == "__main__":
    main()
