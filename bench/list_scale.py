"""LIST at 150,000 pods and the API server's memory holding them (issue 16).

Usage::

    .venv/bin/python bench/list_scale.py [--pods 150000] [--nodes 5000] [--profile FILE]

One ``pilothouse server`` process (SQLite, no scheduler or controllers, plain HTTP): started once to
bootstrap its data dir, stopped, loaded with ``--pods`` Running pods (bench/scalepods.py, 3.5 KB each,
spread over ``--nodes`` nodes) straight through the store's writer, started again. Then, each timed
from request to the last byte read:

* the full list as JSON, and as the Table ``kubectl get`` asks for (no limit);
* the list in pages of 500 (``limit=500`` and continue tokens, as kubectl and informers read it): the
  mean, p99 and worst page; then again with 20 pod updates between pages, so that every page after the
  first reads the state at the first page's revision from the history;
* ``fieldSelector=spec.nodeName=<node>``: whole, and paged (``--node-list N``: only this, for N
  nodes, each list's wall time and server CPU; what 5,000 kubelets' lists and relists cost);
* the server's RSS (VmRSS) idle and after the lists, its peak (VmHWM), and the SQLite file and WAL;
* with ``--churn SECONDS``: pod writes with compaction every 15 s, the file, WAL and history rows
  every 10 s (``--churn-only`` skips the lists).

``--profile FILE`` runs the server under cProfile (its event-loop thread) and prints what dominated.
Targets (issue 16): a full list under 5 s, a page of 500 under 50 ms, RSS under 1.5 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scalepods import bulk_load, pod_key, running_pod  # noqa: E402

from pilothouse.apiserver.objects import encode_for_store  # noqa: E402
from pilothouse.store.sqlite import SQLiteStore  # noqa: E402
from tests.conftest import OPEN_FLAGS, free_port, terminate, wait_healthy  # noqa: E402

__all__ = ["main"]

TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")
PAGE = 500


def start(data_dir: Path, port: int, profile: str = "", compaction: float = 300.0) -> subprocess.Popen[bytes]:
    prefix = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [*prefix, "-m", "pilothouse", "server", "--data-dir", str(data_dir), "--port", str(port), *OPEN_FLAGS,
         "--disable", "scheduler,controller-manager", "--request-timeout", "10m",
         "--compaction-interval", str(compaction)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_healthy(f"http://127.0.0.1:{port}", process, timeout=120)
    return process


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """The server's user + system CPU time so far: on a machine other work is loading, the wall
    times below are stretched; the CPU a request cost the server is not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decode_cost_us() -> float:
    """µs of CPU for one orjson.loads of the benchmark's pod, here and now: 12 µs on this machine
    when quiet, several times that while other work shares its cores (which stretches CPU figures
    too, through caches and frequency)."""
    value = encode_for_store(running_pod("default", "x", "n", 0))
    started = time.process_time()
    for _ in range(2000):
        orjson.loads(value)
    return (time.process_time() - started) / 2000 * 1e6


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def curl(url: str, accept: str = "application/json") -> tuple[float, int]:
    """(seconds, bytes) of a whole response read by curl, which costs far less than the server: a
    Python client would time its own reading of 600 MB instead."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", f"Accept: {accept}", "-w",
                          "%{http_code} %{time_total} %{size_download}", url],
                         capture_output=True, text=True, check=True, timeout=600).stdout.split()
    if out[0] != "200":
        raise RuntimeError(f"{url}: {out[0]}")
    return float(out[1]), int(out[2])


async def timed_get(session: aiohttp.ClientSession, url: str, accept: str = "application/json") -> tuple[float, bytes]:
    started = time.perf_counter()
    async with session.get(url, headers={"Accept": accept}) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {body[:300]!r}")
    return time.perf_counter() - started, body


async def touch_pod(session: aiohttp.ClientSession, base: str, index: int, mark: int) -> None:
    """One write to the ``index``-th loaded pod (a label)."""
    name = f"density-5d4f8c7b9-{index:06d}"
    patch = {"metadata": {"labels": {"churn": str(mark)}}}
    async with session.patch(f"{base}/api/v1/namespaces/default/pods/{name}", data=orjson.dumps(patch),
                             headers={"Content-Type": "application/merge-patch+json"}) as response:
        await response.read()


async def paged(session: aiohttp.ClientSession, url: str, pid: int, churn: int = 0,
                base: str = "") -> tuple[list[float], int, float]:
    """Every page of ``url`` (limit 500); ``churn`` pod updates between pages. (page times, items,
    server CPU seconds spent on the pages, the updates' excluded)."""
    times: list[float] = []
    cpu = 0.0
    items = 0
    token = ""
    written = 0
    while True:
        sep = "&" if "?" in url else "?"
        page_url = f"{url}{sep}limit={PAGE}" + (f"&continue={token}" if token else "")
        before = cpu_seconds(pid)
        elapsed, body = await timed_get(session, page_url)
        cpu += cpu_seconds(pid) - before
        page = orjson.loads(body)
        times.append(elapsed)
        items += len(page["items"])
        token = page["metadata"].get("continue", "")
        if not token:
            return times, items, cpu
        for _ in range(churn):
            await touch_pod(session, base, written, written)
            written += 1


def summary(label: str, times: list[float], items: int, cpu: float) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"{label:<44} {len(times):>4} pages, {items:>7} items: mean {1000 * sum(times) / len(times):6.1f} ms, "
            f"p99 {1000 * p99:6.1f} ms, worst {1000 * ordered[-1]:6.1f} ms, total {sum(times):5.2f} s; "
            f"server CPU {1000 * cpu / len(times):5.1f} ms per page")


