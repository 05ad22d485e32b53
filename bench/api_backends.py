"""What the API costs on each datastore: create/get/list through HTTP on SQLite and on etcd, with raw baselines.

Usage::

    .venv/bin/python bench/api_backends.py [--requests 400]

In one run, on loopback: a single etcd member (tests/store/etcd_server.py), two ``pilothouse server``
processes without embedded components (one on SQLite, one on that etcd), and four suites with the
same operations at 1, 10 and 100 concurrent clients:

* ``api/sqlite`` and ``api/etcd``: pod create, get, list (limit 50) through HTTP, as bench/api.py does;
* ``raw/etcd``: the same puts, gets and 50-key range reads straight to etcd with the store's gateway
  client (:class:`pilothouse.store._etcd_client.EtcdClient`), no API server — the etcd floor;
* ``raw/sqlite``: the same through :class:`SQLiteStore` in this process — the SQLite floor.

It prints each suite and the throughput ratios (etcd API vs SQLite API; each API vs its raw store).
Every loop is bounded by ``--requests`` and bench/api.py's time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api import pod, row, run_level  # noqa: E402  (bench/api.py: same pod, same loop, same columns)

from pilothouse.store._etcd_client import EtcdClient, b64, prefix_end  # noqa: E402
from pilothouse.store.sqlite import SQLiteStore  # noqa: E402
from tests.conftest import OPEN_FLAGS, create_default_service_account, free_port, wait_healthy  # noqa: E402
from tests.store.etcd_server import EtcdCluster  # noqa: E402

__all__ = ["main"]

LEVELS = (1, 10, 100)
OPS = ("create", "get", "list")
Results = dict[tuple[str, int], float]
Op = Callable[[int], Awaitable[Any]]


async def suite(label: str, total: int, make: Callable[[int], tuple[Op, Op, Op]]) -> Results:
    """Run create, get and list at each concurrency level; ``make(level)`` gives fresh names per level."""
    results: Results = {}
    for concurrency in LEVELS:
        create, get, list_ = make(concurrency)
        for name, op, count in (("create", create, total), ("get", get, total), ("list", list_, max(total // 4, 50))):
            rate, latencies = await run_level(concurrency, count, op)
            print(row(f"{label} {name}", concurrency, rate, latencies), flush=True)
            results[(name, concurrency)] = rate
    return results


async def api_suite(label: str, url: str, total: int) -> Results:
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        base = url + "/api/v1/namespaces/default/pods"

        def make(level: int) -> tuple[Op, Op, Op]:
            async def create(i: int) -> None:
                async with session.post(base, data=orjson.dumps(pod(f"c{level}-{i}")),
                                        headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 201, await r.text()
                    await r.read()

            async def get(i: int) -> None:
                async with session.get(f"{base}/c{level}-{i % total}") as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            async def list_(_: int) -> None:
                async with session.get(base, params={"limit": "50"}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            return create, get, list_

        return await suite(label, total, make)


async def raw_etcd_suite(url: str, total: int) -> Results:
    client = EtcdClient([url])
    await client.start()
    prefix = b"/raw/registry/pods/default/"
    try:
        def make(level: int) -> tuple[Op, Op, Op]:
            async def create(i: int) -> None:
                # What a create needs: a txn "put if absent" (as the store does), with the same bytes.
                key = b64(prefix + f"c{level}-{i}".encode())
                await client.call("/v3/kv/txn", {
                    "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                    "success": [{"request_put": {"key": key, "value": b64(orjson.dumps(pod(f"c{level}-{i}")))}}],
                }, write=True)

            async def get(i: int) -> None:
                resp = await client.call("/v3/kv/range", {"key": b64(prefix + f"c{level}-{i % total}".encode())},
                                         write=False)
                assert resp.get("kvs"), resp

            async def list_(_: int) -> None:
                await client.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                                   "limit": "50"}, write=False)

            return create, get, list_

        return await suite("raw/etcd", total, make)
    finally:
        await client.close()


async def raw_sqlite_suite(directory: str, total: int) -> Results:
    store = SQLiteStore(os.path.join(directory, "raw.db"), compact_interval=None)
    await store.start()
    prefix = "/registry/core/pods/default/"
    try:
        def make(level: int) -> tuple[Op, Op, Op]:
            async def create(i: int) -> None:
                await store.create(f"{prefix}c{level}-{i}", orjson.dumps(pod(f"c{level}-{i}")))

            async def get(i: int) -> None:
                kv = await store.get(f"{prefix}c{level}-{i % total}")
                assert kv is not None

            async def list_(_: int) -> None:
                await store.list(prefix, limit=50)

            return create, get, list_

        return await suite("raw/sqlite", total, make)
    finally:
        await store.close()


def start_server(data_dir: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir, "--port", str(port),
         "--disable", "scheduler,controller-manager", *OPEN_FLAGS, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    create_default_service_account(url)  # no controller manager runs to make it
    return process, url


def ratios(title: str, numerator: Results, denominator: Results) -> None:
    print(f"\n{title}")
    for op in OPS:
        cells = [f"c={level}: {numerator[(op, level)] / denominator[(op, level)]:5.2f}x"
                 for level in LEVELS if denominator.get((op, level))]
        print(f"  {op:<7} " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=400, help="operations per level (create and get)")
    args = parser.parse_args()
    total = args.requests
    with tempfile.TemporaryDirectory() as tmp, EtcdCluster(1, base_dir=os.path.join(tmp, "etcd")) as etcd:
        sqlite_server, sqlite_url = start_server(os.path.join(tmp, "sqlite"))
        etcd_server, etcd_url = start_server(os.path.join(tmp, "etcd-api"), "--datastore-endpoint", etcd.endpoint)
        try:
            print(f"{'operation':<22}{'conc':>5}{'ops/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
            api_sqlite = asyncio.run(api_suite("api/sqlite", sqlite_url, total))
            api_etcd = asyncio.run(api_suite("api/etcd", etcd_url, total))
            raw_etcd = asyncio.run(raw_etcd_suite(etcd.members[0].client_url, total))
            raw_sqlite = asyncio.run(raw_sqlite_suite(tmp, total))
        finally:
            for process in (sqlite_server, etcd_server):
                process.terminate()
                process.wait(10)
    ratios("API throughput, etcd / SQLite (above 1: etcd faster):", api_etcd, api_sqlite)
    ratios("etcd: raw / through the API (the API's overhead factor):", raw_etcd, api_etcd)
    ratios("SQLite: raw / through the API (the API's overhead factor):", raw_sqlite, api_sqlite)
    ratios("Raw stores, etcd / SQLite:", raw_etcd, raw_sqlite)


if __name__ == "__main__":
    main()
