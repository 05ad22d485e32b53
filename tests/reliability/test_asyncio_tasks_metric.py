"""The API server's ``/metrics`` carries ``python_asyncio_tasks`` (Go's ``go_goroutines`` for this
process), which bench/soak.py samples to see a leak of tasks: an open watch is a task, so the gauge
rises while watches are open and falls back once they end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServerProcess, start_server_process


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """No embedded components: their informers' watches would move the gauge under the test."""
    server = start_server_process(tmp_path / "server", extra=("--disable", "scheduler,controller-manager"))
    yield server
    server.stop()


async def tasks(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith("python_asyncio_tasks ")]
    assert len(values) == 1, text[:2000]
    return values[0]


async def test_asyncio_tasks_gauge_follows_open_watches(quiet_server: ServerProcess) -> None:
    url = quiet_server.url
    async with aiohttp.ClientSession() as session:
        before = await tasks(session, url)
        assert before > 0
        # Watches the server ends itself after 2 s (timeoutSeconds), so their tasks must go; from a
        # session of their own, closed after, since each kept-alive connection is a task too.
        async with aiohttp.ClientSession() as watching:
            watches = [await watching.get(url + "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=2",
                                          timeout=aiohttp.ClientTimeout(total=None)) for _ in range(20)]
            during = await tasks(session, url)
            assert during >= before + 20, (before, during)
            for response in watches:
                await response.read()  # until the server ends it
        await asyncio.sleep(0.5)
        after = await tasks(session, url)
        assert after <= before + 2, (before, during, after)
