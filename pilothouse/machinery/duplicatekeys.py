"""Duplicate member names in a JSON request body, found the way kube-apiserver's strict decoder
reports them: ``duplicate field "metadata.name"``, ``duplicate field "spec.containers[0].image"``.

orjson keeps the last of two equal keys silently. Finding them costs a second parse, so it is done
only when a cheap count says there are any: the members orjson kept (a walk of the parsed value)
against the name separators in the text (colons once the string literals are blanked out by one C
regex pass). Equal counts mean no duplicates, the case of nearly every request.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["duplicate_fields"]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _members(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_members(child) for child in value.values())
    if isinstance(value, list):
        return sum(_members(child) for child in value)
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


def duplicate_fields(raw: bytes, parsed: Any) -> list[str]:
    """Paths of the members named twice in ``raw`` (already parsed into ``parsed``), in document order."""
    if _members(parsed) == _STRING.sub(b'""', raw).count(b":"):
        return []
    found: list[str] = []
    _walk(json.loads(raw, object_pairs_hook=_Pairs), "", found)
    return found
