"""Protocol details real clients hit: boolean query parameters, trailing slashes and paths outside
the API, Status bodies byte for byte (404, 405, 409, 422), the 400s and 422s kube-apiserver answers
before it reads or streams anything (field labels, resourceVersion, integers, ListOptions and
PatchOptions rules), sendInitialEvents, the deprecated /watch paths, and pretty output.

Raw HTTP (urllib), so that what is checked is exactly what a client receives.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerProcess

GENERIC_404 = (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
               b'"message":"the server could not find the requested resource","reason":"NotFound",'
               b'"details":{},"code":404}\n')
_SERIAL = itertools.count()
STATUS_ORDER = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]


def call(server: ServerProcess, path: str, method: str = "GET", body: Any = None,
         content_type: str = "application/json", user_agent: str = "") -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": content_type} if data else {}
    if user_agent:
        headers["User-Agent"] = user_agent
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def ordered_keys(raw: bytes) -> list[str]:
    return [key for key, _ in json.loads(raw, object_pairs_hook=list)]


def make_configmap(server: ServerProcess, name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps", "POST",
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                           "data": data or {}})
    assert status == 201, raw
    return dict(json.loads(raw))


def watch_lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


# ------------------------------------------------------------------ boolean query parameters


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "t", ""])
def test_watch_parameter_true_values(server: ServerProcess, value: str) -> None:
    """Every value but absent, 0 and false turns a list into a watch (older official clients send
    watch=True)."""
    first = make_configmap(server, f"bool-{next(_SERIAL)}")
    rv = first["metadata"]["resourceVersion"]
    second = make_configmap(server, f"bool-{next(_SERIAL)}")
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?watch={value}"
                                  f"&resourceVersion={rv}&timeoutSeconds=1")
    assert status == 200
    events = watch_lines(raw)
    assert {"type": "ADDED", "name": second["metadata"]["name"]} in [
        {"type": e["type"], "name": e["object"]["metadata"]["name"]} for e in events]
    assert all("type" in e for e in events)


@pytest.mark.parametrize("value", ["false", "False", "FALSE", "0"])
def test_watch_parameter_false_values(server: ServerProcess, value: str) -> None:
    make_configmap(server, f"list-{next(_SERIAL)}")
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?watch={value}")
    assert status == 200
    body = json.loads(raw)
    assert body["kind"] == "ConfigMapList"
    assert any(item["metadata"]["name"].startswith("list-") for item in body["items"])


def test_named_get_ignores_watch(server: ServerProcess) -> None:
    """RequestInfoFactory reads ?watch only on a GET without a name; a named GET is a plain get."""
    created = make_configmap(server, "single-watch")
    status, headers, raw = call(server, "/api/v1/namespaces/default/configmaps/single-watch?watch=True")
    assert status == 200 and "chunked" not in headers.get("Transfer-Encoding", "")
    assert json.loads(raw)["metadata"]["uid"] == created["metadata"]["uid"]


@pytest.mark.parametrize("path", ["/api/v1/watch/namespaces/default/configmaps/one-watched",
                                  "/api/v1/watch/namespaces/default/configmaps",
                                  "/api/v1/watch/configmaps"])
def test_deprecated_watch_paths(server: ServerProcess, path: str) -> None:
    """/watch/... paths (deprecated, still served by 1.32): the collection, or one named object."""
    if call(server, "/api/v1/namespaces/default/configmaps/one-watched")[0] == 404:
        make_configmap(server, "one-watched")
        make_configmap(server, "not-watched")
    status, _, raw = call(server, path + "?timeoutSeconds=1")
    assert status == 200
    names = {e["object"]["metadata"]["name"] for e in watch_lines(raw)}
    assert {e["type"] for e in watch_lines(raw)} == {"ADDED"}
    if path.endswith("one-watched"):
        assert names == {"one-watched"}
    else:
        assert {"one-watched", "not-watched"} <= names


def test_allow_watch_bookmarks_capitalised(server: ServerProcess) -> None:
    created = make_configmap(server, "bookmarks")
    rv = created["metadata"]["resourceVersion"]
    _, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=True"
                             f"&resourceVersion={rv}&timeoutSeconds=1")
    assert "BOOKMARK" in [e["type"] for e in watch_lines(raw)]
    _, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=False"
                             f"&resourceVersion={rv}&timeoutSeconds=1")
    assert "BOOKMARK" not in [e["type"] for e in watch_lines(raw)]


def test_force_capitalised_takes_over_conflicting_fields(server: ServerProcess) -> None:
    path = "/api/v1/namespaces/default/configmaps/forced"
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forced"}, "data": {"k": "a"}}
    status, _, raw = call(server, path + "?fieldManager=one", "PATCH", applied, "application/apply-patch+yaml")
    assert status == 201, raw
    other = {**applied, "data": {"k": "b"}}
    status, _, raw = call(server, path + "?fieldManager=two&force=False", "PATCH", other,
                          "application/apply-patch+yaml")
    assert status == 409 and json.loads(raw)["reason"] == "Conflict"
    status, _, raw = call(server, path + "?fieldManager=two&force=True", "PATCH", other,
                          "application/apply-patch+yaml")
    assert status == 200, raw
    assert json.loads(raw)["data"] == {"k": "b"}


# ------------------------------------------------------------------ trailing slashes


@pytest.mark.parametrize("path", ["/version", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/apis/apps"])
def test_trailing_slash_serves_the_same_document(server: ServerProcess, path: str) -> None:
    plain = call(server, path)
    slashed = call(server, path + "/")
    assert plain[0] == slashed[0] == 200
    assert json.loads(plain[2]) == json.loads(slashed[2])


def test_trailing_slash_on_a_collection_lists_it(server: ServerProcess) -> None:
    make_configmap(server, "slashed")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps/")
    assert status == 200
    assert "slashed" in [item["metadata"]["name"] for item in json.loads(raw)["items"]]
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps/slashed/")
    assert status == 200 and json.loads(raw)["metadata"]["name"] == "slashed"


@pytest.mark.parametrize("path", ["/healthz/", "/livez/", "/readyz/", "/no-such-path",
                                  "/apis/nope.example.com", "/apis/nope.example.com/v1",
                                  "/apis/nope.example.com/v1/widgets", "/apis/nope.example.com/v1/namespaces/x/w/y"])
def test_paths_outside_the_api_are_go_404s(server: ServerProcess, path: str) -> None:
    """kube-apiserver registers these exactly (no trailing slash) or not at all; what no handler
    claims goes down the delegation chain to Go's http.NotFound."""
    status, headers, raw = call(server, path)
    assert status == 404
    assert raw == b"404 page not found\n"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"


