"""Hostile request bodies against a real server: nesting bombs (JSON and YAML), YAML alias bombs
("billion laughs"), invalid UTF-8 and bodies over kube-apiserver's 3 MiB limit are refused with a
4xx ``Status``; the server keeps answering afterwards."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from tests.conftest import ServerProcess

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def send(server: ServerProcess, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json", chunked: bool = False) -> tuple[int, dict[str, Any]]:
    """One request over a fresh connection: (status, decoded JSON body)."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        headers = {"Content-Type": content_type}
        if chunked:
            connection.request(method, path, body=iter([body or b""]), headers=headers, encode_chunked=True)
        else:
            connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:  # an unserved group's 404 is plain text, as kube-apiserver's
            return response.status, {"text": raw.decode(errors="replace")}
    finally:
        connection.close()


def assert_status(answer: tuple[int, dict[str, Any]], code: int, reason: str, text: str = "") -> None:
    status, body = answer
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body
    assert text in body["message"], body


def still_serving(server: ServerProcess) -> None:
    """The official client still reads and writes."""
    api = client.CoreV1Api(client.ApiClient(_configuration(server)))
    assert api.read_namespace("default").metadata.name == "default"


def _configuration(server: ServerProcess) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = server.url
    return configuration


def configmap_yaml(name: str, extra: str) -> bytes:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}".encode()


@pytest.mark.parametrize("depth", [500, 10_000])
def test_deeply_nested_yaml_is_a_400_not_a_crash(server: ServerProcess, depth: int) -> None:
    # Before the fix: PyYAML recursed once per level and the server answered 500 RecursionError.
    body = configmap_yaml(f"deep-yaml-{depth}", "x: " + "[" * depth + "]" * depth + "\n")
    assert_status(send(server, "POST", CONFIGMAPS, body, "application/yaml"), 400, "BadRequest",
                  "exceeded max depth")
    still_serving(server)


def test_deeply_nested_json_is_a_400(server: ServerProcess) -> None:
    body = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep-json"},"x":'
            + "[" * 10_000 + "]" * 10_000 + "}").encode()
    assert_status(send(server, "POST", CONFIGMAPS, body), 400, "BadRequest", "json parse error")
    still_serving(server)


def billion_laughs(levels: int) -> str:
    lines = ['x:\n  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    previous = "a"
    for anchor in "bcdefghijk"[:levels]:
        lines.append(f"  {anchor}: &{anchor} [" + ",".join(["*" + previous] * 9) + "]\n")
        previous = anchor
    return "".join(lines)


@pytest.mark.parametrize("content_type", ["application/yaml", "application/apply-patch+yaml"])
def test_billion_laughs_is_refused(server: ServerProcess, content_type: str) -> None:
    # 9^9 ≈ 387 million strings once expanded, from a 500-byte document.
    body = configmap_yaml("laughs", billion_laughs(8))
    if content_type == "application/yaml":
        answer = send(server, "POST", CONFIGMAPS, body, content_type)
    else:
        answer = send(server, "PATCH", CONFIGMAPS + "/laughs?fieldManager=fuzz", body, content_type)
    assert_status(answer, 400, "BadRequest", "excessive aliasing")
    still_serving(server)


def test_a_few_aliases_are_fine(server: ServerProcess) -> None:
    body = configmap_yaml("aliased", 'data:\n  a: &v "same"\n  b: *v\n')
    status, created = send(server, "POST", CONFIGMAPS, body, "application/yaml")
    assert status == 201, created
    assert created["data"] == {"a": "same", "b": "same"}


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u\xff"}}'),
    ("application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"u\xff\"}\n"),
    ("application/merge-patch+json", b'{"data":{"k":"\xc3\x28"}}'),
])
def test_invalid_utf8_is_a_400(server: ServerProcess, content_type: str, body: bytes) -> None:
    if content_type == "application/merge-patch+json":
        server.kubectl("create", "configmap", "utf8-target")
        answer = send(server, "PATCH", CONFIGMAPS + "/utf8-target", body, content_type)
    else:
        answer = send(server, "POST", CONFIGMAPS, body, content_type)
    assert_status(answer, 400, "BadRequest")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_3_mib_is_a_413(server: ServerProcess, chunked: bool) -> None:
    # With a Content-Length it is refused unread; chunked, once 3 MiB have arrived.
    data = "x" * (3 * 1024 * 1024)
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                       "data": {"k": data}}).encode()
    assert_status(send(server, "POST", CONFIGMAPS, body, chunked=chunked), 413, "RequestEntityTooLarge")
    still_serving(server)


