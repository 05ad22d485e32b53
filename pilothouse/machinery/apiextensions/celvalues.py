"""Custom resource values as CEL sees them (``apiserver/pkg/cel/common/values.go``).

Declared properties under their CEL-escaped names (``foo-bar`` is ``foo__dash__bar``), strings of
``format: date``/``date-time`` as timestamps, ``duration`` as durations, ``byte`` as bytes, and
integers of ``number`` fields as doubles, null fields left out (``has()`` is false for them);
everything else as decoded JSON.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.machinery.apiextensions.nodes import Schema, node, properties

__all__ = ["cel_names", "to_cel", "to_cel_fields"]

_RESERVED = frozenset({"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                       "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                       "void", "while"})
_IDENT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


_LITERALS = frozenset({"true", "false", "null", "in"})


@functools.lru_cache(maxsize=4096)
def cel_names(name: str) -> tuple[str, ...]:
    """The field names CEL knows a property by: escaped where it is no identifier (``foo-bar`` is
    ``foo__dash__bar``); a keyword both as is and escaped (``__if__``, since 1.30), except the
    literals ``true``, ``false``, ``null`` and ``in``, which only work escaped."""
    if name in _LITERALS:
        return (f"__{name}__",)
    if name in _RESERVED:
        return (name, f"__{name}__")
    if _IDENT.match(name) and "__" not in name:
        return (name,)
    out = name.replace("__", "__underscores__")
    for char, word in ((".", "__dot__"), ("-", "__dash__"), ("/", "__slash__")):
        out = out.replace(char, word)
    return (out,)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> timedelta | None:
    """Go's ``time.ParseDuration`` (``1h30m``, ``-1.5s``, ``0``)."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return timedelta(0)
    seconds, position = 0.0, 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            return None
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return timedelta(seconds=sign * seconds) if body else None


def _formatted(text: str, fmt: Any) -> Any:
    """A string as CEL sees it: ``date``/``date-time`` are timestamps, ``duration`` a duration,
    ``byte`` bytes (apiserver/pkg/cel/common/values.go); unparsable ones stay strings."""
    try:
        if fmt == "date-time":
            return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        if fmt == "date":
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        if fmt == "duration":
            parsed = _duration(text)
            return text if parsed is None else parsed
        if fmt == "byte":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return text
    return text


def to_cel(value: Any, s: Schema | None) -> Any:
    """The value CEL sees: declared properties under their escaped names, formats converted,
    integers of ``number`` fields as doubles, the rest as JSON."""
    if isinstance(value, dict):
        declared = properties(s)
        additional = node(s.get("additionalProperties")) if s is not None else None
        out: dict[str, Any] = {}
        for name, item in value.items():
            if item is None and name in declared:
                continue  # a null field is an absent one for CEL (has() is false)
            if name in declared:
                converted = to_cel(item, declared[name])
                for alias in cel_names(name):
                    out[alias] = converted
            else:
                out[name] = to_cel(item, additional)
        return out
    if isinstance(value, list):
        items = node(s.get("items")) if s is not None else None
        return [to_cel(item, items) for item in value]
    if s is not None:
        if isinstance(value, str) and s.get("format"):
            return _formatted(value, s.get("format"))
        if s.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    return value


def to_cel_fields(value: dict[str, Any], s: Schema | None, wanted: frozenset[str]) -> dict[str, Any]:
    """``to_cel(value, s)`` with only the fields whose CEL names are in ``wanted`` (the rest are
    left out, not converted): what a rule that reads ``self.<name>`` and nothing else of ``self``
    can see. Same order and aliasing as :func:`to_cel`, so colliding names resolve alike."""
    declared = properties(s)
    additional = node(s.get("additionalProperties")) if s is not None else None
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name in declared:
            if item is None:
                continue
            aliases = cel_names(name)
            if wanted.isdisjoint(aliases):
                continue
            converted = to_cel(item, declared[name])
            for alias in aliases:
                out[alias] = converted
        elif name in wanted:
            out[name] = to_cel(item, additional)
    return out
