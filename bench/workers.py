"""``pilothouse server --workers``: one worker against two, in one invocation.

Usage::

    .venv/bin/python bench/workers.py [--requests 2000] [--workers 1,2] [--concurrency 10,100]

For each worker count in turn, starts a ``pilothouse server --workers N`` of its own (plain HTTP, the
API alone: no scheduler nor controllers), and drives pod creates, gets and lists (``limit=50``) over
lean keep-alive connections (bench/leanhttp.py) from this process on uvloop, at each concurrency.
Prints ops/s, p50 and p99, and the server's CPU per request summed over its worker processes, then
the ratio of each count to the first. The load generator shares the machine: on 2 cores it takes
CPU the workers could use, so the figures are a floor for what a second core gives.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import HEADER, cpu_seconds, lean_level, percentile, pod, row
from bench.leanhttp import LeanConnection
from tests.conftest import OPEN_FLAGS, create_default_service_account, free_port, wait_healthy

PATH = "/api/v1/namespaces/default/pods"


def server_pids(leader: int) -> list[int]:
    """The leader and its worker children (not the embedded components: none run here)."""
    pids = [leader]
    for task in Path(f"/proc/{leader}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


@contextlib.contextmanager
def workers_server(workers: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                                    "--port", str(port), "--disable", "scheduler,controller-manager",
                                    "--workers", str(workers), *OPEN_FLAGS],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            deadline = time.monotonic() + 30
            while len(server_pids(process.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # the siblings bootstrap, then listen
            create_default_service_account(url)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(15)


Result = tuple[float, list[float], float]


async def suite(url: str, leader: int, workers: int, total: int, levels: list[int]) -> dict[tuple[str, int], Result]:
    results: dict[tuple[str, int], Result] = {}
    for concurrency in levels:
        prefix = f"w{workers}-c{concurrency}"

        async def create(c: LeanConnection, i: int, prefix: str = prefix) -> None:
            status, body = await c.request("POST", PATH, orjson.dumps(pod(f"{prefix}-{i}")))
            assert status == 201, body

        async def get(c: LeanConnection, i: int, prefix: str = prefix) -> None:
            status, body = await c.request("GET", f"{PATH}/{prefix}-{i % total}")
            assert status == 200, body

        async def list_page(c: LeanConnection, i: int) -> None:
            status, body = await c.request("GET", f"{PATH}?limit=50")
            assert status == 200, body

        for op, call, count in (("create", create, total), ("get", get, total),
                                ("list (limit 50)", list_page, max(total // 4, 100))):
            pids = server_pids(leader)
            before = sum(cpu_seconds(pid) for pid in pids)
            rate, latencies, _ = await lean_level(url, concurrency, count, leader, call)
            cpu = (sum(cpu_seconds(pid) for pid in pids) - before) / max(1, len(latencies)) * 1e6
            results[(op, concurrency)] = (rate, latencies, cpu)
            print(f"{workers:>3}  " + row(op, concurrency, rate, latencies, cpu), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", default="1,2", help="Worker counts to compare, the first the baseline.")
    parser.add_argument("--concurrency", default="10,100")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    levels = [int(n) for n in args.concurrency.split(",")]
    print(f"{'N':>3}  {HEADER}  (server µs: CPU per request, all worker processes)")
    measured: dict[int, dict[tuple[str, int], Result]] = {}
    for workers in counts:
        with workers_server(workers) as (url, leader):
            measured[workers] = uvloop.run(suite(url, leader, workers, args.requests, levels))
    base = counts[0]
    print(f"\nratio to {base} worker(s): throughput, p50, p99, server CPU per request")
    for workers in counts[1:]:
        for key, (rate, latencies, cpu) in measured[workers].items():
            base_rate, base_lat, base_cpu = measured[base][key]
            print(f"{workers:>3}  {key[0]:<18} c={key[1]:<4} x{rate / base_rate:5.2f}"
                  f"  x{percentile(latencies, 0.5) / percentile(base_lat, 0.5):5.2f}"
                  f"  x{percentile(latencies, 0.99) / percentile(base_lat, 0.99):5.2f}"
                  f"  x{cpu / base_cpu:5.2f}")


if __name__ == "__main__":
    main()
