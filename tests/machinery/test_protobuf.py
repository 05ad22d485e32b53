"""Offline tests of the Kubernetes protobuf decoder: captured kubectl bodies plus hand-built messages.

The ``protobuf_fixtures/*.pb`` files are real request bodies from kubectl 1.32.4 (see
``test_protobuf_kubectl.py``, which can refresh them). Hand-built messages cover types kubectl sends
rarely (DeleteOptions, Eviction, Binding, Scale) and the special encodings (Time, MicroTime,
IntOrString, FieldsV1, RawExtension, negative varints).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.protobuf import decode_kubernetes_protobuf, decode_message, message_type_for
from pilothouse.machinery.protobuf.decode import go_duration
from pilothouse.machinery.protobuf.wire import WireError, iter_fields, read_varint

__all__: list[str] = []

FIXTURES = Path(__file__).parent / "protobuf_fixtures"


# --- a tiny encoder, enough to build test messages -------------------------------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def v(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def s(number: int, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def m(number: int, *parts: bytes) -> bytes:
    return s(number, b"".join(parts))


def envelope(api_version: str, kind: str, *raw: bytes, encoding: str = "") -> bytes:
    body = m(1, s(1, api_version), s(2, kind)) + s(2, b"".join(raw))
    if encoding:
        body += s(3, encoding)
    return b"k8s\x00" + body


def fixture(name: str) -> dict[str, Any]:
    return decode_kubernetes_protobuf((FIXTURES / f"{name}.pb").read_bytes())


# --- captured kubectl bodies ---------------------------------------------------------------------

def test_deployment_fixture() -> None:
    assert fixture("deployment_web") == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                  "ports": [{"containerPort": 80}], "resources": {}}]}},
            "strategy": {},
        },
        "status": {},
    }


def test_zero_pointer_scalar_is_kept() -> None:
    assert fixture("deployment_zero_replicas")["spec"]["replicas"] == 0
    assert fixture("pdb_max_unavailable_zero")["spec"]["maxUnavailable"] == 0


def test_secret_bytes_are_base64() -> None:
    assert fixture("secret_generic") == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                         "data": {"user": "YWRtaW4="}, "type": "Opaque"}


def test_configmap_keeps_empty_map_values() -> None:
    assert fixture("configmap_x")["data"] == {"a": "b", "c": ""}


def test_service_int_or_string_ports() -> None:
    assert fixture("service_nodeport")["spec"]["ports"] == [
        {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    assert fixture("service_clusterip_named_port")["spec"]["ports"][0]["targetPort"] == "https"


def test_quota_quantities_are_strings() -> None:
    assert fixture("quota_q")["spec"] == {"hard": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                                          "scopes": ["NotTerminating"]}


def test_self_subject_reviews() -> None:
    ssar = fixture("selfsubjectaccessreview")
    assert ssar["apiVersion"] == "authorization.k8s.io/v1"
    assert ssar["spec"] == {"resourceAttributes": {"namespace": "prod", "verb": "list", "group": "apps",
                                                   "resource": "deployments"}}
    assert fixture("selfsubjectaccessreview_nonresource")["spec"] == {
        "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}
    assert fixture("selfsubjectrulesreview")["spec"] == {"namespace": "dev"}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.pb")), ids=lambda p: p.stem)
def test_every_fixture_decodes_to_json(path: Path) -> None:
    obj = decode_kubernetes_protobuf(path.read_bytes())
    assert obj["apiVersion"] and obj["kind"]
    assert json.loads(json.dumps(obj)) == obj


def test_decoding_is_fast() -> None:
    data = (FIXTURES / "deployment_web.pb").read_bytes()
    runs = 300
    start = time.perf_counter()
    for _ in range(runs):
        decode_kubernetes_protobuf(data)
    assert (time.perf_counter() - start) / runs < 0.001


# --- hand-built messages ---------------------------------------------------------------------------

def test_delete_options_in_any_group_version() -> None:
    body = envelope("v1", "DeleteOptions", v(1, 0), m(2, s(1, "uid-1")), v(3, 0), s(4, "Background"),
                    s(5, "All"))
    assert decode_kubernetes_protobuf(body) == {
        "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1"}, "orphanDependents": False, "propagationPolicy": "Background",
        "dryRun": ["All"]}
    assert message_type_for("meta.k8s.io/v1", "DeleteOptions") == "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    assert message_type_for("policy/v1", "DeleteOptions") is not None


def test_eviction_binding_scale() -> None:
    eviction = envelope("policy/v1", "Eviction", m(1, s(1, "web-0"), s(3, "default")), m(2, v(1, 30)))
    assert decode_kubernetes_protobuf(eviction) == {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 30}}
    binding = envelope("v1", "Binding", m(1, s(1, "p")), m(2, s(1, "Node"), s(3, "node-1")))
    assert decode_kubernetes_protobuf(binding)["target"] == {"kind": "Node", "name": "node-1"}
    scale = envelope("autoscaling/v1", "Scale", m(1, s(1, "web")), m(2, v(1, 0)), m(3, v(1, 0)))
    decoded = decode_kubernetes_protobuf(scale)
    assert decoded["spec"] == {}  # ScaleSpec.replicas is a plain int32 with omitempty
    assert decoded["status"] == {"replicas": 0}  # ScaleStatus.replicas is required (no omitempty)


def test_times_and_negative_varints() -> None:
    # 2024-01-01T00:00:00Z = 1704067200; generation -1 is a 10-byte varint.
    meta = m(1, s(1, "p"), v(7, -1), m(9, v(1, 1704067200), v(2, 5_000_000)), v(10, 30))
    pod = decode_kubernetes_protobuf(envelope("v1", "Pod", meta))
    assert pod["metadata"] == {"name": "p", "generation": -1, "deletionTimestamp": "2024-01-01T00:00:00Z",
                               "deletionGracePeriodSeconds": 30}
    lease = decode_kubernetes_protobuf(envelope(
        "coordination.k8s.io/v1", "Lease", m(1, s(1, "l")),
        m(2, s(1, "me"), v(2, 15), m(3, v(1, 1704067200), v(2, 123_456_000)), v(5, 0))))
    assert lease["spec"] == {"holderIdentity": "me", "leaseDurationSeconds": 15,
                             "acquireTime": "2024-01-01T00:00:00.123456Z", "leaseTransitions": 0}


def test_zero_time_is_dropped() -> None:
    pod = decode_kubernetes_protobuf(envelope("v1", "Pod", m(1, s(1, "p"), m(8))))
    assert pod["metadata"] == {"name": "p"}
    old = decode_kubernetes_protobuf(envelope("v1", "Pod", m(1, s(1, "p"), m(8, v(1, -62135596800)))))
    assert old["metadata"] == {"name": "p"}


def test_managed_fields_and_raw_extension() -> None:
    entry = m(17, s(1, "kubectl"), s(2, "Apply"), s(3, "v1"), s(6, "FieldsV1"),
              m(7, s(1, b'{"f:data":{"f:a":{}}}')))
    cm = decode_kubernetes_protobuf(envelope("v1", "ConfigMap", m(1, s(1, "c"), entry)))
    assert cm["metadata"]["managedFields"] == [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                                                "fieldsType": "FieldsV1",
                                                "fieldsV1": {"f:data": {"f:a": {}}}}]
    revision = decode_kubernetes_protobuf(envelope(
        "apps/v1", "ControllerRevision", m(1, s(1, "r")), m(2, s(1, b'{"spec":{"x":1}}')), v(3, 4)))
    assert revision["data"] == {"spec": {"x": 1}}
    assert revision["revision"] == 4


def test_unknown_fields_are_skipped() -> None:
    cm = decode_kubernetes_protobuf(envelope("v1", "ConfigMap", m(1, s(1, "c")), v(99, 7), s(98, "junk")))
    assert cm == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}


def test_empty_raw_is_an_empty_object() -> None:
    assert decode_kubernetes_protobuf(envelope("v1", "Namespace")) == {"apiVersion": "v1", "kind": "Namespace"}


@pytest.mark.parametrize(("body", "code"), [
    (b'{"kind":"ConfigMap"}', 400),  # JSON sent with the protobuf content type: no magic
    (b"k8s\x00\x0a\x05\x0a\x02v1", 400),  # truncated TypeMeta
    (envelope("v1", "Frobnicator", m(1, s(1, "x"))), 400),
    (envelope("example.com/v1", "Widget"), 400),
    (envelope("v1", "ConfigMap", v(1, 5)), 400),  # metadata as a varint: wrong wire type
    (envelope("v1", "ConfigMap", m(1, s(1, b"\xff\xfe"))), 400),  # invalid UTF-8 name
    (envelope("v1", "ConfigMap", m(1, s(1, "x")), encoding="gzip"), 415),
])
def test_malformed_bodies(body: bytes, code: int) -> None:
    with pytest.raises(StatusError) as caught:
        decode_kubernetes_protobuf(body)
    assert caught.value.code == code


def test_decode_message_directly() -> None:
    assert decode_message("k8s.io.api.core.v1.ContainerPort", v(3, 8080) + s(4, "TCP")) == {
        "containerPort": 8080, "protocol": "TCP"}
    with pytest.raises(StatusError):
        decode_message("k8s.io.api.core.v1.NoSuchThing", b"")


def test_wire_reader() -> None:
    assert read_varint(_varint(300), 0) == (300, 2)
    assert list(iter_fields(v(1, 1) + s(2, "ab"))) == [(1, 0, 1), (2, 2, b"ab")]
    assert list(iter_fields(b"\x0d\x01\x00\x00\x00\x11" + b"\x02" + b"\x00" * 7)) == [(1, 5, 1), (2, 1, 2)]
    for bad in (b"\x80", b"\x12\x05ab", b"\x0b", b"\x00\x01", b"\x0d\x01"):
        with pytest.raises(WireError):
            list(iter_fields(bad))


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (60_000_000_000, "1m0s"), (1_500_000_000, "1.5s"), (300_000_000, "300ms"),
    (3_723_000_000_000, "1h2m3s"), (1_000, "1µs"), (-2_000_000_000, "-2s"), (7, "7ns"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_drain_delete_options_fixture() -> None:
    # kubectl drain --disable-eviction --grace-period=0: the *int64 zero must survive.
    assert fixture("delete_options") == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
