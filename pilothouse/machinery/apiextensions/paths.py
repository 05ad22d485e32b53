"""Field paths and Go value texts as ``k8s.io/apimachinery/pkg/util/validation/field`` prints them.

Why: every error of this package names a field the way ``field.Path`` does (``a.b``, ``a[0]``,
``a[key]``) and prints its bad value the way ``field.Error.ErrorBody`` does (Go's ``%v``/``%q``/
``%#v``). Users compare these texts with what a real cluster prints, so they live here once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pilothouse.machinery.kinds.vcommon import GoValue
from pilothouse.machinery.validation.literals import schema_value_type

__all__ = [
    "NIL_PATH",
    "child",
    "go_json",
    "go_json_value",
    "go_number",
    "go_quote",
    "index",
    "json_type",
    "key",
]

#: What ``(*field.Path)(nil).String()`` prints: errors at the root of a custom resource carry it.
NIL_PATH = "<nil>"


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def key(path: str, name: str) -> str:
    return f"{path}[{name}]"


def index(path: str, position: int) -> str:
    return f"{path}[{position}]"


def go_quote(text: str) -> str:
    """Go's ``%q`` (``strconv.Quote``) for the strings we meet: JSON escaping minus ``\\u`` for non-ASCII."""
    return json.dumps(text, ensure_ascii=False)


def go_number(value: float | int) -> str:
    """Go's ``%v`` of a float64 (``10``, ``1.5``, ``1e+21``): shortest repr, exponent past 1e21."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    return text


def _go_sharp(value: Any) -> str:
    # %#v of decoded JSON inside an interface{}: Go's type-annotated literal syntax.
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, float):
        return go_number(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_sharp(v) for v in value) + "}"
    return ("map[string]interface {}{" + ", ".join(f"{go_quote(k)}:{_go_sharp(value[k])}"
                                                  for k in sorted(value)) + "}")


def go_json_value(value: Any) -> Any:
    """A decoded JSON value as ``field.Error`` prints it: strings and ints as is, the rest as Go does.

    ErrorBody prints int64/float64/bool with ``%v`` and anything else (maps, slices) with ``%#v``;
    :class:`GoValue` carries that text while comparing equal to the JSON value.
    """
    if value is None:
        return "null"  # ErrorBody prints a nil value as the string "null"
    if isinstance(value, bool):
        return GoValue(value, "true" if value else "false")
    if isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return GoValue(value, go_number(value))
    return GoValue(value, _go_sharp(value))


def json_type(value: Any) -> str:
    """The OpenAPI type name of a decoded JSON value (``null`` for None; 1.0 stays ``number``)."""
    return "null" if value is None else schema_value_type(value)


def _go_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_floats(v) for v in value]
    return value


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` of decoded JSON: compact, keys sorted, whole floats without ``.0``."""
    return json.dumps(_go_floats(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
