"""What the server keeps as JSON costs its size, not orjson's output buffer (machinery/jsonbytes.py)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from pilothouse.apiserver.objects import encode_for_store
from pilothouse.apiserver.registry import WatchEvent
from pilothouse.machinery.meta import Object


def _pod(i: int) -> Object:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{i}", "namespace": "default", "labels": {"app": "web"}, "uid": f"u-{i}"},
            "spec": {"nodeName": f"node-{i % 7}", "containers": [{"name": "c", "image": "busybox:1.36"}]},
            "status": {"phase": "Running", "podIP": f"10.244.0.{i % 250}"}}


def _bytes_held(make: Callable[[int], bytes], count: int = 500) -> tuple[float, int]:
    """Traced bytes per kept result, and a result's length."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(count)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / count, len(kept[0])


def test_a_stored_value_holds_about_its_size() -> None:
    # The store's ring of recent events keeps these bytes (64 MB of them, counted by length);
    # orjson's unshrunk 4 KB buffer made each hold 4 to 16 times its length.
    per_value, length = _bytes_held(lambda i: encode_for_store(_pod(i)))
    assert length < 400
    assert per_value < 2 * length, (per_value, length)


def test_a_watch_events_json_holds_about_its_size() -> None:
    per_value, length = _bytes_held(lambda i: WatchEvent("ADDED", _pod(i)).json)
    assert per_value < 2 * length, (per_value, length)