# ------------------------------------------------------------------ Status bodies


@pytest.mark.parametrize("path", ["/api/v1/no-such-resources", "/api/v2", "/api/v2/pods", "/apis/apps/v2",
                                  "/apis/apps/v2/deployments", "/apis/apps/v1/widgets",
                                  "/apis/apps/v1/namespaces/default/widgets/x"])
def test_generic_not_found_is_kubernetes_byte_for_byte(server: ServerProcess, path: str) -> None:
    """Inside a served group go-restful answers: NewGenericServerResponse's Status, with details {}."""
    status, headers, raw = call(server, path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert raw == GENERIC_404


GENERIC_405 = (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does '
               b'not allow this method on the requested resource","reason":"MethodNotAllowed","details":{},'
               b'"code":405}\n')


@pytest.mark.parametrize(("method", "path", "content_type"), [
    ("PUT", "/api/v1/namespaces/default/configmaps", "application/json"),
    ("PATCH", "/api/v1/namespaces/default/configmaps", "application/merge-patch+json"),
    ("POST", "/api/v1/namespaces/default/configmaps/kept", "application/json"),
    ("DELETE", "/api/v1/namespaces/default/services/kept/status", "application/json"),
    ("POST", "/api/v1/namespaces/default/services/kept/status", "application/json"),
    ("GET", "/api/v1/namespaces/default/pods/kept/binding", "application/json"),
    ("GET", "/api/v1/namespaces/default/pods/kept/eviction", "application/json"),
])
def test_methods_a_path_does_not_serve_are_generic_405s(server: ServerProcess, method: str, path: str,
                                                        content_type: str) -> None:
    if call(server, "/api/v1/namespaces/default/services/kept")[0] == 404:
        make_configmap(server, "kept")
        status, _, raw = call(server, "/api/v1/namespaces/default/services", "POST", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kept"},
            "spec": {"ports": [{"port": 80}]}})
        assert status == 201, raw
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}
    status, _, raw = call(server, path, method, body, content_type)
    assert (status, raw) == (405, GENERIC_405)
    assert call(server, "/api/v1/namespaces/default/services/kept")[0] == 200


