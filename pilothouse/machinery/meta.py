"""Small helpers over object metadata and Kubernetes time formats, shared by every layer."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "Object",
    "child",
    "clone",
    "format_time",
    "format_time_micro",
    "generate_name_suffix",
    "get_path",
    "new_uid",
    "now",
    "parse_time",
    "set_path",
]

# The one alias for a decoded Kubernetes object (a JSON mapping), shared by every layer.
Object = dict[str, Any]

# Kubernetes' name generator alphabet: no vowels (no words), no ambiguous characters.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
#: Name suffixes are not secrets: Kubernetes draws them from math/rand (``utilrand.String``). A
#: system random draw per character (``secrets``) was one read of /dev/urandom each, 1% of the API
#: server's CPU in the density run (a pod's token volume name). Seeded from the OS per process.
_SUFFIX_RANDOM = random.Random()


def now() -> datetime:
    return datetime.now(UTC)


_this_second: tuple[int, str] = (-1, "")


def format_time(moment: datetime | None = None) -> str:
    """RFC 3339 at second precision with ``Z``, as ``metav1.Time`` marshals."""
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return _second_text(int(time.time())) + "Z"


def _second_text(second: int) -> str:
    """``second`` (Unix time) as RFC 3339 without the ``Z``. Every create stamps the current second and
    every Lease renewal its microseconds: format it once per second, not once per object."""
    global _this_second
    if _this_second[0] != second:
        _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return _this_second[1]


def format_time_micro(moment: datetime | None = None) -> str:
    """``metav1.MicroTime`` (leases, events.k8s.io): microsecond precision."""
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return f"{_second_text(second)}.{nanoseconds // 1000:06d}Z"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


_random_pool = bytearray()


def _forget_random_pool() -> None:
    _random_pool.clear()  # a forked child must never hand out its parent's next uids


os.register_at_fork(after_in_child=_forget_random_pool)
# A forked child reseeds, as the random module does for its own global instance only: two processes
# drawing the same suffixes would make generateName creates collide.
os.register_at_fork(after_in_child=_SUFFIX_RANDOM.seed)


def new_uid() -> str:
    """A random (version 4) UUID, as Kubernetes' ``uuid.NewRandom`` makes for ``metadata.uid``."""
    # One getrandom call per 256 uids instead of one per create: each call releases the GIL, and
    # under write load taking it back from the store's writer thread cost more than the call.
    global _random_pool
    if len(_random_pool) < 16:
        _random_pool = bytearray(os.urandom(4096))
    raw = _random_pool[-16:]
    del _random_pool[-16:]
    # RFC 4122's version 4 and variant bits, spelled as str(uuid.UUID(bytes=raw, version=4)) spells
    # them without building the UUID (its int arithmetic was most of this function's cost, which
    # every request pays for its Audit-Id).
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def generate_name_suffix(length: int = 5) -> str:
    return "".join(_SUFFIX_RANDOM.choices(_ALPHABET, k=length))


def clone(value: Any) -> Any:
    """A deep copy of JSON data. Through orjson, which is several times faster than
    ``copy.deepcopy`` on API objects (and these are only ever JSON)."""
    return orjson.loads(orjson.dumps(value))


def child(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """``parent[key]``, created empty when missing or null (defaulting fills nested objects)."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value


def get_path(obj: Any, path: tuple[str, ...] | list[str], default: Any = None) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(part)
        if obj is None:
            return default
    return obj


def set_path(obj: dict[str, Any], path: tuple[str, ...] | list[str], value: Any) -> None:
    for part in path[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = {}
            obj[part] = child
        obj = child
    obj[path[-1]] = value
