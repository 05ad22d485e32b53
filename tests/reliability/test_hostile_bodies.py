"""Request bodies found by fuzzing the server's own OpenAPI (issue 15): a control character in a field
name must not reach a ``Warning`` header raw (aiohttp refused the header and dropped the
connection), and a DeleteOptions body of the wrong shape is a 400 ``Status``, not a 500."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import ServerProcess

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def request(server: ServerProcess, method: str, path: str, body: Any = None,
                  content_type: str = "application/json") -> tuple[int, list[str], Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, server.url + path, data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type}) as response:
        return response.status, response.headers.getall("Warning", []), await response.json()


@pytest.mark.parametrize(("name", "quoted"), [
    ("\x1f", r"\x1f"), ("a\nb", r"a\nb"), ("tab\there", r"tab\there"), ("\x7f", r"\x7f"),
    ("caf\u00e9\x00", "caf\u00e9" + r"\x00"), ("\u0085", r"\u0085"),
])
async def test_server_side_apply_with_a_control_character_in_a_field_name(server: ServerProcess, name: str,
                                                                          quoted: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa-ctl"}, name: None}
    status, warnings, answer = await request(server, "PATCH", f"{CONFIGMAPS}/ssa-ctl?fieldManager=fuzz",
                                             body, "application/apply-patch+yaml")
    assert status in (200, 201), answer
    assert len(warnings) == 1, warnings
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in warnings[0]), warnings
    # The name stays recognisable, written as Go's strconv.Quote writes it, inside the quoted text
    # (whose own backslashes are escaped again, so a client's parser gets the Go form back).
    assert warnings[0] == '299 - "unknown field \\"{}\\""'.format(quoted.replace("\\", "\\\\")), warnings


@pytest.mark.parametrize("options", [
    {"dryRun": 6.1e-05},
    {"dryRun": [1]},
    {"gracePeriodSeconds": "soon"},
    {"gracePeriodSeconds": 1.5},
    {"preconditions": ["uid"]},
    {"preconditions": {"uid": 7}},
    {"propagationPolicy": 3},
    {"orphanDependents": "yes"},
    {"kind": 5},
    [],
    "x",
])
async def test_delete_with_a_malformed_delete_options_body_is_a_400(server: ServerProcess, options: Any) -> None:
    status, _, created = await request(server, "POST", CONFIGMAPS, {"metadata": {"generateName": "del-"}})
    assert status == 201, created
    path = f"{CONFIGMAPS}/{created['metadata']['name']}"
    for target in (path, CONFIGMAPS + "?labelSelector=none%3Dnone"):  # delete and deletecollection
        status, _, answer = await request(server, "DELETE", target, options)
        assert status == 400, answer
        assert answer["kind"] == "Status" and answer["reason"] == "BadRequest", answer
    status, _, still = await request(server, "GET", path)
    assert status == 200, still  # nothing deleted


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/namespaces/default/pods/hostile/binding", {"target": 5}),
    ("/api/v1/namespaces/default/bindings", {"metadata": {"name": "hostile"}, "target": []}),
    ("/api/v1/namespaces/default/pods/hostile/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                          "metadata": {"name": "hostile"}, "deleteOptions": 5}),
    ("/api/v1/namespaces/default/serviceaccounts/default/token", {"spec": {"audiences": 5}}),
    ("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": 5}}),
    ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {"spec": {"resourceAttributes": 5}}),
    ("/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"user": ["a"]}}),
    ("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"spec": {"namespace": 5}}),
])
async def test_bodies_of_answered_resources_are_decoded_like_objects(server: ServerProcess, path: str,
                                                                      body: Any) -> None:
    """Reviews, bindings, evictions and token requests are not stored, but their bodies are decoded
    into their Go types by kube-apiserver all the same: a wrong type is a 400, never a 500."""
    await request(server, "POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "hostile"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    status, _, answer = await request(server, "POST", path, body)
    assert status == 400, answer
    assert answer["kind"] == "Status" and answer["reason"] == "BadRequest", answer
    assert "cannot unmarshal" in answer["message"], answer


@pytest.mark.parametrize("body", [
    "a: &a [*a]",  # an alias cycle (a "billion laughs" that never ends)
    "a: " + "[" * 5000,  # deeper than the parser's recursion
    '{"a":' * 5000 + "1" + "}" * 5000,
    "[" * 100_000,
])
@pytest.mark.parametrize("content_type", ["application/yaml", "application/apply-patch+yaml"])
async def test_hostile_yaml_is_a_400(server: ServerProcess, body: str, content_type: str) -> None:
    method, path = ("POST", CONFIGMAPS) if content_type == "application/yaml" else (
        "PATCH", f"{CONFIGMAPS}/yaml-bomb?fieldManager=fuzz")
    async with aiohttp.ClientSession() as session, session.request(
            method, server.url + path, data=body, headers={"Content-Type": content_type}) as response:
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["kind"] == "Status" and answer["reason"] == "BadRequest", answer