def test_not_found_and_conflict_keep_the_field_order(server: ServerProcess) -> None:
    status, _, missing = call(server, "/api/v1/namespaces/default/configmaps/absent")
    assert status == 404
    assert missing == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                       b'"message":"configmaps \\"absent\\" not found","reason":"NotFound",'
                       b'"details":{"name":"absent","kind":"configmaps"},"code":404}\n')
    make_configmap(server, "twice")
    status, _, conflict = call(server, "/api/v1/namespaces/default/configmaps", "POST",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "twice"}})
    assert status == 409
    assert conflict == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                        b'"message":"configmaps \\"twice\\" already exists","reason":"AlreadyExists",'
                        b'"details":{"name":"twice","kind":"configmaps"},"code":409}\n')
    status, _, invalid = call(server, "/apis/apps/v1/namespaces/default/deployments", "POST",
                              {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
                               "spec": {"selector": {"matchLabels": {"a": "b"}},
                                        "template": {"metadata": {"labels": {"a": "c"}},
                                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert status == 422
    assert ordered_keys(invalid) == STATUS_ORDER


def test_bad_request_leaves_out_empty_details(server: ServerProcess) -> None:
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?limit=x")
    assert status == 400
    assert ordered_keys(raw) == [k for k in STATUS_ORDER if k != "details"]


# ------------------------------------------------------------------ field selectors, resourceVersion


@pytest.mark.parametrize(("path", "label", "message"), [
    ("/api/v1/namespaces/default/pods", "spec.containers", "field label not supported: spec.containers"),
    ("/api/v1/nodes", "metadata.namespace", "field label not supported: metadata.namespace"),
    ("/api/v1/namespaces/default/configmaps", "data.key",
     '"data.key" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("/apis/batch/v1/namespaces/default/jobs", "status.succeeded",
     'field label "status.succeeded" not supported for batchv1.Job'),
])
def test_unsupported_field_label_is_a_400(server: ServerProcess, path: str, label: str, message: str) -> None:
    for query in ("", "&watch=true", "&watch=true&resourceVersion=0"):
        status, _, raw = call(server, f"{path}?fieldSelector={label}%3Dx{query}")
        assert status == 400, (query, raw)
        body = json.loads(raw)
        assert (body["reason"], body["message"], body["code"]) == ("BadRequest", message, 400)


def test_unsupported_field_label_refuses_delete_collection(server: ServerProcess) -> None:
    make_configmap(server, "survivor")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?fieldSelector=data.k%3Dv", "DELETE")
    assert status == 400, raw
    assert call(server, "/api/v1/namespaces/default/configmaps/survivor")[0] == 200


def test_supported_field_labels_still_select(server: ServerProcess) -> None:
    make_configmap(server, "chosen")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dchosen")
    assert status == 200
    assert [i["metadata"]["name"] for i in json.loads(raw)["items"]] == ["chosen"]
    status, _, raw = call(server, "/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName%3Dn1,"
                                  "status.phase!%3DRunning")
    assert status == 200


@pytest.mark.parametrize(("version", "why"), [
    ("abc", "invalid syntax"), ("-1", "invalid syntax"), ("+5", "invalid syntax"), ("1.5", "invalid syntax"),
    ("18446744073709551616", "value out of range"),
])
def test_malformed_resource_version_is_a_400_on_list_and_watch(server: ServerProcess, version: str,
                                                               why: str) -> None:
    message = f'resourceVersion: Invalid value: "{version}": strconv.ParseUint: parsing "{version}": {why}'
    quoted = urllib.request.quote(version)
    for query in ("", "&watch=true", "&watch=1&timeoutSeconds=1"):
        status, headers, raw = call(server, f"/api/v1/namespaces/default/configmaps?resourceVersion={quoted}{query}")
        assert status == 400, (query, raw)
        assert headers.get("Transfer-Encoding") != "chunked"
        body = json.loads(raw)
        assert (body["kind"], body["reason"], body["message"]) == ("Status", "BadRequest", message)


def test_malformed_resource_version_is_a_400_on_get(server: ServerProcess) -> None:
    make_configmap(server, "got")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps/got?resourceVersion=-1")
    assert status == 400
    assert json.loads(raw)["message"] == ('resourceVersion: Invalid value: "-1": strconv.ParseUint: '
                                          'parsing "-1": invalid syntax')
    assert call(server, "/api/v1/namespaces/default/configmaps/got?resourceVersion=0")[0] == 200


def test_well_formed_resource_versions_are_served(server: ServerProcess) -> None:
    for version in ("", "0", "1", "007"):
        status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?resourceVersion={version}")
        assert status == 200, (version, raw)


def test_kubectl_prints_the_field_label_error(server: ServerProcess) -> None:
    result = server.kubectl("get", "pods", "--field-selector", "spec.image=x", check=False)
    assert result.returncode == 1
    # kubectl wraps the server's message in its resource builder's words, as against Kubernetes.
    assert result.stderr == ('Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match '
                             'label selector "", field selector "spec.image=x": field label not supported: '
                             'spec.image\n')


# ------------------------------------------------------------------ sendInitialEvents (WatchList)

INITIAL_END = {"k8s.io/initial-events-end": "true"}


def test_send_initial_events_ends_with_an_annotated_bookmark(server: ServerProcess) -> None:
    make_configmap(server, "initial-a")
    last = make_configmap(server, "initial-b")
    base = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&allowWatchBookmarks=True"
    for query in ("&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
                  f"&sendInitialEvents=1&resourceVersionMatch=NotOlderThan&resourceVersion="
                  f"{last['metadata']['resourceVersion']}",
                  "&resourceVersion=0",  # a legacy watch is defaulted to sendInitialEvents (1.32)
                  ""):
        status, _, raw = call(server, base + query)
        assert status == 200, (query, raw)
        events = watch_lines(raw)
        end = next(i for i, e in enumerate(events) if e["type"] == "BOOKMARK")
        names = {e["object"]["metadata"]["name"] for e in events[:end]}
        assert {"initial-a", "initial-b"} <= names, query
        assert {e["type"] for e in events[:end]} == {"ADDED"}
        bookmark = events[end]["object"]
        assert bookmark["kind"] == "ConfigMap" and bookmark["metadata"]["annotations"] == INITIAL_END
        assert int(bookmark["metadata"]["resourceVersion"]) >= int(last["metadata"]["resourceVersion"])


def test_send_initial_events_false_starts_from_now(server: ServerProcess) -> None:
    make_configmap(server, "not-replayed")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1"
                                  "&sendInitialEvents=false&resourceVersionMatch=NotOlderThan")
    assert status == 200
    assert watch_lines(raw) == []


def test_no_initial_events_bookmark_without_bookmarks_or_initial_events(server: ServerProcess) -> None:
    created = make_configmap(server, "plain-watch")
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1"
                                  "&resourceVersion=0")
    assert status == 200
    assert "BOOKMARK" not in {e["type"] for e in watch_lines(raw)}
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1"
                                  f"&allowWatchBookmarks=true&resourceVersion={created['metadata']['resourceVersion']}")
    events = watch_lines(raw)
    assert all("annotations" not in e["object"]["metadata"] for e in events if e["type"] == "BOOKMARK")


@pytest.mark.parametrize(("query", "message"), [
    ("watch=1&sendInitialEvents=true",
     "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ("watch=1&resourceVersionMatch=NotOlderThan",
     "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents "
     "is provided"),
    ("watch=1&sendInitialEvents=true&resourceVersionMatch=Exact",
     '[resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, '
     'resourceVersionMatch: Unsupported value: "Exact": supported values: "NotOlderThan"]'),
    ("sendInitialEvents=true", "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
    ("resourceVersionMatch=NotOlderThan",
     "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("resourceVersionMatch=Exact&resourceVersion=0",
     'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("resourceVersionMatch=Newest&resourceVersion=5",
     'resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""'),
])
def test_forbidden_list_option_combinations_are_422(server: ServerProcess, query: str, message: str) -> None:
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?{query}")
    assert status == 422, raw
    body = json.loads(raw)
    assert body["reason"] == "Invalid"
    assert body["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'
    assert body["details"]["kind"] == "ListOptions" and body["details"]["group"] == "meta.k8s.io"


def test_list_with_resource_version_match_is_served(server: ServerProcess) -> None:
    created = make_configmap(server, "matched")
    for match in ("NotOlderThan", "Exact"):
        status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?resourceVersionMatch="
                                      f"{match}&resourceVersion={created['metadata']['resourceVersion']}")
        assert status == 200, raw


# ------------------------------------------------------------------ integers, escaping


@pytest.mark.parametrize(("query", "message"), [
    ("limit=ten", 'strconv.ParseInt: parsing "ten": invalid syntax'),
    ("limit=1.5", 'strconv.ParseInt: parsing "1.5": invalid syntax'),
    ("watch=1&timeoutSeconds=0.1s", 'strconv.ParseInt: parsing "0.1s": invalid syntax'),
    ("watch=1&timeoutSeconds=9223372036854775808", 'strconv.ParseInt: parsing "9223372036854775808": '
                                                   "value out of range"),
])
def test_unparsable_integers_are_400s(server: ServerProcess, query: str, message: str) -> None:
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps?{query}")
    assert status == 400, raw
    body = json.loads(raw)
    assert (body["reason"], body["message"]) == ("BadRequest", message)


def test_signed_integers_parse_as_go_does(server: ServerProcess) -> None:
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?limit=%2B2")
    assert status == 200 and len(json.loads(raw)["items"]) <= 2


def test_status_escapes_html_characters_as_go_json_does(server: ServerProcess) -> None:
    status, _, raw = call(server, "/api/v1/namespaces/default/configmaps?fieldSelector=a%26b%3Ec%3Dd")
    assert status == 400
    assert raw == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
                   b'"\\"a\\u0026b\\u003ec\\" is not a known field selector: only \\"metadata.name\\", '
                   b'\\"metadata.namespace\\"","reason":"BadRequest","code":400}\n')


# ------------------------------------------------------------------ pretty


def is_indented(raw: bytes) -> bool:
    """json.MarshalIndent's shape: two-space indents, '": "' separators, no trailing newline."""
    return raw.startswith(b'{\n  "') and raw.endswith(b"}") and b'": ' in raw


def test_version_is_always_indented(server: ServerProcess) -> None:
    status, _, raw = call(server, "/version")
    assert status == 200 and is_indented(raw)
    assert raw == json.dumps(json.loads(raw), indent=2).encode()


@pytest.mark.parametrize(("query", "user_agent", "pretty"), [
    ("?pretty=true", "", True), ("?pretty=True", "", True), ("?pretty=1", "", True), ("?pretty=t", "", True),
    ("?pretty=yes", "", False),  # pretty alone is read with strconv.ParseBool: not a bool, not pretty
    ("", "", False), ("", "curl/8.5.0", True), ("", "Wget/1.21", True),
    ("", "Mozilla/5.0 (X11; Linux x86_64)", True), ("?pretty=false", "curl/8.5.0", False),
    ("", "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07", False),
])
def test_pretty_output(server: ServerProcess, query: str, user_agent: str, pretty: bool) -> None:
    if call(server, "/api/v1/namespaces/default/configmaps/pretty")[0] == 404:
        make_configmap(server, "pretty", {"html": "<a&b>"})
    for path, code in (("/api/v1/namespaces/default/configmaps/pretty", 200),
                       ("/api/v1/namespaces/default/configmaps/absent", 404), ("/api/v1", 200)):
        status, _, raw = call(server, path + query, user_agent=user_agent)
        assert status == code
        assert is_indented(raw) == pretty, (path, raw[:40])
        if pretty:
            assert raw == json.dumps(json.loads(raw), indent=2).encode().replace(
                b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
        else:
            assert raw.endswith(b"\n") and b"\n" not in raw[:-1]


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/strategic-merge-patch+json",
                                          "application/json-patch+json"])
