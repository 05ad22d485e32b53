"""An EndpointSlice controller whose slice cache is behind the server after an API server SIGKILL.

Issue 15, CHAOS_SEED=1184329778 (real-agent chaos stream): a Service's one slice kept three ready
addresses while seven pods were Ready, for the whole 120 s window, with nothing in the controller
manager's log. The controller manager rode out an API server SIGKILL; its informers resume their
watches each on its own backoff, so the pod informer can be back while the slice informer is not.
Every pod event then syncs the Service against a slice cache that misses the controller's own last
write: the PUT is refused 409 Conflict and the key requeued with its backoff doubled (one failure per
pod event, on top of those counted while the server was down). When the slice cache caught up,
nothing enqueued the Service (slice updates were ignored), so it waited out a backoff of minutes.

Here the API server is SIGKILLed and restarted on its port while the controller runs; the slice
informer's resumption is held back by hand (stopped across the outage, started after the pod
changes) to make the order of the race certain. Before the fix the slice stayed stale past the
test's 8 s (the key's retry planned 20 s to 300 s out); a backoff that long is now also logged as a
warning, so a chaos log (the controller manager logs at WARNING) shows it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.endpointslice import EndpointSliceController
from tests.conftest import free_port, start_server_process
from tests.controllers._fixtures_b import PODS, create_namespace, mark_pod, pod_template, run_controllers, wait_for

SERVICES = resource("", "v1", "services")
SLICES = resource("discovery.k8s.io", "v1", "endpointslices")
POD_COUNT = 9


async def _ready_addresses(client: APIClient, ns: str) -> list[str]:
    slices = (await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=d2"))["items"]
    return sorted(a for s in slices for e in s.get("endpoints") or ()
                  if (e.get("conditions") or {}).get("ready") for a in e["addresses"])


async def test_slice_converges_when_its_cache_catches_up_after_a_server_kill(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pilothouse.controllers.endpointslice")
    port = free_port()
    # No embedded controller manager: its own EndpointSlice controller would write the slice too.
    alone = ("--disable", "scheduler,controller-manager")
    server = start_server_process(tmp_path / "server", port, alone)
    client = APIClient(server.url)
    try:
        ns = await create_namespace(client, "behind")
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "d2"},
                                       "spec": {"selector": {"app": "d2"}, "ports": [{"port": 80}]}}, ns)
        for i in range(POD_COUNT):
            await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": f"d2-{i}", "labels": {"app": "d2"}},
                                       "spec": pod_template({"app": "d2"})["spec"]}, ns)
        for i in range(3):
            await mark_pod(client, ns, f"d2-{i}", ip=f"10.100.0.{20 + i}")
        async with run_controllers(server.url, EndpointSliceController) as harness:
            controller: Any = harness.controllers[0]
            slices = harness.ctx.informers.informer(SLICES)
            want = sorted(f"10.100.0.{20 + i}" for i in range(3))

            async def first() -> bool:
                return await _ready_addresses(client, ns) == want
            await wait_for(first, what="the first three addresses")

            # The outage: the slice informer is down across it and stays down after it.
            await slices.stop()
            server.process.kill()
            server.process.wait()
            server = start_server_process(tmp_path / "server", port, alone)
            # The pod informer resumed: the controller's first write after the restart succeeds
            # (its slice cache still holds the slice as the server has it) and is not seen by it.
            await mark_pod(client, ns, "d2-0", ip="10.100.0.20", ready=False)

            async def written() -> bool:
                return await _ready_addresses(client, ns) == want[1:]
            await wait_for(written, what="the write after the restart")
            # The agents re-post their pods after the restart: a new address, then Ready, one pod
            # after another. Each pod event syncs the Service against the stale slice cache: 409,
            # and the key's backoff doubles (5 ms x 2^retries, to 300 s).
            key = f"{ns}/d2"
            for ready in (False, True):
                for i in range(1, POD_COUNT):
                    await mark_pod(client, ns, f"d2-{i}", ip=f"10.100.0.{4 + i}", ready=ready)
                    await asyncio.sleep(0.05)

            async def backed_off() -> bool:
                return (controller.queue.planned_in(key) or 0.0) > 15
            # A key has one retry planned; one planned early in the burst fails again and is replaced
            # by one further out.
            await wait_for(backed_off, timeout=30, what="a retry planned more than 15 s out")
            assert any(r.levelno == logging.WARNING and f"sync {key}: 409" in r.getMessage()
                       for r in caplog.records), [r.getMessage() for r in caplog.records]
            slices.start()  # its watch resumes: the cache catches up
            want = sorted(f"10.100.0.{4 + i}" for i in range(1, POD_COUNT))

            async def converged() -> bool:
                return await _ready_addresses(client, ns) == want
            await wait_for(converged, timeout=8, what=f"slice listing {want}")
    finally:
        await client.close()
        server.stop()
