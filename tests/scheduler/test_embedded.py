"""``pilothouse server`` runs this scheduler embedded: a plain pod on a Ready node gets bound."""

from __future__ import annotations

import asyncio
from typing import Any

from sched_helpers import node, pod

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
EVENTS = resource("", "v1", "events")


async def test_embedded_scheduler_binds(server: Any) -> None:
    async with APIClient(server.url) as client:
        await client.create(NODES, node("embedded-1"))
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # ServiceAccount admission wants the default account the controller manager makes
            try:
                created = await client.create(PODS, pod("hello", cpu="100m"), "default")
                break
            except errors.ClientError as error:
                if "service account" not in error.message or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        bound = ""
        while asyncio.get_running_loop().time() < deadline and not bound:
            bound = (await client.get(PODS, "hello", "default"))["spec"].get("nodeName") or ""
            await asyncio.sleep(0.1)
        assert bound == "embedded-1"
        message = "Successfully assigned default/hello to embedded-1"
        while asyncio.get_running_loop().time() < deadline:
            events = (await client.list(EVENTS, "default")).get("items") or []
            mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") == created["metadata"]["uid"]]
            if mine:
                assert mine[0]["reason"] == "Scheduled" and mine[0]["message"] == message
                assert mine[0]["reportingComponent"] == "default-scheduler"  # events.k8s.io, as kube-scheduler
                return
            await asyncio.sleep(0.1)
        raise AssertionError("no Scheduled event")