@pytest.mark.parametrize("force", ["true", "false"])
def test_force_is_refused_on_non_apply_patches(server: ServerProcess, content_type: str, force: str) -> None:
    if call(server, "/api/v1/namespaces/default/configmaps/unforced")[0] == 404:
        make_configmap(server, "unforced")
    body: Any = [] if content_type == "application/json-patch+json" else {}
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps/unforced?force={force}", "PATCH",
                          body, content_type)
    assert status == 422, raw
    assert json.loads(raw)["message"] == ('PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: '
                                          "may not be specified for non-apply patch")


def test_root_lists_the_served_paths(server: ServerProcess) -> None:
    status, _, raw = call(server, "/")
    assert status == 200 and is_indented(raw)
    paths = json.loads(raw)["paths"]
    assert paths == sorted(paths)
    assert {"/api", "/api/v1", "/apis", "/apis/", "/apis/apps", "/apis/apps/v1", "/healthz", "/version"} <= set(paths)
    for path in paths:
        assert call(server, path)[0] == 200, path


# ------------------------------------------------------------------ request bodies


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_a_body_is_read_whole_however_it_arrives(server: ServerProcess, pause: float) -> None:
    # With no pause the body usually comes in the headers' segment (read from the buffer at once);
    # with one, the handler starts before the rest arrives (read as it comes). Both store it intact.
    name = f"split-body-{next(_SERIAL)}"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": {"k": "v" * 4000}}).encode()
    address = urlsplit(server.url)
    head = (f"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        if pause:
            connection.sendall(head + body[:100])
            time.sleep(pause)
            connection.sendall(body[100:])
        else:
            connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    status, _, raw = call(server, f"/api/v1/namespaces/default/configmaps/{name}")
    assert status == 200 and json.loads(raw)["data"] == {"k": "v" * 4000}
