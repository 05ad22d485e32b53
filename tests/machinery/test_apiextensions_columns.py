"""Server-side Table columns of custom resources (additionalPrinterColumns).

Cases follow apiextensions-apiserver's ``registry/customresource/tableconvertor`` and its tests:
JSONPath cells, ``string`` columns printed as jsonpath prints (JSON for lists), typed cells,
``date`` columns as ages, missing values as null (kubectl's ``<none>``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pilothouse.machinery.apiextensions import InvalidColumnPath, printer_columns, validate_printer_columns

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
OBJ: dict[str, Any] = {
    "apiVersion": "example.istio.io/v1alpha1", "kind": "Blah",
    "metadata": {"name": "blah", "creationTimestamp": "2026-12-03T11:00:00Z",
                 "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"servers": [{"hosts": ["foo"]}, {"hosts": ["bar", "baz"]}], "foo": [{"bar": [1]}, {"bar": [2, 3]}],
             "replicas": 3, "ratio": 0.5, "paused": False, "expires": "2026-12-01T12:00:00Z", "when": "soon"},
    "status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]},
}


def _column(name: str, type_: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


CELLS: list[tuple[str, str, str, Any]] = [
    ("string value", "string", ".spec.servers[0].hosts[0]", "foo"),
    ("string list", "string", ".spec.servers[0].hosts", '["foo"]'),
    ("string list of two", "string", ".spec.servers[1].hosts", '["bar","baz"]'),
    ("string wildcard takes the first result", "string", ".spec.servers[*].hosts", '["foo"]'),
    ("integers as string", "string", ".spec.foo[1].bar", "[2,3]"),
    ("integer", "integer", ".spec.replicas", 3),
    ("integer from a list is empty", "integer", ".spec.foo[0].bar", None),
    ("number", "number", ".spec.replicas", 3.0),
    ("boolean", "boolean", ".spec.paused", False),
    ("boolean as string", "string", ".spec.paused", "false"),
    ("mistyped is empty", "integer", ".spec.servers", None),
    ("missing is empty", "string", ".spec.nothing.here", None),
    ("filter", "string", '.status.conditions[?(@.type=="Ready")].status', "False"),
    ("escaped dots", "string", ".metadata.labels.app\\.kubernetes\\.io/name", "web"),
    ("braces are accepted", "integer", "{.spec.replicas}", 3),
    ("quoted key", "string", ".metadata.labels['app.kubernetes.io/name']", "web"),
    ("recursive descent", "string", "..hosts[1]", "baz"),
    ("negative index", "string", ".spec.servers[-1].hosts[0]", "bar"),
    ("date is an age", "date", ".spec.expires", "2d"),
    ("bad date", "date", ".spec.when", "<invalid>"),
]


@pytest.mark.parametrize(("type_", "path", "cell"), [c[1:] for c in CELLS], ids=[c[0] for c in CELLS])
def test_cell(type_: str, path: str, cell: Any) -> None:
    _, row = printer_columns([_column("C", type_, path)])
    assert row(OBJ, NOW) == [cell]


def test_column_definitions() -> None:
    definitions, _ = printer_columns([
        _column("Replicas", "integer", ".spec.replicas"),
        _column("Host", "string", ".spec.servers[0].hosts[0]", description="the host", priority=1, format="byte"),
    ])
    assert [d["name"] for d in definitions] == ["Replicas", "Host"]
    assert definitions[0] == {"name": "Replicas", "type": "integer", "format": "",
                              "description": "Custom resource definition column (in JSONPath format): .spec.replicas",
                              "priority": 0}
    assert definitions[1] == {"name": "Host", "type": "string", "format": "byte", "description": "the host",
                              "priority": 1}


def test_default_column_is_age() -> None:
    definitions, row = printer_columns([])
    assert [(d["name"], d["type"]) for d in definitions] == [("Age", "date")]
    assert definitions[0]["description"].startswith("CreationTimestamp is a timestamp")
    assert row(OBJ, NOW) == ["60m"]


def test_unparsable_path() -> None:
    with pytest.raises(InvalidColumnPath):
        printer_columns([_column("Bad", "string", ".spec[")])


def test_validate_printer_columns() -> None:
    path = "spec.versions[0].additionalPrinterColumns"
    assert validate_printer_columns([_column("A", "integer", ".spec.a")], path) == []
    assert [e.message() for e in validate_printer_columns([{"type": "int", "format": "x", "jsonPath": "spec"}],
                                                          path)] == [
        f"{path}[0].name: Required value",
        f'{path}[0].type: Invalid value: "int": must be one of boolean,date,integer,number,string',
        f'{path}[0].format: Invalid value: "x": must be one of byte,date,date-time,double,float,int32,int64,password',
        f'{path}[0].JSONPath: Invalid value: "spec": must be a simple json path starting with .',
    ]
