"""check_against_schema: Go-decoder type errors, unknown fields, required fields, custom schemas."""

from __future__ import annotations

import copy
import time
from typing import Any

from pilothouse.machinery.schema import schema_for_kind
from pilothouse.machinery.validation import check_against_schema, decode_error_message

DEPLOYMENT = schema_for_kind("apps", "v1", "Deployment") or {}
POD = schema_for_kind("", "v1", "Pod") or {}
SECRET = schema_for_kind("", "v1", "Secret") or {}
SERVICE = schema_for_kind("", "v1", "Service") or {}


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"},
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{
                                  "name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                                  "resources": {"limits": {"cpu": "500m", "memory": 1e9}}}]}}},
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
                                                  "lastUpdateTime": "2024-05-01T10:00:00Z"}]},
    }


def test_valid_object_is_clean() -> None:
    report = check_against_schema(_deployment(), DEPLOYMENT, check_required=True)
    assert report.ok, report


def test_wrong_type_is_a_go_decode_error() -> None:
    obj = _deployment()
    obj["spec"]["replicas"] = "3"
    report = check_against_schema(obj, DEPLOYMENT)
    assert report.decode_errors == [
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"]
    assert [(e.type, e.field) for e in report.errors] == [("FieldValueTypeInvalid", "spec.replicas")]
    assert decode_error_message("Deployment", "v1", report.decode_errors[0]) == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go '
        "struct field DeploymentSpec.spec.replicas of type int32")


def test_go_paths_drop_indices_and_name_the_enclosing_struct() -> None:
    obj = _deployment()
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["name"] = 5
    container["ports"][0]["containerPort"] = 1.5
    obj["metadata"]["labels"]["app"] = True
    obj["spec"]["template"]["spec"]["volumes"] = "none"
    obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = {"x": 1}
    report = check_against_schema(obj, DEPLOYMENT)
    assert report.decode_errors == [
        "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of type string",
        "json: cannot unmarshal object into Go struct field RollingUpdateDeployment.spec.strategy."
        "rollingUpdate.maxSurge of type int32",
        "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.name of "
        "type string",
        "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.template.spec.containers."
        "ports.containerPort of type int32",
        "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.volumes of type "
        "[]v1.Volume",
    ]
    assert [e.field for e in report.errors] == [
        "metadata.labels.app", "spec.strategy.rollingUpdate.maxSurge",
        "spec.template.spec.containers[0].name", "spec.template.spec.containers[0].ports[0].containerPort",
        "spec.template.spec.volumes"]


def test_int32_range_and_objects_given_scalars() -> None:
    obj = _deployment()
    obj["spec"]["replicas"] = 2**31
    obj["spec"]["template"] = "x"
    report = check_against_schema(obj, DEPLOYMENT)
    assert report.decode_errors == [
        "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type "
        "int32",
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.template of type "
        "v1.PodTemplateSpec"]


def test_custom_unmarshalers_quantity_time_bytes() -> None:
    obj = _deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "lots"
    obj["metadata"]["creationTimestamp"] = "yesterday"
    report = check_against_schema(obj, DEPLOYMENT)
    assert report.decode_errors == [
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"good": "aGVsbG8=", "bad": "not base64!"}, "stringData": {"plain": "text"}}
    report = check_against_schema(secret, SECRET)
    assert report.decode_errors == ["illegal base64 data at input byte 3"]
    assert [e.field for e in report.errors] == ["data.bad"]


def test_nulls_are_zero_values() -> None:
    obj = _deployment()
    obj["spec"]["replicas"] = None
    obj["metadata"]["labels"] = None
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = None
    assert check_against_schema(obj, DEPLOYMENT).ok


def test_unknown_fields_use_decoder_paths() -> None:
    obj = _deployment()
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    obj["metadata"]["bogus"] = {}
    obj["spec"]["foo2"] = {"deep": 1}
    report = check_against_schema(obj, DEPLOYMENT)
    # In document order, as the decoder meets them.
    assert report.unknown_fields == ["metadata.bogus", "spec.template.spec.containers[0].imagee", "spec.foo",
                                     "spec.foo2"]
    assert report.decode_errors == [] and report.errors == []
    assert report.strict_error() == (
        'strict decoding error: unknown field "metadata.bogus", unknown field '
        '"spec.template.spec.containers[0].imagee", unknown field "spec.foo", unknown field "spec.foo2"')
    assert report.warnings()[2] == 'unknown field "spec.foo"'


