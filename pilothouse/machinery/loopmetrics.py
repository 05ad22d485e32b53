"""``python_asyncio_tasks``: the asyncio tasks alive on the event loop, Go's ``go_goroutines`` for a
Python process (a leak of tasks is the leak of goroutines a soak looks for).

A collector rather than a gauge someone must keep up to date: the count is taken when ``/metrics`` is
scraped. The page is rendered by a handler on the event loop, so ``asyncio.all_tasks()`` sees that
loop; scraped from any other thread there is no running loop and the series is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["AsyncioTasks", "register"]


class AsyncioTasks(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            count = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop in this thread
            return
        yield GaugeMetricFamily("python_asyncio_tasks", "Number of asyncio tasks that currently exist on "
                                "the event loop serving this page.", value=count)


_REGISTERED: set[int] = set()


def register(registry: CollectorRegistry = REGISTRY) -> None:
    """Add the collector to ``registry`` once."""
    if id(registry) not in _REGISTERED:
        _REGISTERED.add(id(registry))
        registry.register(AsyncioTasks())
