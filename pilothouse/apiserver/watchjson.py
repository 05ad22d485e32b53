"""One serialisation of a watch event, shared by every watcher of the resource.

Each watcher used to splice its own copy of an event's JSON (``stored_json``), so N watchers that
fall a little behind held N copies of every pending event: with 20 KB objects and 1,000 watchers,
20 MB per write. kube-apiserver shares one encoding per event the same way (``cachingObject``). The
memo is keyed on (key, revision), which names one event's bytes exactly, and is small: watchers
that keep up translate an event within moments of each other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from pilothouse.store.interface import KeyValue

__all__ = ["SharedEventJSON"]


class SharedEventJSON:
    """``encode(kv)`` memoised on ``(kv.key, kv.mod_revision)`` for the last ``size`` events."""

    def __init__(self, encode: Callable[[KeyValue], bytes], size: int = 64) -> None:
        self._encode = encode
        self._size = size
        self._memo: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def __call__(self, kv: KeyValue) -> bytes:
        key = (kv.key, kv.mod_revision)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._encode(kv)
            if len(self._memo) > self._size:
                self._memo.popitem(last=False)
        return found
