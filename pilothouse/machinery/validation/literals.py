"""How Kubernetes' Go decoder reacts to scalar values it cannot store, phrased as Go phrases it.

Why: built-in kinds are decoded into Go structs before any validation runs, so a wrong JSON type is
a 400 ``BadRequest`` whose message is Go's ``encoding/json`` error (``json: cannot unmarshal string
into Go struct field DeploymentSpec.spec.replicas of type int32``) or the custom unmarshaler's own
error (``resource.Quantity``, ``metav1.Time``, base64 ``[]byte``). These helpers hold those texts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

__all__ = [
    "INT_RANGES",
    "base64_error",
    "go_value_kind",
    "quantity_error",
    "schema_value_type",
    "time_error",
    "unmarshal_error",
]

#: Ranges of the Go integer types that appear as ``format`` in the schemas.
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}

# resource.ParseQuantity's errors, word for word.
_QUANTITY_FORMAT = ("quantities must match the regular expression "
                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_QUANTITY_NUMERIC = "unable to parse numeric part of quantity"
_QUANTITY_SUFFIX = "unable to parse quantity's suffix"
_QUANTITY_RE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_QUANTITY_SUFFIXES = frozenset({"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
                                "P", "E"})
_EXPONENT_RE = re.compile(r"[eE][-+]?[0-9]+")
_NUMERIC_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def go_value_kind(value: Any) -> str:
    """The ``Value`` word of Go's ``UnmarshalTypeError``: what the JSON held."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_value_type(value: Any) -> str:
    """The OpenAPI type name of a JSON value, as CRD validation words it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_number_text(value: int | float) -> str:
    # Go prints the literal as sent; Python's repr of the parsed float is the closest we have.
    return repr(value) if isinstance(value, float) else str(value)


def unmarshal_error(value: Any, go_type: str, struct: str, field: str, number_detail: bool = False) -> str:
    """``json: cannot unmarshal <what> into Go struct field <Struct>.<path> of type <T>``.

    ``number_detail``: a number that does not fit the integer type is reported with its text
    (``number 1.5``), as Go does.
    """
    what = go_value_kind(value)
    if number_detail and what == "number":
        what = f"number {_go_number_text(value)}"
    if struct and field:
        return f"json: cannot unmarshal {what} into Go struct field {struct}.{field} of type {go_type}"
    return f"json: cannot unmarshal {what} into Go value of type {go_type}"


def quantity_error(value: Any) -> str | None:
    """``resource.ParseQuantity``'s complaint about a value, or None when it parses."""
    if value is None:
        return None
    if isinstance(value, bool | list | dict):
        return _QUANTITY_FORMAT
    text = value.strip() if isinstance(value, str) else _go_number_text(value)
    if not text:
        return _QUANTITY_FORMAT
    match = _QUANTITY_RE.fullmatch(text)
    if not match:
        return _QUANTITY_FORMAT
    number, suffix = match.groups()
    if not _NUMERIC_RE.fullmatch(number):
        return _QUANTITY_NUMERIC
    if suffix not in _QUANTITY_SUFFIXES and not _EXPONENT_RE.fullmatch(suffix):
        return _QUANTITY_SUFFIX
    return None


def time_error(text: str, micro: bool = False) -> str | None:
    """``metav1.Time``/``MicroTime`` parse RFC 3339; Go's message names the layout it used."""
    layout = "2006-01-02T15:04:05.000000Z07:00" if micro else "2006-01-02T15:04:05Z07:00"
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        if len(text) < 20 or text[10] not in "Tt":
            raise ValueError(text)
        datetime.fromisoformat(candidate)
    except (ValueError, IndexError):
        return f'parsing time "{text}" as "{layout}": cannot parse "{text}" as "2006"'
    return None


def base64_error(text: str) -> str | None:
    """Go decodes ``[]byte`` fields as padded standard base64 and reports the first bad byte."""
    body = text.rstrip("=")
    for index, char in enumerate(body):
        if char not in _B64_ALPHABET:
            return f"illegal base64 data at input byte {index}"
    if len(text) % 4 or len(text) - len(body) > 2:
        # An incomplete last quantum: Go points at its first byte.
        position = len(text) - len(text) % 4 if len(text) % 4 else len(body)
        return f"illegal base64 data at input byte {position}"
    return None