async def churn(base: str, db: Path, seconds: float, pods: int) -> None:
    """Pod writes (a label) for ``seconds`` (20 writers), printing the SQLite file, its WAL and the
    history rows every 10 s: with compaction keeping up they level off instead of growing."""
    deadline = time.monotonic() + seconds
    written = 0

    async def writer(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal written
        index = offset
        while time.monotonic() < deadline:
            await touch_pod(session, base, index % pods, written)
            written += 1
            index += 20

    async def report() -> None:
        started = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(10)
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                history = conn.execute("SELECT count(*) FROM log").fetchone()[0]
            print(f"  churn {time.monotonic() - started:4.0f} s: {written} writes, file {file_mb(db):.0f} MB, "
                  f"WAL {file_mb(db.with_name(db.name + '-wal')):.0f} MB, history rows {history}", flush=True)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(report(), *(writer(session, i) for i in range(20)))


async def node_lists(base: str, pid: int, nodes: int, count: int) -> None:
    """``count`` kubelet-style lists, one per node spread over the nodes: wall and server CPU each."""
    times: list[float] = []
    cpus: list[float] = []
    pods = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for i in range(count):
            node = f"node-{(i * nodes // count + nodes // (2 * count)) % nodes:04d}"
            cpu = cpu_seconds(pid)
            elapsed, body = await timed_get(session, f"{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
            cpus.append(cpu_seconds(pid) - cpu)
            times.append(elapsed)
            pods += len(orjson.loads(body)["items"])
    ordered = sorted(times)
    print(f"{'fieldSelector=spec.nodeName, ' + str(count) + ' nodes':<44} {pods / count:.0f} pods each: "
          f"wall mean {1000 * sum(times) / count:7.1f} ms, p99 {1000 * ordered[int(0.99 * (count - 1))]:7.1f} ms; "
          f"server CPU mean {1000 * sum(cpus) / count:7.1f} ms per list", flush=True)


async def measure(base: str, pid: int, nodes: int) -> None:
    node = f"node-{nodes // 2:04d}"
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        cpu = cpu_seconds(pid)
        elapsed, size = curl(f"{base}/api/v1/pods")
        print(f"{'full list, JSON':<44} {elapsed:6.2f} s, server CPU {cpu_seconds(pid) - cpu:5.2f} s "
              f"({size / 1e6:.0f} MB)", flush=True)
        print("  RSS after: {:.0f} MB (peak {:.0f} MB)".format(*memory(pid)), flush=True)
        cpu = cpu_seconds(pid)
        elapsed, size = curl(f"{base}/api/v1/pods", TABLE)
        print(f"{'full list, Table':<44} {elapsed:6.2f} s, server CPU {cpu_seconds(pid) - cpu:5.2f} s "
              f"({size / 1e6:.0f} MB)", flush=True)
        print("  RSS after: {:.0f} MB (peak {:.0f} MB)".format(*memory(pid)), flush=True)
        started, cpu = time.perf_counter(), cpu_seconds(pid)
        token, pages = "", 0
        while True:
            url = f"{base}/api/v1/pods?limit={PAGE}" + (f"&continue={token}" if token else "")
            _, body = await timed_get(session, url, TABLE)
            token = orjson.loads(body)["metadata"].get("continue", "")
            pages += 1
            if not token:
                break
        print(f"{'kubectl get pods -A (Table, chunks of 500)':<44} {time.perf_counter() - started:6.2f} s, "
              f"server CPU {cpu_seconds(pid) - cpu:5.2f} s ({pages} pages)", flush=True)
        print(summary("paged JSON, limit=500", *await paged(session, f"{base}/api/v1/pods", pid)), flush=True)
        print(summary("paged JSON, limit=500, 20 writes between pages",
                      *await paged(session, f"{base}/api/v1/pods", pid, churn=20, base=base)), flush=True)
        cpu = cpu_seconds(pid)
        elapsed, body = await timed_get(session, f"{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
        count = len(orjson.loads(body)["items"])
        print(f"{'fieldSelector=spec.nodeName (one node)':<44} {elapsed:6.2f} s, server CPU "
              f"{cpu_seconds(pid) - cpu:5.2f} s ({count} pods)", flush=True)
        print(summary("fieldSelector=spec.nodeName, limit=500",
                      *await paged(session, f"{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}", pid)),
              flush=True)
        elapsed, body = await timed_get(session, f"{base}/api/v1/namespaces/default/pods?limit={PAGE}")
        print(f"{'first page only (limit=500)':<44} {1000 * elapsed:6.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--profile", default="", help="write the server's cProfile here and print its top")
    parser.add_argument("--data-dir", default="", help="reuse (or keep) this data dir; loaded once")
    parser.add_argument("--churn", type=float, default=0.0,
                        help="then this many seconds of pod writes with compaction every 15 s (file and WAL)")
    parser.add_argument("--churn-only", action="store_true", help="skip the list measurements")
    parser.add_argument("--node-list", type=int, default=0, metavar="N",
                        help="measure only node-filtered lists, for N nodes")
    args = parser.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="list-scale-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        marker = data_dir / "loaded"
        if not marker.exists() or int(marker.read_text()) != args.pods:
            terminate(start(data_dir, port))  # bootstrap the data dir, then load it offline
            started = time.perf_counter()
            asyncio.run(_load(data_dir / "state.db", args.pods, args.nodes))
            marker.write_text(str(args.pods))
            print(f"loaded {args.pods} pods in {time.perf_counter() - started:.1f} s "
                  f"({len(encode_for_store(running_pod('default', 'x', 'n', 0)))} bytes each)", flush=True)
        print(f"machine now: one pod decode costs {decode_cost_us():.1f} µs of CPU (quiet: 12 µs); "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        process = start(data_dir, port, args.profile, compaction=15.0 if args.churn else 300.0)
        time.sleep(2)
        print("server RSS idle with {} pods: {:.0f} MB (peak {:.0f} MB)".format(args.pods, *memory(process.pid)),
              flush=True)
        if args.node_list:
            asyncio.run(node_lists(f"http://127.0.0.1:{port}", process.pid, args.nodes, args.node_list))
        elif not args.churn_only:
            asyncio.run(measure(f"http://127.0.0.1:{port}", process.pid, args.nodes))
        if args.churn:
            asyncio.run(churn(f"http://127.0.0.1:{port}", data_dir / "state.db", args.churn, args.pods))
        print("server RSS after the lists: {:.0f} MB (peak {:.0f} MB)".format(*memory(process.pid)), flush=True)
        print(f"SQLite file {file_mb(data_dir / 'state.db'):.0f} MB, WAL {file_mb(data_dir / 'state.db-wal'):.0f} MB")
    finally:
        terminate(process, timeout=60)
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.profile and os.path.exists(args.profile):
        stats = pstats.Stats(args.profile)
        stats.sort_stats("tottime").print_stats(25)


async def _load(path: Path, pods: int, nodes: int) -> None:
    async with SQLiteStore(path, compact_interval=None) as store:
        existing = await store.count(pod_key("default", ""))
        if existing:
            raise SystemExit(f"{path} already holds {existing} pods; use a fresh --data-dir")
        await bulk_load(store, pods, nodes)


if __name__ == "__main__":
    main()
