"""Server-side Table output (``Accept: ...;as=Table;g=meta.k8s.io;v=v1``) for ``kubectl get``.

kubectl does not format objects itself: it asks the server for a ``meta.k8s.io/v1`` Table and
prints its cells. :func:`to_table` builds that Table for any kind, with the columns and cell
values of ``pkg/printers/internalversion/printers.go`` (always the wide set; kubectl drops
priority-1 columns unless ``-o wide``), and each row's ``object`` shaped by ``includeObject``
as ``apiserver/pkg/endpoints/handlers/response.go`` does. Pure and fast: no I/O, one small
function per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pilothouse.machinery.errors import bad_request
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables import apps, batch, core, events, other, pods, surface  # noqa: F401  (registration)
from pilothouse.machinery.tables.columns import (
    Column,
    Doc,
    Printer,
    column_definitions,
    lookup,
    printer,
    registered_kinds,
)
from pilothouse.machinery.tables.duration import human_duration, translate_since

__all__ = [
    "INCLUDE_OBJECT_VALUES",
    "Column",
    "Doc",
    "Printer",
    "column_definitions_for",
    "human_duration",
    "lookup",
    "printer",
    "registered_kinds",
    "to_table",
    "translate_since",
]

#: The values of the ``includeObject`` query parameter ("" means the default, Metadata).
INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def column_definitions_for(group: str, kind: str) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of the kind's Table (fresh dicts, safe to mutate)."""
    return [dict(c) for c in column_definitions(lookup(group, kind).columns)]


def to_table(
    group: str,
    kind: str,
    objects: Sequence[Object],
    *,
    now: datetime | None = None,
    include_object: str = "Metadata",
    list_meta: dict[str, Any] | None = None,
    no_headers: bool = False,
    version: str = "v1",
    printer: Printer | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io`` Table of ``objects`` (all of the kind ``group``/``kind``).

    ``include_object`` is the request's ``includeObject``: ``Metadata`` (or "") gives each row a
    ``PartialObjectMetadata`` (kubectl reads it for ``-A``'s NAMESPACE and ``--show-labels``),
    ``Object`` the object itself, ``None`` a null. ``list_meta`` becomes the Table's metadata
    (resourceVersion, continue). ``no_headers`` (``TableOptions.noHeaders``, used for watch
    events after the first) leaves out the column definitions. ``version`` is the Table's
    ``meta.k8s.io`` version (``v1`` or the deprecated ``v1beta1``).

    Raises a 400 StatusError for an unknown ``include_object``.
    """
    if include_object not in ("", *INCLUDE_OBJECT_VALUES):
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    if now is None:
        now = datetime.now(UTC)
    api_version = f"meta.k8s.io/{version}"
    entry = printer or lookup(group, kind)
    cells_of = entry.cells
    conditions_of = entry.conditions
    rows: list[dict[str, Any]] = []
    append = rows.append
    mode = include_object or "Metadata"
    for obj in objects:
        if mode == "Metadata":
            # The metadata dict is shared, not copied: the Table is serialised straight away.
            row_object: Any = {
                "kind": "PartialObjectMetadata",
                "apiVersion": api_version,
                "metadata": obj.get("metadata") or {},
            }
        elif mode == "Object":
            row_object = obj
        else:
            row_object = None
        row: dict[str, Any] = {"cells": cells_of(obj, now), "object": row_object}
        if conditions_of is not None:
            conditions = conditions_of(obj)
            if conditions:
                row["conditions"] = [dict(c) for c in conditions]
        append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": dict(list_meta) if list_meta else {},
        "columnDefinitions": [] if no_headers else [dict(c) for c in column_definitions(entry.columns)],
        "rows": rows,
    }
