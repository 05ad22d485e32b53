"""API semantics over raw HTTP against a real server process: errors, dry-run, field validation,
graceful deletion, finalizers, namespace lifecycle, deletecollection, watch parameters."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.apiserver.test_serviceaccount_admission import wait_for_default_account
from tests.conftest import ServerProcess

CM = "/api/v1/namespaces/default/configmaps"


def call(server: ServerProcess, method: str, path: str, body: Any = None, *,
         content_type: str = "application/json", raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None, dict(response.headers)
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text), dict(error.headers)


def configmap(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


def exists(server: ServerProcess, path: str) -> bool:
    return call(server, "GET", path)[0] == 200


@pytest.mark.parametrize(("raw", "content_type", "code", "reason"), [
    (b"{not json", "application/json", 400, "BadRequest"),
    (b"a: [unclosed", "application/yaml", 400, "BadRequest"),
    (b'{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}', "application/json", 400,
     "BadRequest"),
    (b'{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}', "application/json", 400, "BadRequest"),
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"UPPER"}}', "application/json", 422, "Invalid"),
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}', "application/json", 400,
     "BadRequest"),
    (b"<xml/>", "application/xml", 415, "UnsupportedMediaType"),
])
def test_bad_input_is_a_status_and_stores_nothing(server: ServerProcess, raw: bytes, content_type: str,
                                                  code: int, reason: str) -> None:
    status, body, _ = call(server, "POST", CM, raw=raw, content_type=content_type)
    assert status == code
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code
    assert not exists(server, CM + "/x") and not exists(server, CM + "/UPPER")


def test_invalid_has_field_causes(server: ServerProcess) -> None:
    status, body, _ = call(server, "POST", "/apis/apps/v1/namespaces/default/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken"},
        "spec": {"selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}}})
    assert status == 422
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert "spec.template.metadata.labels" in fields
    assert "spec.template.spec.containers[0].image" in fields


def test_request_entity_too_large(server: ServerProcess) -> None:
    big = configmap("big", data={"blob": "x" * (3 * 1024 * 1024 + 10)})
    status, body, _ = call(server, "POST", CM, big)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"
    assert not exists(server, CM + "/big")


def test_dry_run_stores_nothing(server: ServerProcess) -> None:
    status, body, _ = call(server, "POST", CM + "?dryRun=All", configmap("dry"))
    assert status == 201 and body["metadata"]["name"] == "dry"
    assert not exists(server, CM + "/dry")
    call(server, "POST", CM, configmap("dry2", data={"a": "1"}))
    status, body, _ = call(server, "PATCH", CM + "/dry2?dryRun=All", {"data": {"a": "2"}},
                           content_type="application/merge-patch+json")
    assert status == 200 and body["data"]["a"] == "2"
    assert call(server, "GET", CM + "/dry2")[1]["data"]["a"] == "1"
    status, _, _ = call(server, "DELETE", CM + "/dry2?dryRun=All")
    assert status == 200 and exists(server, CM + "/dry2")


def test_field_validation_modes(server: ServerProcess) -> None:
    unknown = configmap("fv", data={"a": "b"}, extra={"x": 1})
    status, body, _ = call(server, "POST", CM + "?fieldValidation=Strict", unknown)
    assert status == 400 and 'unknown field "extra"' in body["message"]
    status, body, headers = call(server, "POST", CM + "?fieldValidation=Warn", unknown)
    assert status == 201 and "extra" not in body
    assert 'unknown field \\"extra\\"' in headers.get("Warning", "") or 'unknown field "extra"' in headers.get(
        "Warning", "")
    call(server, "DELETE", CM + "/fv")
    status, body, headers = call(server, "POST", CM + "?fieldValidation=Ignore", unknown)
    assert status == 201 and "extra" not in body and "Warning" not in headers


def test_optimistic_concurrency_and_generate_name(server: ServerProcess) -> None:
    status, created, _ = call(server, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"generateName": "gen-"}})
    assert status == 201 and created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == 9
    path = CM + "/" + created["metadata"]["name"]
    fresh = dict(created, data={"v": "1"})
    assert call(server, "PUT", path, fresh)[0] == 200
    status, body, _ = call(server, "PUT", path, dict(created, data={"v": "2"}))
    assert status == 409 and body["reason"] == "Conflict"


def test_finalizers_hold_deletion(server: ServerProcess) -> None:
    call(server, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    status, body, _ = call(server, "DELETE", CM + "/held")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    assert exists(server, CM + "/held")
    status, _, _ = call(server, "PATCH", CM + "/held", {"metadata": {"finalizers": None}},
                        content_type="application/merge-patch+json")
    assert status == 200
    assert not exists(server, CM + "/held")


def test_graceful_pod_deletion(server: ServerProcess) -> None:
    pods = "/api/v1/namespaces/default/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "graceful"},
           "spec": {"nodeName": "some-node", "containers": [{"name": "c", "image": "busybox"}]}}
    # ServiceAccount admission wants the account the controller manager makes a few seconds after start.
    wait_for_default_account(server, "default")
    assert call(server, "POST", pods, pod)[0] == 201
    status, body, _ = call(server, "DELETE", pods + "/graceful", {"gracePeriodSeconds": 30})
    assert status == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 30
    assert exists(server, pods + "/graceful")  # the node's agent finishes it
    status, _, _ = call(server, "DELETE", pods + "/graceful", {"gracePeriodSeconds": 0})
    assert status == 200 and not exists(server, pods + "/graceful")
    unscheduled = dict(pod, metadata={"name": "unscheduled"}, spec={"containers": [{"name": "c", "image": "b"}]})
    call(server, "POST", pods, unscheduled)
    call(server, "DELETE", pods + "/unscheduled")
    assert not exists(server, pods + "/unscheduled")  # never ran anywhere: gone at once


def test_propagation_policy_is_recorded(server: ServerProcess) -> None:
    call(server, "POST", CM, configmap("fg"))
    status, body, _ = call(server, "DELETE", CM + "/fg", {"propagationPolicy": "Foreground"})
    assert status == 200 and "foregroundDeletion" in body["metadata"]["finalizers"]
    call(server, "POST", CM, configmap("orphan"))
    status, body, _ = call(server, "DELETE", CM + "/orphan?propagationPolicy=Orphan")
    assert "orphan" in body["metadata"]["finalizers"]


def test_terminating_namespace_refuses_new_content(server: ServerProcess) -> None:
    call(server, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": "closing"}})
    call(server, "POST", "/api/v1/namespaces/closing/configmaps", configmap("inside"))
    status, body, _ = call(server, "DELETE", "/api/v1/namespaces/closing")
    assert status == 200 and body["status"]["phase"] == "Terminating"
    status, body, _ = call(server, "POST", "/api/v1/namespaces/closing/configmaps", configmap("late"))
    assert status == 403 and "being terminated" in body["message"]
    status, body, _ = call(server, "POST", "/api/v1/namespaces/nowhere/configmaps", configmap("x"))
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found'
    # The namespace controller (embedded) empties and finalizes it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and exists(server, "/api/v1/namespaces/closing"):
        time.sleep(0.2)
    assert not exists(server, "/api/v1/namespaces/closing")
    # Admission reads namespaces from a cache: it must follow the namespace's whole life.
    status, body, _ = call(server, "POST", "/api/v1/namespaces/closing/configmaps", configmap("after"))
    assert status == 404 and body["message"] == 'namespaces "closing" not found'
    call(server, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": "closing"}})
    status, _, _ = call(server, "POST", "/api/v1/namespaces/closing/configmaps", configmap("reborn"))
    assert status == 201


def test_deletecollection_with_selector(server: ServerProcess) -> None:
    for index in range(4):
        call(server, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": f"dc-{index}", "labels": {"dc": str(index % 2)}}})
    status, body, _ = call(server, "DELETE", CM + "?labelSelector=dc%3D0")
    assert status == 200 and sorted(i["metadata"]["name"] for i in body["items"]) == ["dc-0", "dc-2"]
    remaining = call(server, "GET", CM + "?labelSelector=dc")[1]["items"]
    assert sorted(i["metadata"]["name"] for i in remaining) == ["dc-1", "dc-3"]


def test_watch_timeout_and_bookmarks(server: ServerProcess) -> None:
    listed = call(server, "GET", CM)[1]["metadata"]["resourceVersion"]
    start = time.monotonic()
    request = urllib.request.Request(
        server.url + CM + f"?watch=true&resourceVersion={listed}&timeoutSeconds=1&allowWatchBookmarks=true")
    with urllib.request.urlopen(request, timeout=10) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert 0.9 < time.monotonic() - start < 5
    assert lines and lines[-1]["type"] == "BOOKMARK"
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == listed


def test_health_version_discovery(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.url + "/healthz") as response:
        assert response.read() == b"ok"
    # /openapi/v2 is served (kubectl validates `kind: List` with it); a plain client gets JSON.
    status, v2, _ = call(server, "GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert (status, v2["swagger"]) == (200, "2.0")
    request = urllib.request.Request(server.url + "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"] == \
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        groups = {item["metadata"]["name"] for item in json.loads(response.read())["items"]}
    assert {"apps", "batch", "coordination.k8s.io", "policy", "discovery.k8s.io", "events.k8s.io"} <= groups
