"""rbac.authorization.k8s.io/v1 through the official ``kubernetes`` client and raw HTTP.

Validation as pkg/apis/rbac/validation (messages and field paths), the defaults, the immutable
roleRef, and the default policy kube-apiserver bootstraps: present with its label and annotation,
and reconciled again at every start (missing roles and rules come back, extra ones stay, and
``autoupdate: "false"`` opts out).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.conftest import ServerProcess, start_server_process

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


def rbac_api(server: ServerProcess) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def request(server: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def causes(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in status["details"]["causes"]]


def test_role_rules_are_validated(server: ServerProcess) -> None:
    code, status = request(server, "POST", f"/apis/{GROUP}/v1/namespaces/default/roles", {
        "apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": {"name": "bad"},
        "rules": [{"resources": ["pods"]},
                  {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
                  {"verbs": ["get"], "apiGroups": [""], "nonResourceURLs": ["/x"]}]})
    assert code == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Role" and status["details"]["group"] == GROUP
    assert causes(status) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups", "Required value: resource rules must supply at least one api group"),
        ("rules[1].nonResourceURLs",
         'Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs'),
        ("rules[2].nonResourceURLs",
         'Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs'),
        ("rules[2].nonResourceURLs",
         'Invalid value: []string{"/x"}: rules cannot apply to both regular resources and non-resource URLs'),
    ]
    assert status["message"].startswith('Role.rbac.authorization.k8s.io "bad" is invalid: [rules[0].verbs:')


def test_cluster_role_rules_and_aggregation_are_validated(server: ServerProcess) -> None:
    path = f"/apis/{GROUP}/v1/clusterroles"
    # Non-resource URLs are fine in a ClusterRole; resources still need an api group.
    code, _ = request(server, "POST", path, {"metadata": {"name": "urls"},
                                             "rules": [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]})
    assert code == 201
    code, status = request(server, "POST", path, {
        "metadata": {"name": "bad-aggregation"}, "aggregationRule": {"clusterRoleSelectors": []},
        "rules": [{"verbs": ["get"], "apiGroups": [""]}]})
    assert code == 422
    assert causes(status) == [
        ("rules[0].resources", "Required value: resource rules must supply at least one resource"),
        ("aggregationRule.clusterRoleSelectors",
         "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"),
    ]
    code, status = request(server, "POST", path, {
        "metadata": {"name": "bad-selector"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "In"}]}]}})
    assert code == 422
    assert causes(status) == [("aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values",
                               "Required value: must be specified when `operator` is 'In' or 'NotIn'")]
    code, status = request(server, "POST", path, {
        "metadata": {"name": "bad-labels"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"bad key": "ok"}},
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a b"]}]}]}})
    assert code == 422
    found = causes(status)
    assert [field for field, _ in found] == ["aggregationRule.clusterRoleSelectors[0].matchLabels",
                                             "aggregationRule.clusterRoleSelectors[1].matchExpressions[0].values[0]"]
    assert found[0][1].startswith('Invalid value: "bad key": name part must consist of alphanumeric characters')
    assert found[1][1].startswith('Invalid value: "a b": a valid label must be an empty string or consist')


def test_binding_subjects_and_role_ref_are_validated(server: ServerProcess) -> None:
    code, status = request(server, "POST", f"/apis/{GROUP}/v1/clusterrolebindings", {
        "metadata": {"name": "bad"},
        "roleRef": {"apiGroup": "rbac", "kind": "Role", "name": "x/y"},
        "subjects": [{"kind": "ServiceAccount", "name": "Web"},
                     {"kind": "ServiceAccount", "name": "ok", "namespace": "default", "apiGroup": "v1"},
                     {"kind": "User", "name": "alice", "apiGroup": "v1"},
                     {"kind": "Robot", "name": "r2"},
                     {"kind": "Group"}]})
    assert code == 422
    assert causes(status) == [
        ("roleRef.apiGroup", 'Unsupported value: "rbac": supported values: "rbac.authorization.k8s.io"'),
        ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("roleRef.name", "Invalid value: \"x/y\": may not contain '/'"),
        ("subjects[0].name", 'Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case '
         "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
         "'example.com', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        ("subjects[0].namespace", "Required value"),
        ("subjects[1].apiGroup", 'Unsupported value: "v1": supported values: ""'),
        ("subjects[2].apiGroup", 'Unsupported value: "v1": supported values: "rbac.authorization.k8s.io"'),
        ("subjects[3].kind", 'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
        ("subjects[4].name", "Required value"),
    ]
    # In a RoleBinding a ServiceAccount may leave its namespace out, and Role is a valid roleRef kind.
    code, status = request(server, "POST", f"/apis/{GROUP}/v1/namespaces/default/rolebindings", {
        "metadata": {"name": "sa-here"}, "roleRef": {"kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "web"}]})
    assert code == 201, status
    code, status = request(server, "POST", f"/apis/{GROUP}/v1/namespaces/default/rolebindings", {
        "metadata": {"name": "no-ref"}, "roleRef": {"kind": "Secret"}})
    assert code == 422
    assert causes(status) == [
        ("roleRef.kind", 'Unsupported value: "Secret": supported values: "Role", "ClusterRole"'),
        ("roleRef.name", "Required value"),
    ]


def test_names_are_path_segments(server: ServerProcess) -> None:
    api = rbac_api(server)
    created = api.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name="system:Custom:Role")))
    assert created.metadata.name == "system:Custom:Role"
    for name, message in (("a%b", "may not contain '%'"), ("..", "may not be '..'")):
        code, status = request(server, "POST", f"/apis/{GROUP}/v1/clusterroles", {"metadata": {"name": name}})
        assert code == 422
        assert causes(status) == [("metadata.name", f'Invalid value: "{name}": {message}')]


def test_defaults_and_immutable_role_ref(server: ServerProcess) -> None:
    api = rbac_api(server)
    binding = api.create_namespaced_role_binding("default", client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="readers"),
        role_ref=client.V1RoleRef(api_group="", kind="ClusterRole", name="view"),
        subjects=[client.RbacV1Subject(kind="User", name="alice"),
                  client.RbacV1Subject(kind="Group", name="devs"),
                  client.RbacV1Subject(kind="ServiceAccount", name="web", namespace="default")]))
    assert binding.role_ref.api_group == GROUP
    # A ServiceAccount's group is the core one, "": Subject.APIGroup is omitempty, so it is absent.
    assert [s.api_group for s in binding.subjects] == [GROUP, GROUP, None]

    binding.subjects.append(client.RbacV1Subject(kind="User", name="bob", api_group=GROUP))
    updated = api.replace_namespaced_role_binding("readers", "default", binding)
    assert [s.name for s in updated.subjects] == ["alice", "devs", "web", "bob"]

    updated.role_ref.name = "edit"
    with pytest.raises(client.ApiException) as error:
        api.replace_namespaced_role_binding("readers", "default", updated)
    assert error.value.status == 422
    body = json.loads(error.value.body)
    assert body["message"] == (
        'RoleBinding.rbac.authorization.k8s.io "readers" is invalid: roleRef: Invalid value: '
        'rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef')
    with pytest.raises(client.ApiException) as error:
        api.patch_cluster_role_binding("cluster-admin", {"roleRef": {"name": "view"}})
    assert error.value.status == 422 and "cannot change roleRef" in error.value.body


def test_put_creates_and_field_selectors(server: ServerProcess) -> None:
    # AllowCreateOnUpdate is true for every RBAC kind.
    code, created = request(server, "PUT", f"/apis/{GROUP}/v1/namespaces/default/roles/put-made", {
        "apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": {"name": "put-made"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
    assert code == 201 and created["metadata"]["uid"]
    code, listed = request(server, "GET", f"/apis/{GROUP}/v1/clusterroles?fieldSelector=metadata.name%3Dview")
    assert code == 200 and [r["metadata"]["name"] for r in listed["items"]] == ["view"]


# -- the bootstrap policy ----------------------------------------------------------------------

def test_bootstrap_policy_is_installed(server: ServerProcess) -> None:
    api = rbac_api(server)
    roles = {r.metadata.name: r for r in api.list_cluster_role().items}
    for name in ("cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
                 "system:public-info-viewer", "system:monitoring", "system:node", "system:node-proxier",
                 "system:kube-scheduler", "system:kube-controller-manager", "system:auth-delegator",
                 "system:aggregate-to-view", "system:controller:deployment-controller",
                 "system:controller:clusterrole-aggregation-controller"):
        role = roles[name]
        assert role.metadata.labels["kubernetes.io/bootstrapping"] == "rbac-defaults", name
        assert role.metadata.annotations[AUTOUPDATE] == "true", name
    admin_rules = [r.to_dict() for r in roles["cluster-admin"].rules]
    assert {"verbs": ["*"], "api_groups": ["*"], "resources": ["*"], "resource_names": None,
            "non_resource_urls": None} in admin_rules
    assert roles["edit"].metadata.labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert roles["view"].aggregation_rule.cluster_role_selectors[0].match_labels == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true"}

    bindings = {b.metadata.name: b for b in api.list_cluster_role_binding().items}
    assert [(s.kind, s.name) for s in bindings["cluster-admin"].subjects] == [("Group", "system:masters")]
    assert [(s.kind, s.name) for s in bindings["system:public-info-viewer"].subjects] == [
        ("Group", "system:authenticated"), ("Group", "system:unauthenticated")]
    controller = bindings["system:controller:job-controller"]
    assert controller.role_ref.name == "system:controller:job-controller"
    assert [(s.kind, s.namespace, s.name) for s in controller.subjects] == [
        ("ServiceAccount", "kube-system", "job-controller")]

    system_roles = {r.metadata.name for r in api.list_namespaced_role("kube-system").items}
    assert {"extension-apiserver-authentication-reader", "system::leader-locking-kube-scheduler",
            "system:controller:bootstrap-signer"} <= system_roles
    public = api.read_namespaced_role_binding("system:controller:bootstrap-signer", "kube-public")
    assert public.role_ref.kind == "Role"


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A server whose data directory outlives it: the list holds the running process."""
    procs = [start_server_process(tmp_path, extra=("--disable", "scheduler,controller-manager"))]
    yield procs
    procs[-1].stop()


