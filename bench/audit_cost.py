"""What the audit log costs: bench/api.py's creates and gets against two servers run at once, one
without auditing and one logging every request at ``Metadata`` (``--audit-log-path``,
``--audit-policy-file``), and their ratio.

Usage::

    .venv/bin/python bench/audit_cost.py [--requests 2000] [--rounds 3] [--level Metadata]

Each level runs ``--rounds`` times, the two servers in turn, and keeps each side's best round (as
bench/api.py's ``--tls-compare``), so load from other work on a shared machine does not land on one
side only. Plain HTTP with AlwaysAllow on both sides, so the difference is the audit path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import HEADER, lean_level, percentile, pod, row
from bench.leanhttp import LeanConnection
from tests.conftest import OPEN_FLAGS, create_default_service_account, free_port, wait_healthy


@contextlib.contextmanager
def server(level: str | None) -> Iterator[tuple[str, int, Path | None]]:
    """(url, pid, audit log) of a server of its own, auditing every request at ``level`` (None: off)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        flags: list[str] = []
        log = None
        if level is not None:
            policy = Path(data_dir) / "policy.yaml"
            policy.write_text(f"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: {level}\n")
            log = Path(data_dir) / "audit.log"
            flags = ["--audit-log-path", str(log), "--audit-policy-file", str(policy)]
        process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                                    "--port", str(port), "--disable", "scheduler,controller-manager",
                                    *OPEN_FLAGS, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            create_default_service_account(url)
            yield url, process.pid, log
        finally:
            process.terminate()
            process.wait(10)


async def compare(servers: dict[bool, tuple[str, int, Path | None]], total: int, rounds: int) -> None:
    path = "/api/v1/namespaces/default/pods"
    print(f"{'':<7}{HEADER}")
    for concurrency in (1, 10, 100):
        for op in ("create", "get"):
            best: dict[bool, tuple[float, list[float], float]] = {}
            for round_ in range(rounds):
                for audited, (url, pid, _) in servers.items():
                    prefix, first = f"c{concurrency}-r{round_}", f"c{concurrency}-r0"

                    async def create(c: LeanConnection, i: int, prefix: str = prefix) -> None:
                        status, body = await c.request("POST", path, orjson.dumps(pod(f"{prefix}-{i}")))
                        assert status == 201, body

                    async def get(c: LeanConnection, i: int, first: str = first) -> None:
                        status, body = await c.request("GET", f"{path}/{first}-{i % total}")
                        assert status == 200, body

                    measured = await lean_level(url, concurrency, total, pid, create if op == "create" else get)
                    if audited not in best or measured[0] > best[audited][0]:
                        best[audited] = measured
            for audited, (rate, latencies, cpu) in best.items():
                print(f"{'audit' if audited else 'off':<7}" + row(op, concurrency, rate, latencies, cpu))
            (off_rate, off_lat, off_cpu), (on_rate, on_lat, on_cpu) = best[False], best[True]
            print(f"{'':<7}  audit/off: throughput x{on_rate / off_rate:.2f}, "
                  f"p99 x{percentile(on_lat, 0.99) / percentile(off_lat, 0.99):.2f}, "
                  f"server CPU x{on_cpu / off_cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--level", default="Metadata", choices=["Metadata", "Request", "RequestResponse"])
    args = parser.parse_args()
    with server(None) as off, server(args.level) as on:
        asyncio.run(compare({False: off, True: on}, args.requests, args.rounds))
        log = on[2]
        assert log is not None
        lines = log.read_bytes().count(b"\n")
        print(f"\naudit log: {lines} events, {log.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
