"""The pod-address allocator does not block the agent's event loop (issue 15): it scanned its
file-per-address directory synchronously, so with a nearly full range every probe, heartbeat and
status write of the node waited for the whole scan."""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import os
import time
from pathlib import Path

from pilothouse.components.agent.podnet import PodNetwork

CIDR = "10.250.0.0/19"  # 8,189 usable addresses


async def test_allocating_in_a_nearly_full_range_keeps_the_loop_responsive(tmp_path: Path) -> None:
    network = PodNetwork(CIDR, bridge="phtest0", ipam_root=tmp_path)
    network.ipam_dir.mkdir(parents=True)
    hosts = list(ipaddress.IPv4Network(CIDR).hosts())[1:]  # the gateway is never handed out
    free = str(hosts[-2])
    for address in hosts:
        if str(address) != free:  # held by a live sandbox process (ours): not stale
            (network.ipam_dir / str(address)).write_text(f"held\n{os.getpid()}")

    stalls: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            stalls.append(loop.time() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    result = network.allocate("sandbox-x")
    address = await result if inspect.isawaitable(result) else result
    took = time.monotonic() - started
    await asyncio.sleep(0.05)  # the tick that spanned a blocking scan reports it
    ticking.cancel()
    assert address == free
    assert (network.ipam_dir / free).read_text().startswith("sandbox-x")
    assert max(stalls) < max(0.1, took / 4), (max(stalls), took)
