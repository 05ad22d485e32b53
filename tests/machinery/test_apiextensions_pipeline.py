"""The CronTab of the Kubernetes documentation through every step a custom resource write takes.

CRD checks, then for a resource: defaulting, pruning (unknown-field paths for fieldValidation),
schema and rule validation, the table row and the published schema. Messages are those the
documentation's examples show for 1.32 (kubectl prints each cause after ``*``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pilothouse.machinery.apiextensions import (
    apply_defaults,
    openapi_schema,
    printer_columns,
    prune,
    validate_crd_schema,
    validate_custom_resource,
)

CRON = r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {
        "type": "object",
        "properties": {
            "cronSpec": {"type": "string", "pattern": CRON},
            "image": {"type": "string"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "maxReplicas": {"type": "integer", "default": 10},
            "minReplicas": {"type": "integer", "default": 0},
        },
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas should be greater than or equal to "
                                                                     "minReplicas."},
            {"rule": "self.replicas <= self.maxReplicas", "message": "replicas should be smaller than or equal to "
                                                                     "maxReplicas."},
        ],
    }},
}
COLUMNS = [{"name": "Spec", "type": "string", "description": "The cron spec defining the interval a CronJob is run",
            "jsonPath": ".spec.cronSpec"},
           {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
           {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
CRD = {"spec": {"group": "stable.example.com", "names": {"kind": "CronTab", "plural": "crontabs"},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": SCHEMA}, "additionalPrinterColumns": COLUMNS}]}}


def _write(obj: dict[str, Any], old: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    apply_defaults(SCHEMA, obj)
    unknown = prune(SCHEMA, obj)
    return unknown, [e.message() for e in validate_custom_resource(SCHEMA, obj, old)]


def _crontab(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "my-new-cron-object", "creationTimestamp": "2026-12-03T10:00:00Z"}, "spec": spec}


def test_the_crd_is_valid() -> None:
    assert validate_crd_schema(SCHEMA, "spec.versions[0].schema.openAPIV3Schema") == []


def test_valid_object_is_defaulted_and_pruned() -> None:
    obj = _crontab(cronSpec="* * * * */5", image="my-awesome-cron-image", someRandomField=42)
    assert _write(obj) == (["spec.someRandomField"], [])
    assert obj["spec"] == {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "replicas": 1,
                           "maxReplicas": 10, "minReplicas": 0}
    definitions, row = printer_columns(COLUMNS)
    assert [d["name"] for d in definitions] == ["Spec", "Replicas", "Age"]
    assert row(obj, datetime(2026, 12, 3, 10, 5, tzinfo=UTC)) == ["* * * * */5", 1, "5m"]


def test_schema_errors() -> None:
    assert _write(_crontab(cronSpec="* * * *", image="my-awesome-cron-image", replicas=15))[1] == [
        f'spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match \'{CRON}\'',
        "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10",
        'spec: Invalid value: "object": replicas should be smaller than or equal to maxReplicas.',
    ]


def test_rule_errors() -> None:
    assert _write(_crontab(cronSpec="* * * * *", replicas=5, minReplicas=6, maxReplicas=4))[1] == [
        'spec: Invalid value: "object": replicas should be greater than or equal to minReplicas.',
        'spec: Invalid value: "object": replicas should be smaller than or equal to maxReplicas.',
    ]


def test_published_schema_names_the_kind() -> None:
    schema = openapi_schema(CRD, "v1")
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]
    assert schema["properties"]["spec"]["properties"]["replicas"]["default"] == 1
