"""Informer event handlers are isolated (issue 15): one handler's exception used to skip the handlers
after it and force a relist (after which the event was never delivered again). Now a failing handler
is logged and counted, the others still run, and the watch carries on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess

CONFIGMAPS = resource("", "v1", "configmaps")


class CountingClient(APIClient):
    """A real client that counts its lists (a relist is one)."""

    lists = 0

    async def list_all(self, *args: Any, **kwargs: Any) -> Any:
        self.lists += 1
        return await super().list_all(*args, **kwargs)


async def test_a_failing_handler_neither_starves_the_others_nor_relists(server: ServerProcess,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    async with CountingClient(server.url) as client:
        informer = Informer(client, CONFIGMAPS, namespace="default")
        seen: list[tuple[str, str]] = []

        def broken(obj: dict[str, Any]) -> None:
            raise RuntimeError(f"handler bug on {obj['metadata']['name']}")

        informer.add_handler(EventHandler(broken, lambda _old, new: broken(new), broken))
        informer.add_handler(EventHandler(
            lambda obj: seen.append(("add", obj["metadata"]["name"])),
            lambda _old, new: seen.append(("update", new["metadata"]["name"])),
            lambda obj: seen.append(("delete", obj["metadata"]["name"]))))
        informer.start()
        try:
            await informer.wait_synced(10)
            lists_after_sync = client.lists
            with caplog.at_level(logging.ERROR, "pilothouse.client.informer"):
                for i in range(3):
                    await client.create(CONFIGMAPS, {"metadata": {"name": f"h-{i}"}}, "default")
                await client.patch(CONFIGMAPS, "h-0", {"data": {"k": "v"}}, "default")
                await client.delete(CONFIGMAPS, "h-1", "default")
                expected = [("add", "h-0"), ("add", "h-1"), ("add", "h-2"), ("update", "h-0"), ("delete", "h-1")]
                for _ in range(100):
                    if len(seen) >= len(expected):
                        break
                    await asyncio.sleep(0.1)
            assert [e for e in seen if e[1].startswith("h-")] == expected
            assert informer.handler_errors == 5
            assert client.lists == lists_after_sync  # no relist
            logged = [r for r in caplog.records if r.name == "pilothouse.client.informer" and r.exc_info]
            assert len(logged) == 5, [r.getMessage() for r in logged]
        finally:
            await informer.stop()