def test_maps_and_free_form_fields_accept_any_key() -> None:
    obj = _deployment()
    obj["metadata"]["labels"]["anything.example.com/x"] = "y"
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update",
                                         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}}]
    assert check_against_schema(obj, DEPLOYMENT).ok


def test_required_checking_is_opt_in_and_skips_metadata_and_status() -> None:
    obj = _deployment()
    del obj["spec"]["selector"]
    container = obj["spec"]["template"]["spec"]["containers"][0]
    del container["image"]
    container["name"] = ""
    obj["status"]["conditions"][0].pop("status")
    assert check_against_schema(obj, DEPLOYMENT).ok
    report = check_against_schema(obj, DEPLOYMENT, check_required=True)
    assert [(e.type, e.field) for e in report.missing_required] == [
        ("FieldValueRequired", "spec.template.spec.containers[0].name"),
        ("FieldValueRequired", "spec.template.spec.containers[0].image"),
        ("FieldValueRequired", "spec.selector")]


def test_int_or_string_accepts_both() -> None:
    service: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                               "spec": {"ports": [{"port": 80, "targetPort": "http"},
                                                  {"port": 81, "targetPort": 8081}]}}
    assert check_against_schema(service, SERVICE).ok
    service["spec"]["ports"][0]["targetPort"] = True
    assert check_against_schema(service, SERVICE).decode_errors == [
        "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32"]


CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "format": "int32"},
                "ratio": {"type": "number"},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {"type": "array", "items": {"type": "string"}},
                "settings": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "mixed": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                          "properties": {"known": {"type": "boolean"}}},
            },
        },
    },
}


def test_custom_resource_schema() -> None:
    obj: dict[str, Any] = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w", "labels": {"a": "b"}},
           "spec": {"size": 3, "ratio": 1, "port": "http", "tags": ["a"], "settings": {"k": "v"},
                    "free": {"any": {"thing": [1]}}, "mixed": {"known": True, "other": 1}}}
    assert check_against_schema(obj, CRD_SCHEMA, check_required=True).ok
    bad = copy.deepcopy(obj)
    bad["spec"].update(size="3", tags=[1], extra=True)
    bad["spec"]["mixed"]["known"] = "yes"
    bad["metadata"]["nope"] = 1
    del bad["spec"]["ratio"]
    report = check_against_schema(bad, CRD_SCHEMA)
    # Custom resources are not decoded into Go structs: type errors are 422 causes, not 400s.
    assert report.decode_errors == []
    assert [e.message() for e in report.errors] == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"',
        'spec.tags[0]: Invalid value: "integer": spec.tags[0] in body must be of type string: "integer"',
        'spec.mixed.known: Invalid value: "string": spec.mixed.known in body must be of type boolean: '
        '"string"',
    ]
    assert report.unknown_fields == ["metadata.nope", "spec.extra"]


def test_a_pod_checks_in_well_under_a_millisecond() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"},
                        "annotations": {"note": "n"}},
           "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                                    "env": [{"name": "A", "value": "b"}],
                                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                                    "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}], "restartPolicy": "Always",
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]}}
    check_against_schema(pod, POD)  # compile once
    start = time.perf_counter()
    for _ in range(200):
        report = check_against_schema(pod, POD, check_required=True)
    per_pod = (time.perf_counter() - start) / 200
    assert report.ok, report
    assert per_pod < 0.001, per_pod


def test_a_remembered_clean_spec_never_hides_a_later_problem() -> None:
    """check_against_schema skips top-level maps that walked clean lately (a template's spec comes
    again and again); any change, and any problem, is walked and reported every time."""
    schema = schema_for_kind("apps", "v1", "Deployment")
    good = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    for _ in range(2):
        report = check_against_schema(copy.deepcopy(good), schema)
        assert not report.errors and not report.unknown_fields
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad["spec"]["replicas"] = "two"
    for _ in range(2):
        report = check_against_schema(copy.deepcopy(bad), schema)
        assert report.unknown_fields == ["spec.template.spec.containers[0].imagePullPolicyy"]
        assert [e.field for e in report.errors] == ["spec.replicas"]
    report = check_against_schema(copy.deepcopy(good), schema, check_required=True)
    assert not report.missing_required  # the other mode is walked (and remembered) on its own
