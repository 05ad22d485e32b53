"""The shape of a decoded request body: its nesting depth (bounded) and its duplicate member names.

Depth: every later step (validation, pruning, managed fields, orjson's encoder, which stops at 254
levels) walks objects recursively, so a body nested deeper than :data:`MAX_DEPTH` is refused at the
door, a 400, instead of a 500 ``RecursionError`` wherever the walk breaks (a custom resource with
preserved unknown fields keeps any depth it is sent). orjson's own parser stops at 1,024 levels.

Duplicates, found the way kube-apiserver's strict decoder reports them: ``duplicate field
"metadata.name"``, ``duplicate field "spec.containers[0].image"``.

orjson keeps the last of two equal keys silently. Finding them costs a second parse, so it is done
only when a cheap count says there are any: the members orjson kept (a walk of the parsed value)
against the name separators in the text (colons once the string literals are blanked out by one C
regex pass). Equal counts mean no duplicates, the case of nearly every request.

Cheaper still, and first (:func:`settled`): a body with no more brackets than :data:`MAX_DEPTH`
cannot nest deeper, and a body that is exactly what orjson writes for the parsed value (compact
JSON, as kubectl, client-go and our own clients send) has no member orjson dropped. Both are a few
C scans, where the walk is ~15-20 µs for a pod and ~60 µs for a patched one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "TooDeep", "duplicate_fields", "members", "settled", "shallow"]

#: Nesting levels a request body may have: deep enough for any Kubernetes object (a CRD's schema
#: included), shallow enough for every recursive walk after it and for orjson's encoder.
MAX_DEPTH = 200


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"exceeded max depth of {MAX_DEPTH}")

#: A JSON string literal. Possessive: a 200 KB string is one run, not 200,000 backtracking states
#: (47 ms and megabytes of regex stack per such body otherwise).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')


def shallow(raw: bytes) -> bool:
    """True when ``raw`` cannot nest deeper than :data:`MAX_DEPTH`: it has no more brackets than
    that (brackets inside strings only make this say False more often)."""
    return raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH


def settled(raw: bytes, parsed: Any) -> bool:
    """True when ``raw`` (parsed into ``parsed``) is known to be neither too deep nor to name a
    member twice without walking it: it is :func:`shallow` and it is byte for byte what orjson writes
    for ``parsed`` (a trailing newline allowed, as client-go's encoder ends a body), which a body with
    a member orjson dropped cannot be. False says nothing: walk it."""
    if not shallow(raw):
        return False
    try:
        encoded = orjson.dumps(parsed)
    except orjson.JSONEncodeError:  # an integer orjson parses but will not write (over 64 bits)
        return False
    return encoded == raw or (len(raw) == len(encoded) + 1 and raw.endswith(b"\n") and raw.startswith(encoded))


def members(value: Any, depth: int = 0) -> int:
    """Object members in ``value``, all levels; raises :class:`TooDeep` past :data:`MAX_DEPTH`
    (before Python's own recursion limit)."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise TooDeep
        return len(value) + sum(members(child, depth + 1) for child in value.values())
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise TooDeep
        return sum(members(child, depth + 1) for child in value)
    return 0


class _Pairs(list[tuple[str, Any]]):
    """An object as its members in document order, duplicates kept."""


def _walk(value: Any, path: str, found: list[str]) -> None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for key, child in value:
            child_path = f"{path}.{key}" if path else key
            if key in seen and child_path not in found:
                found.append(child_path)
            seen.add(key)
            _walk(child, child_path, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _walk(child, f"{path}[{index}]", found)


def duplicate_fields(raw: bytes, parsed: Any, count: int) -> list[str]:
    """Paths of the members named twice in ``raw`` (already parsed into ``parsed``, which has
    ``count`` :func:`members`), in document order."""
    # Colons in the text are the separators plus those inside strings, and the separators are at
    # least the members kept: equal to ``count``, there is neither a string colon nor a duplicate.
    if raw.count(b":") == count or _STRING.sub(b'""', raw).count(b":") == count:
        return []
    found: list[str] = []
    _walk(json.loads(raw, object_pairs_hook=_Pairs), "", found)
    return found
