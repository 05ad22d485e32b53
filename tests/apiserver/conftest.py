"""Fixtures of the API server's in-process tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.watch_fanout import bare_hub
from pilothouse.store.watchhub import WatchHub


@pytest.fixture
def hub() -> Iterator[WatchHub]:
    """A watch hub with no store behind it: its events are only what the test publishes."""
    hub = bare_hub()
    yield hub
    hub.close()
