"""What API Priority and Fairness costs a request that does not wait (docs/decisions/flowcontrol.md).

Usage::

    .venv/bin/python bench/flowcontrol_cost.py [--iterations 200000] [--clients 100]

Times ``PriorityAndFairness.acquire`` and the release it returns, in a loop on one event loop, for
an exempt caller (``system:masters``) and for a limited one (an authenticated user, in
``global-default``) whose level always has a free seat: the classification (a cache hit once warm),
the seat and the metrics, which every request pays; prints microseconds per request for each.
Then the queued case: ``--clients`` tasks of that user, each taking a seat, yielding once to the
loop (its "work") and giving it back, over ``global-default``'s 49 seats (of 600), against the same
tasks with seats to spare; the difference is what a request that waits in a queue costs the loop.
The configuration is the bootstrap one (the filter is not started, so it reads no store).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

from pilothouse.apiserver.auth import CALLER, Caller, UserInfo
from pilothouse.apiserver.flowcontrol.controller import PriorityAndFairness
from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.store.sqlite import SQLiteStore

CALLERS = {"exempt (system:masters)": UserInfo("root", ("system:masters", "system:authenticated")),
           "limited (global-default)": UserInfo("alice", ("system:authenticated",))}


async def client(flow_control: PriorityAndFairness, request: Any, info: Any, count: int) -> None:
    for _ in range(count):
        release = await flow_control.acquire(request, info, 60.0)
        await asyncio.sleep(0)  # the request's work: one turn of the loop
        release()


async def measure(iterations: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        flow_control = PriorityAndFairness(SQLiteStore(f"{directory}/state.db"), 600)
        info = parse_request_info("GET", "/api/v1/namespaces/default/pods/p1")
        for name, user in CALLERS.items():
            request: dict[Any, Any] = {CALLER: Caller(user, None)}  # type: ignore[arg-type]
            (await flow_control.acquire(request, info, 60.0))()  # type: ignore[arg-type]  # warm the cache
            started = time.perf_counter()
            for _ in range(iterations):
                release = await flow_control.acquire(request, info, 60.0)  # type: ignore[arg-type]
                release()
            elapsed = time.perf_counter() - started
            print(f"{name:26} {elapsed / iterations * 1e6:6.2f} µs per request (acquire + release)")
        request = {CALLER: Caller(CALLERS["limited (global-default)"], None)}  # type: ignore[arg-type]
        for seats in (600, 100_000):
            contended = PriorityAndFairness(SQLiteStore(f"{directory}/state.db"), seats)
            level = contended.classify(CALLERS["limited (global-default)"], info).queues
            per_client = iterations // clients

            started = time.perf_counter()
            await asyncio.gather(*(client(contended, request, info, per_client) for _ in range(clients)))
            elapsed = time.perf_counter() - started
            label = f"{clients} clients, {level.limit if level else 0} seats"
            print(f"{label:26} {elapsed / (per_client * clients) * 1e6:6.2f} µs per request "
                  f"(dispatched {level.dispatched if level else 0}, of them queued {level.queued if level else 0})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(measure(args.iterations, args.clients))


if __name__ == "__main__":
    main()