def test_request_timeout_parameter(server: ServerProcess) -> None:
    """``?timeout=`` shortens the request's deadline: a list that cannot finish in a nanosecond is a 504
    ``Timeout`` Status, as kube-apiserver answers; a malformed one is a 400."""
    assert_status(send(server, "GET", CONFIGMAPS + "?timeout=1ns"), 504, "Timeout",
                  "request did not complete within requested timeout")
    assert_status(send(server, "GET", CONFIGMAPS + "?timeout=soon"), 400, "BadRequest",
                  "invalid timeout specified in the request URL")
    status, listed = send(server, "GET", CONFIGMAPS + "?timeout=30s")
    assert status == 200 and listed["kind"] == "ConfigMapList"


def test_an_integer_beyond_int64_in_yaml_is_not_a_500(server: ServerProcess) -> None:
    """Found by the fuzzer: a server-side apply (YAML) with an integer past int64 was a 500 (the
    encoder cannot write it); it becomes a float, as in a JSON body, and the apply goes through."""
    server.kubectl("create", "secret", "generic", "big-int")
    body = b"apiVersion: v1\nkind: Secret\nmetadata: {name: big-int}\nx: 123456789012345678901234567890\n"
    status, applied = send(server, "PATCH", "/api/v1/namespaces/default/secrets/big-int?fieldManager=fuzz",
                           body, "application/apply-patch+yaml")
    assert status == 200, applied
    assert "x" not in applied  # an unknown field, dropped (with a warning) as kube-apiserver does


def send_with_headers(server: ServerProcess, method: str, path: str,
                      body: bytes) -> tuple[int, dict[str, Any], list[str]]:
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.headers.get_all("Warning") or []
    finally:
        connection.close()


DUPLICATED = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"NAME","name":"NAME"},'
              b'"data":{"a":"first","b":"x:y","a":"second"}}')


@pytest.mark.parametrize("validation", ["Strict", "Warn", "", "Ignore"])
def test_duplicate_fields_follow_field_validation(server: ServerProcess, validation: str) -> None:
    """kube-apiserver's strict decoding: Strict refuses, Warn (the default) warns, Ignore keeps the
    last value; orjson alone kept the last value silently in every mode."""
    name = f"dup-{validation.lower() or 'default'}"
    body = DUPLICATED.replace(b"NAME", name.encode())
    query = f"?fieldValidation={validation}" if validation else ""
    status, answer, warnings = send_with_headers(server, "POST", CONFIGMAPS + query, body)
    if validation == "Strict":
        assert status == 400, answer
        assert answer["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding '
                                     'error: duplicate field "metadata.name", duplicate field "data.a"')
        return
    assert status == 201, answer
    assert answer["data"] == {"a": "second", "b": "x:y"}
    expected = [] if validation == "Ignore" else ['299 - "duplicate field \\"metadata.name\\""',
                                                  '299 - "duplicate field \\"data.a\\""']
    assert warnings == expected
    # An update (PUT) is checked the same way.
    status, answer, warnings = send_with_headers(server, "PUT", f"{CONFIGMAPS}/{name}{query}", body)
    assert status == 200 and len(warnings) == len(expected), (answer, warnings)


CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "blobs.hostile.example.com"},
       "spec": {"group": "hostile.example.com", "scope": "Namespaced",
                "names": {"plural": "blobs", "singular": "blob", "kind": "Blob"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


@pytest.mark.parametrize(("depth", "content_type", "expected"), [
    (190, "application/json", 201), (190, "application/yaml", 201),
    (300, "application/json", 400), (300, "application/yaml", 400),
])
def test_nesting_kept_by_a_custom_resource_is_bounded(server: ServerProcess, depth: int, content_type: str,
                                                      expected: int) -> None:
    """A custom resource that preserves unknown fields keeps whatever depth it is sent: 300 levels
    were a 500 (orjson's encoder stops at 254, the recursive walks at Python's limit), now a 400
    past 200 levels; just under the limit is stored and read back."""
    blobs = "/apis/hostile.example.com/v1/namespaces/default/blobs"
    if send(server, "GET", blobs)[0] == 404:
        send(server, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.dumps(CRD).encode())
        server.kubectl("wait", "--for=condition=Established", "crd/blobs.hostile.example.com")
    name = f"deep-{depth}-{content_type.rsplit('/', 1)[1]}"
    body = ('{"apiVersion":"hostile.example.com/v1","kind":"Blob","metadata":{"name":"' + name + '"},'
            '"spec":{"x":' + "[" * depth + "]" * depth + "}}").encode()
    status, answer = send(server, "POST", blobs, body, content_type)
    assert status == expected, answer
    if expected == 400:
        assert "exceeded max depth of 200" in answer["message"]
    else:
        assert send(server, "GET", f"{blobs}/{name}")[0] == 200
    still_serving(server)
