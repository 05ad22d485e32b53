"""put/get/list through the etcd Store backend against the raw etcd baseline, in one run.

Starts one etcd member on loopback (tests/store/etcd_server.py) and measures, with the same client:

* ``raw-gw``: the JSON gateway calls themselves (``EtcdClient.call``: put, range, range-prefix) — the
  floor the store layer sits on;
* ``store``: ``EtcdStore.create`` (a txn with a compare), ``get``, ``list``;
* ``raw-grpc``: the same through ``aetcd`` (gRPC), only when it is importable — the alternative client.

Usage: ``.venv/bin/python bench/store_etcd_raw.py [--n 400] [--concurrency 32] [--list-size 1000]``.
Bounded: a few thousand requests to 127.0.0.1, then the etcd process is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pilothouse.store._etcd_client import EtcdClient, b64, prefix_end
from pilothouse.store.etcd import EtcdStore
from tests.store.etcd_server import EtcdCluster

__all__ = ["main"]

Op = Callable[[int], Awaitable[Any]]


async def measure(name: str, op: Op, n: int, concurrency: int = 1) -> dict[str, float]:
    lat: list[float] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            t = time.perf_counter()
            await op(i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat.sort()
    row = {"ops/s": n / wall, "p50 ms": statistics.median(lat) * 1e3,
           "p99 ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3}
    print(f"{name:<34} {row['ops/s']:>9.0f} {row['p50 ms']:>9.2f} {row['p99 ms']:>9.2f}", flush=True)
    return row


async def bench(args: argparse.Namespace) -> None:
    n, c, size = args.n, args.concurrency, args.list_size
    with EtcdCluster(1) as cluster:
        url = cluster.members[0].client_url
        client = EtcdClient([url])
        await client.start()
        store = EtcdStore(cluster.endpoint, compact_interval=None)
        await store.start()
        value = b"x" * 1000  # a typical small object
        print(f"etcd 3.4 single member, value {len(value)} B; {'op':<31} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9}")

        async def raw_put(i: int, tag: str = "raw") -> None:
            await client.call("/v3/kv/put", {"key": b64(f"/{tag}/{i:06d}"), "value": b64(value)}, write=True)

        async def raw_get(i: int) -> None:
            await client.call("/v3/kv/range", {"key": b64(f"/raw/{i % n:06d}")}, write=False)

        list_prefix = b"/list/"

        async def raw_list(_: int) -> None:
            await client.call("/v3/kv/range", {"key": b64(list_prefix), "range_end": b64(prefix_end(list_prefix))},
                              write=False)

        await measure("raw-gw   put (seq)", raw_put, n)
        await measure("store    create (seq)", lambda i: store.create(f"/store/{i:06d}", value), n)
        await measure("raw-gw   get (seq)", raw_get, n)
        await measure("store    get (seq)", lambda i: store.get(f"/store/{i % n:06d}"), n)
        await measure(f"raw-gw   put (x{c})", lambda i: raw_put(i, "rawc"), n * 4, c)
        await measure(f"store    create (x{c})", lambda i: store.create(f"/storec/{i:06d}", value), n * 4, c)
        await measure(f"raw-gw   get (x{c})", raw_get, n * 4, c)
        await measure(f"store    get (x{c})", lambda i: store.get(f"/store/{i % n:06d}"), n * 4, c)
        await asyncio.gather(*(store.create(f"/list/{i:06d}", value) for i in range(size)))
        await measure(f"raw-gw   range {size} keys", raw_list, 20)
        await measure(f"store    list {size} keys", lambda _: store.list("/list/"), 20)
        await measure(f"store    list {size} keys, pages of 500", lambda _: _paged(store), 20)

        try:
            import aetcd  # type: ignore[import-not-found]
        except ImportError:
            print("(aetcd not importable: gRPC baseline skipped)")
        else:
            host, port = url.removeprefix("http://").split(":")
            async with aetcd.Client(host=host, port=int(port)) as g:
                await measure("raw-grpc put (seq)", lambda i: g.put(f"/grpc/{i:06d}".encode(), value), n)
                await measure("raw-grpc get (seq)", lambda i: g.get(f"/grpc/{i % n:06d}".encode()), n)
                await measure(f"raw-grpc put (x{c})", lambda i: g.put(f"/grpcc/{i:06d}".encode(), value), n * 4, c)
                await measure(f"raw-grpc get (x{c})", lambda i: g.get(f"/grpc/{i % n:06d}".encode()), n * 4, c)
                await measure(f"raw-grpc range {size} keys", lambda _: g.get_prefix(list_prefix), 20)
        await store.close()
        await client.close()


async def _paged(store: EtcdStore) -> None:
    res = await store.list("/list/", limit=500)
    while res.more:
        res = await store.list("/list/", limit=500, start_after=res.items[-1].key, revision=res.revision)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--list-size", type=int, default=1000)
    asyncio.run(bench(p.parse_args()))


if __name__ == "__main__":
    main()
