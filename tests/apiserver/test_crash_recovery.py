"""A server killed with SIGKILL during a write burst keeps every acknowledged write, and a watcher
resumes from its last resourceVersion without gaps or duplicates."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import free_port, start_server_process

NAMESPACE_PATH = "/api/v1/namespaces/default/configmaps"


async def _burst(url: str, acknowledged: list[str], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        index = 0

        async def one(i: int) -> None:
            name = f"burst-{i:05d}"
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": str(i)}}
            async with session.post(url + NAMESPACE_PATH, json=body) as response:
                if response.status == 201:
                    acknowledged.append(name)

        while not stop.is_set() and index < 20000:
            batch = range(index, index + 20)
            index += 20
            results = await asyncio.gather(*(one(i) for i in batch), return_exceptions=True)
            if any(isinstance(r, Exception) for r in results):
                return  # the server is gone


async def _watch(url: str, resource_version: str, seen: list[tuple[int, str, str]], limit: float) -> None:
    params = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": str(int(limit))}
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(url + NAMESPACE_PATH, params=params, timeout=aiohttp.ClientTimeout(total=limit + 5)) \
                as response:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = orjson.loads(line)
                    meta = event["object"]["metadata"]
                    seen.append((int(meta["resourceVersion"]), event["type"], meta["name"]))
    except (TimeoutError, aiohttp.ClientError):
        return


def test_sigkill_during_write_burst_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "crash"
    port = free_port()
    server = start_server_process(data_dir, port)
    acknowledged: list[str] = []
    seen: list[tuple[int, str, str]] = []

    async def before_crash() -> None:
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session, session.get(server.url + NAMESPACE_PATH) as response:
            start_rv = (await response.json())["metadata"]["resourceVersion"]
        watcher = asyncio.create_task(_watch(server.url, start_rv, seen, 30))
        burst = asyncio.create_task(_burst(server.url, acknowledged, stop))
        while len(acknowledged) < 600:
            await asyncio.sleep(0.02)
        server.process.send_signal(signal.SIGKILL)  # mid-burst: writes are in flight
        server.process.wait()
        stop.set()
        await asyncio.wait_for(burst, 30)
        await asyncio.wait_for(watcher, 30)

    asyncio.run(before_crash())
    assert len(acknowledged) >= 600
    restarted = start_server_process(data_dir, port)
    try:
        async def after_restart() -> dict[str, str]:
            async with aiohttp.ClientSession() as session, \
                    session.get(restarted.url + NAMESPACE_PATH) as response:
                listing = await response.json()
            last_rv = str(seen[-1][0]) if seen else listing["metadata"]["resourceVersion"]
            # Resume the watch where it broke off: it must deliver what the first one missed.
            await _watch(restarted.url, last_rv, seen, 3)
            return {item["metadata"]["name"]: item["data"]["i"] for item in listing["items"]}

        stored = asyncio.run(after_restart())
    finally:
        restarted.stop()
    missing = [name for name in acknowledged if name not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    for name in acknowledged:
        assert stored[name] == str(int(name.split("-")[1]))
    revisions = [rv for rv, _, _ in seen]
    assert revisions == sorted(set(revisions)), "watch events repeated or out of order across the restart"
    watched = {name for _, kind, name in seen if kind == "ADDED"}
    assert set(acknowledged) <= watched, "the resumed watch left a gap"
