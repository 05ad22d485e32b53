"""Server-side Table columns of a custom resource (``printer_columns``).

A port of ``apiextensions-apiserver/pkg/registry/customresource/tableconvertor``: after the NAME
column every table has (``tables.columns.NAME``, which the caller puts first), one column per
``additionalPrinterColumns`` entry (an Age column of ``.metadata.creationTimestamp`` when the CRD
lists none), each cell the first result of the
column's JSONPath, converted by its type (``cellForJSONValue``): integers and numbers as numbers,
``date`` as an age (``<invalid>`` when unparsable), ``string`` as jsonpath prints the value (JSON for
objects and lists), and a missing or mistyped value as null, which kubectl prints as ``<none>``.

Why ``jsonpath-ng``: it evaluates the JSONPath subset kubectl and CRDs use (fields, indexes,
``[*]``, filters such as ``[?(@.type=="Ready")]``) and is maintained; kubectl's own syntax
differences (no leading ``$``, ``\\.`` escapes in names) are translated here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jsonpath_ng.ext import parse  # type: ignore[attr-defined]

from pilothouse.machinery.apiextensions.paths import child, go_json, go_number, go_quote
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import invalid, required
from pilothouse.machinery.tables.columns import AGE, Column, column_definitions
from pilothouse.machinery.tables.duration import human_duration, parse_time

__all__ = ["InvalidColumnPath", "Row", "parse_json_path", "printer_columns", "validate_printer_columns"]

#: One object's cells for the additional columns (NAME not included), given the object and the time.
Row = Callable[[dict[str, Any], datetime], list[Any]]

_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_NAME_SEGMENT = re.compile(r"\.((?:\\.|[^.\[\\])+)")


class InvalidColumnPath(ValueError):
    """A column's jsonPath that does not parse (``unrecognized column definition``)."""


@functools.lru_cache(maxsize=1024)
def parse_json_path(path: str) -> Any:
    """A kubectl-style JSONPath (``.status.conditions[?(@.type=="Ready")].status``) compiled."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    out = ["$"]
    position = 0
    while position < len(text):
        if text[position] == "[":
            end = _closing_bracket(text, position)
            out.append(text[position:end + 1])
            position = end + 1
            continue
        descend = text.startswith("..", position)  # recursive descent
        match = _NAME_SEGMENT.match(text, position + 1 if descend else position)
        if not match:
            raise InvalidColumnPath(f"unrecognized column definition {go_quote(path)}")
        name = re.sub(r"\\(.)", r"\1", match.group(1))
        quoted = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)
        out.append((".." if descend else ".") + quoted)
        position = match.end()
    try:
        return parse("".join(out))
    except Exception as exc:  # jsonpath-ng raises its lexer and parser errors and plain ones alike
        raise InvalidColumnPath(f"unrecognized column definition {go_quote(path)}") from exc


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return position
    raise InvalidColumnPath(f"unrecognized column definition {go_quote(text)}")


def _first(expression: Any, obj: dict[str, Any]) -> tuple[bool, Any]:
    try:
        matches = expression.find(obj)
    except Exception:  # a failing path is an empty cell, as with AllowMissingKeys
        return False, None
    if not matches:
        return False, None
    return True, matches[0].value


def _text(value: Any) -> str:
    """client-go jsonpath's PrintResults: maps and lists as compact JSON, scalars as Go prints them."""
    if isinstance(value, dict | list):
        return go_json(value)
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_number(value)
    return str(value)


def _cell(column_type: str, value: Any, now: datetime) -> Any:
    """``cellForJSONValue`` (``string`` columns are handled by the caller)."""
    if value is None:
        return None
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        stamp = parse_time(value) if re.match(r"^\d{4}-\d{2}-\d{2}T", value) else None
        if stamp is None:
            return "<invalid>"
        return human_duration((now - stamp).total_seconds())
    return None


def printer_columns(columns: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], Row]:
    """``columnDefinitions`` and the cells function of a version's additionalPrinterColumns, both
    without the leading NAME column (``tables.columns.NAME`` and the object's name).

    Raises :class:`InvalidColumnPath` for a jsonPath that does not parse.
    """
    specs = list(columns or []) or [_AGE_COLUMN]
    table_columns: list[Column] = []
    compiled: list[tuple[str, Any]] = []
    for spec in specs:
        json_path = str(spec.get("jsonPath", ""))
        description = spec.get("description") or (
            AGE.description if spec is _AGE_COLUMN
            else f"Custom resource definition column (in JSONPath format): {json_path}")
        table_columns.append(Column(str(spec.get("name", "")), type=str(spec.get("type", "")),
                                    description=description, format=str(spec.get("format", "") or ""),
                                    priority=int(spec.get("priority", 0) or 0)))
        compiled.append((str(spec.get("type", "")), parse_json_path(json_path)))
    definitions = [dict(c) for c in column_definitions(tuple(table_columns))]

    def row(obj: dict[str, Any], now: datetime) -> list[Any]:
        cells: list[Any] = []
        for column_type, expression in compiled:
            found, value = _first(expression, obj)
            if not found:
                cells.append(None)
            elif column_type == "string":
                cells.append(_text(value))
            else:
                cells.append(_cell(column_type, value, now))
        return cells

    return definitions, row


_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")


def validate_printer_columns(columns: list[dict[str, Any]] | None, path: str) -> list[FieldError]:
    """``ValidateCustomResourceColumnDefinition`` for each column at ``path`` (``...additionalPrinterColumns``)."""
    errors: list[FieldError] = []
    for i, column in enumerate(columns or []):
        at = f"{path}[{i}]"
        if not column.get("name"):
            errors.append(required(child(at, "name")))
        type_ = column.get("type") or ""
        types_message = "must be one of " + ",".join(_COLUMN_TYPES)
        if not type_:
            errors.append(required(child(at, "type"), types_message))
        elif type_ not in _COLUMN_TYPES:
            errors.append(invalid(child(at, "type"), type_, types_message))
        fmt = column.get("format") or ""
        if fmt and fmt not in _COLUMN_FORMATS:
            errors.append(invalid(child(at, "format"), fmt, "must be one of " + ",".join(_COLUMN_FORMATS)))
        json_path = str(column.get("jsonPath") or "")
        # Upstream names the field by its Go name here.
        if not json_path:
            errors.append(required(child(at, "JSONPath")))
        elif not json_path.startswith("."):
            errors.append(invalid(child(at, "JSONPath"), json_path, "must be a simple json path starting with ."))
    return errors
