"""1,000 concurrent watches held open against a real server over loopback: every one is served, the
server keeps answering other requests quickly, a write reaches every watcher, and the server's
memory per watch stays small (its RSS is measured before and while they are open)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
from kubernetes import client

from tests.conftest import ServerProcess

WATCHES = 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def hold_watches(server: ServerProcess) -> dict[str, float]:
    url = f"{server.url}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=120&resourceVersion="
    api = client.CoreV1Api(client.ApiClient(_configuration(server)))
    revision = api.list_namespaced_config_map("default").metadata.resource_version
    before = rss_mib(server.process.pid)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=180)) as session:
        responses = []
        for _ in range(WATCHES // 100):  # opened in bounded batches, as informers reconnect
            responses += await asyncio.gather(*(session.get(url + revision) for _ in range(100)))
        assert [r.status for r in responses] == [200] * WATCHES
        held = rss_mib(server.process.pid)
        # Other requests are answered promptly while the watches are open.
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            await asyncio.to_thread(api.read_namespace, "default")
            latencies.append(time.monotonic() - started)
        # One write reaches every watcher.
        started = time.monotonic()
        await asyncio.to_thread(api.create_namespaced_config_map, "default",
                                client.V1ConfigMap(metadata=client.V1ObjectMeta(name="to-all")))

        async def first_event(response: aiohttp.ClientResponse) -> str:
            line = await asyncio.wait_for(response.content.readline(), 60)
            return str(json.loads(line)["object"]["metadata"]["name"])

        names = await asyncio.gather(*(first_event(r) for r in responses))
        fan_out = time.monotonic() - started
        assert names == ["to-all"] * WATCHES
        for response in responses:
            response.close()
    return {"rss_before": before, "rss_held": held, "worst_get": max(latencies), "fan_out": fan_out}


def _configuration(server: ServerProcess) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = server.url
    return configuration


def test_a_thousand_watches(server: ServerProcess) -> None:
    figures = asyncio.run(hold_watches(server))
    print(f"\n{WATCHES} watches: RSS {figures['rss_before']:.0f} → {figures['rss_held']:.0f} MiB, "
          f"worst GET {figures['worst_get'] * 1000:.0f} ms, one write to all in {figures['fan_out']:.2f} s")
    assert figures["worst_get"] < 2.0, figures
    assert figures["fan_out"] < 30.0, figures
    # A watch costs a connection, a task and a bounded queue: well under 200 KiB each.
    assert figures["rss_held"] - figures["rss_before"] < WATCHES * 0.2, figures