def test_reconcile_restores_defaults_at_restart(restartable: list[ServerProcess]) -> None:
    server = restartable[0]
    api = rbac_api(server)
    # A default rule removed, a default role and binding deleted, a subject dropped, extra rules added.
    basic = api.read_cluster_role("system:basic-user")
    expected_basic = [r.to_dict() for r in basic.rules]
    basic.rules = basic.rules[:1]
    basic.rules.append(client.V1PolicyRule(verbs=["get"], api_groups=["example.com"], resources=["things"]))
    api.replace_cluster_role("system:basic-user", basic)
    api.delete_cluster_role("system:discovery")
    api.delete_cluster_role_binding("system:kube-dns")
    viewer = api.read_cluster_role_binding("system:public-info-viewer")
    viewer.subjects = viewer.subjects[:1]
    api.replace_cluster_role_binding("system:public-info-viewer", viewer)
    # Opted out: its owner's changes stay.
    heapster = api.read_cluster_role("system:heapster")
    heapster.metadata.annotations[AUTOUPDATE] = "false"
    heapster.rules = [client.V1PolicyRule(verbs=["get"], api_groups=[""], resources=["pods"])]
    api.replace_cluster_role("system:heapster", heapster)
    # A binding pointed at another role is recreated with the policy's roleRef.
    api.delete_cluster_role_binding("system:node-proxier")
    api.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name="system:node-proxier"),
        role_ref=client.V1RoleRef(api_group=GROUP, kind="ClusterRole", name="view"),
        subjects=[client.RbacV1Subject(kind="User", name="someone", api_group=GROUP)]))
    api.delete_namespaced_role("extension-apiserver-authentication-reader", "kube-system")

    server.stop()
    restartable.append(start_server_process(server.data_dir, extra=("--disable", "scheduler,controller-manager")))
    api = rbac_api(restartable[-1])

    basic = api.read_cluster_role("system:basic-user")
    rules = [r.to_dict() for r in basic.rules]
    assert {"verbs": ["get"], "api_groups": ["example.com"], "resources": ["things"], "resource_names": None,
            "non_resource_urls": None} in rules  # never removed
    # The missing rule comes back broken down into one rule per verb/group/resource, as Kubernetes adds it.
    for rule in expected_basic:
        for resource in rule["resources"]:
            assert any(resource in r["resources"] and rule["api_groups"][0] in r["api_groups"]
                       for r in rules), resource
    discovery = api.read_cluster_role("system:discovery")
    assert discovery.metadata.labels["kubernetes.io/bootstrapping"] == "rbac-defaults"
    assert "/version" in discovery.rules[0].non_resource_urls
    dns = api.read_cluster_role_binding("system:kube-dns")
    assert [(s.kind, s.namespace, s.name) for s in dns.subjects] == [("ServiceAccount", "kube-system", "kube-dns")]
    viewer = api.read_cluster_role_binding("system:public-info-viewer")
    assert [s.name for s in viewer.subjects] == ["system:authenticated", "system:unauthenticated"]
    heapster = api.read_cluster_role("system:heapster")
    assert [r.resources for r in heapster.rules] == [["pods"]]
    proxier = api.read_cluster_role_binding("system:node-proxier")
    assert proxier.role_ref.name == "system:node-proxier"
    assert [s.name for s in proxier.subjects] == ["system:kube-proxy"]
    api.read_namespaced_role("extension-apiserver-authentication-reader", "kube-system")
