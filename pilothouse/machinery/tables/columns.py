"""The generic Table machinery: column definitions, the per-kind printer registry, the default.

kube-apiserver answers ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1`` by running the
kind's printer from ``pkg/printers/internalversion/printers.go`` with ``Wide: true`` (kubectl
hides priority-1 columns unless ``-o wide``). A printer here is the same pair: static column
definitions and a small function from one object to its cells. Kinds without a printer get
``rest.NewDefaultTableConvertor``'s NAME / CREATED AT table, as in Kubernetes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.duration import parse_time, translate_since

__all__ = [
    "AGE",
    "NAME",
    "Cells",
    "Column",
    "Conditions",
    "Doc",
    "Printer",
    "age",
    "column_definitions",
    "default_printer",
    "doc",
    "lookup",
    "printer",
    "registered_kinds",
]

#: One object's cells, in column order (always the wide set).
Cells = Callable[[Object, datetime], list[Any]]
#: A row's ``conditions`` (``TableRowCondition``), or None for none.
Conditions = Callable[[Object], list[dict[str, str]] | None]


@dataclass(frozen=True, slots=True)
class Doc:
    """A column description taken from the official schema, as printers.go takes ``SwaggerDoc()``.

    ``definition`` is the OpenAPI name without ``io.k8s.api.`` (``core.v1.PodStatus``), or
    ``meta.v1.ObjectMeta`` for apimachinery types.
    """

    definition: str
    field: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"
    description: str | Doc = ""
    format: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Cells
    conditions: Conditions | None = None


NAME = Column("Name", format="name", description=Doc("meta.v1.ObjectMeta", "name"))
AGE = Column("Age", description=Doc("meta.v1.ObjectMeta", "creationTimestamp"))

_PRINTERS: dict[tuple[str, str], Printer] = {}


def printer(
    kinds: list[tuple[str, str]] | tuple[str, str],
    columns: list[Column] | tuple[Column, ...],
    *,
    conditions: Conditions | None = None,
) -> Callable[[Cells], Cells]:
    """Register the decorated cell function for ``(group, kind)`` (or several of them)."""
    keys = [kinds] if isinstance(kinds, tuple) else kinds

    def register(cells: Cells) -> Cells:
        entry = Printer(tuple(columns), cells, conditions)
        for key in keys:
            _PRINTERS[key] = entry
        return cells

    return register


def lookup(group: str, kind: str) -> Printer:
    """The kind's printer, or the default NAME / CREATED AT one."""
    return _PRINTERS.get((group, kind), default_printer)


def registered_kinds() -> list[tuple[str, str]]:
    return sorted(_PRINTERS)


@functools.cache
def doc(definition: str, field: str) -> str:
    """The schema description of ``definition.field`` ("" when the schema has none)."""
    # Imported lazily: the schemas are large and only descriptions need them.
    from pilothouse.machinery.schema import definitions

    if definition.startswith("meta."):
        name = "io.k8s.apimachinery.pkg.apis." + definition
    else:
        name = "io.k8s.api." + definition
    schema = definitions().get(name) or {}
    prop = (schema.get("properties") or {}).get(field) or {}
    description = prop.get("description", "")
    return description if isinstance(description, str) else ""


@functools.cache
def column_definitions(columns: tuple[Column, ...]) -> tuple[dict[str, Any], ...]:
    """``TableColumnDefinition`` JSON (every field present, as Go has no omitempty there)."""
    return tuple(
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": doc(c.description.definition, c.description.field)
            if isinstance(c.description, Doc)
            else c.description,
            "priority": c.priority,
        }
        for c in columns
    )


def age(obj: Object, now: datetime) -> str:
    """The AGE cell: ``translateTimestampSince(obj.CreationTimestamp)``."""
    return translate_since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _created_at(obj: Object, _now: datetime) -> list[Any]:
    meta = obj.get("metadata") or {}
    created = parse_time(meta.get("creationTimestamp") or "")
    # Go formats the zero time.Time for a missing timestamp.
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else "0001-01-01T00:00:00Z"
    return [meta.get("name", ""), stamp]


#: ``rest.NewDefaultTableConvertor``: what kube-apiserver serves for kinds with no printer
#: (roles, clusterroles, limitranges, ...); "Created At" is an RFC 3339 date, not an age.
default_printer = Printer(
    (NAME, Column("Created At", type="date", description=Doc("meta.v1.ObjectMeta", "creationTimestamp"))),
    _created_at,
)
