"""The RBAC authorizer with the real kubectl and the official client: Kubernetes' 403 texts, the
review APIs answering from RBAC, privilege escalation through roles and bindings refused."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.apiserver.authcluster import AuthCluster, auth_cluster

ADMIN, ALICE, BOB = "admin-token", "alice-token", "bob-token"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with auth_cluster(tmp_path_factory.mktemp("rbac")) as running:
        running.kubectl(ADMIN, "create", "namespace", "team")
        running.kubectl(ADMIN, "create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice",
                        "-n", "team")
        _wait_for_view_rules(running)
        yield running


def _wait_for_view_rules(cluster: AuthCluster) -> None:
    """``view`` gets its rules from the ClusterRole aggregation controller (a component, which
    reaches the server with its loopback token)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rules = cluster.kubectl(ADMIN, "get", "clusterrole", "view", "-o", "jsonpath={.rules}").stdout
        if '"pods"' in rules:
            return
        time.sleep(0.3)
    raise AssertionError("the view ClusterRole never got its aggregated rules")


def _get(cluster: AuthCluster, path: str, token: str | None = None) -> tuple[int, dict[str, object] | str]:
    request = urllib.request.Request(cluster.server.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=cluster.context) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def test_view_can_read_pods_but_not_delete_them(cluster: AuthCluster) -> None:
    cluster.kubectl(ADMIN, "run", "web", "--image=busybox", "-n", "team")
    listed = cluster.kubectl(ALICE, "get", "pods", "-n", "team", "-o", "name").stdout
    assert listed.strip() == "pod/web"
    denied = cluster.kubectl(ALICE, "delete", "pod", "web", "-n", "team", check=False)
    assert denied.returncode != 0
    assert denied.stderr.strip() == ('Error from server (Forbidden): pods "web" is forbidden: User "alice" cannot '
                                     'delete resource "pods" in API group "" in the namespace "team"')
    # Outside the namespace of her binding, not even a read.
    elsewhere = cluster.kubectl(ALICE, "get", "pods", "-n", "default", check=False)
    assert ('pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace '
            '"default"') in elsewhere.stderr
    nodes = cluster.kubectl(ALICE, "get", "nodes", check=False)
    assert ('nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster '
            'scope') in nodes.stderr


def test_can_i_answers_from_rbac(cluster: AuthCluster) -> None:
    assert cluster.kubectl(ALICE, "auth", "can-i", "get", "pods", "-n", "team").stdout.strip() == "yes"
    no = cluster.kubectl(ALICE, "auth", "can-i", "delete", "pods", "-n", "team", check=False)
    assert no.stdout.strip() == "no" and no.returncode == 1
    assert cluster.kubectl(ALICE, "auth", "can-i", "get", "/healthz").stdout.strip() == "yes"
    listed = cluster.kubectl(ALICE, "auth", "can-i", "--list", "-n", "team").stdout.splitlines()
    # Resources, Non-Resource URLs, Resource Names, Verbs: the verbs are the last bracketed column.
    rows = {line.split()[0]: "[" + line.rsplit("[", 1)[1].strip() for line in listed[1:] if line.strip()}
    assert rows["pods"] == "[get list watch]"
    assert rows["selfsubjectaccessreviews.authorization.k8s.io"] == "[create]"
    assert "secrets" not in rows  # view does not read secrets
    # The whole cluster-admin for a member of system:masters.
    admin = cluster.kubectl(ADMIN, "auth", "can-i", "--list").stdout.splitlines()
    assert admin[1].split() == ["*.*", "[]", "[]", "[*]"]


def test_subject_access_review_names_the_granting_binding(cluster: AuthCluster) -> None:
    api = client.AuthorizationV1Api(cluster.api(ADMIN))
    review = api.create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["devs"],
                 "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"}}})
    assert review.status.allowed is True
    assert review.status.reason == ('RBAC: allowed by RoleBinding "alice-view/team" of ClusterRole "view" to '
                                    'User "alice"')
    denied = api.create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {"namespace": "team", "verb": "create",
                                                          "resource": "pods"}}})
    assert denied.status.allowed is False
    # A user may not ask about others without the right to.
    with pytest.raises(client.ApiException) as refused:
        client.AuthorizationV1Api(cluster.api(BOB)).create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods"}}})
    assert refused.value.status == 403


def test_a_binding_to_a_missing_role_says_so(cluster: AuthCluster) -> None:
    cluster.kubectl(ADMIN, "create", "rolebinding", "bob-ghost", "--role=ghost", "--user=bob", "-n", "team")
    denied = cluster.kubectl(BOB, "get", "configmaps", "-n", "team", check=False)
    assert denied.stderr.strip() == (
        'Error from server (Forbidden): configmaps is forbidden: User "bob" cannot list resource "configmaps" '
        'in API group "" in the namespace "team": RBAC: role.rbac.authorization.k8s.io "ghost" not found')
    rules = client.AuthorizationV1Api(cluster.api(BOB)).create_self_subject_rules_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "team"}})
    assert (rules.status.incomplete, rules.status.evaluation_error) == (
        True, 'role.rbac.authorization.k8s.io "ghost" not found')
    local = client.AuthorizationV1Api(cluster.api(ADMIN)).create_namespaced_local_subject_access_review("team", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"user": "bob", "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "configmaps"}}})
    assert (local.status.allowed, local.status.reason) == (False, 'RBAC: role.rbac.authorization.k8s.io "ghost" not '
                                                                  'found')
    # Once the role exists the same binding grants it (the decision cache follows RBAC writes).
    cluster.kubectl(ADMIN, "create", "role", "ghost", "--verb=list", "--resource=configmaps", "-n", "team")
    assert cluster.kubectl(BOB, "get", "configmaps", "-n", "team", "-o", "name").returncode == 0


def test_no_privilege_escalation_through_roles_or_bindings(cluster: AuthCluster) -> None:
    cluster.kubectl(ADMIN, "create", "role", "rbac-writer", "--verb=create,get,update",
                    "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
                    "-n", "team")
    cluster.kubectl(ADMIN, "create", "rolebinding", "alice-rbac", "--role=rbac-writer", "--user=alice",
                    "-n", "team")
    role = cluster.kubectl(ALICE, "create", "role", "deleter", "--verb=delete", "--resource=pods", "-n", "team",
                           check=False)
    assert role.stderr.strip() == (
        'Error from server (Forbidden): roles.rbac.authorization.k8s.io "deleter" is forbidden: user "alice" '
        '(groups=["devs" "qa" "system:authenticated"]) is attempting to grant RBAC permissions not currently '
        'held:\n{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    binding = cluster.kubectl(ALICE, "create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice",
                              "-n", "team", check=False)
    assert binding.returncode != 0
    assert ('rolebindings.rbac.authorization.k8s.io "alice-edit" is forbidden: user "alice" (groups=["devs" "qa" '
            '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["configmaps"], Verbs:["create" "delete" "deletecollection" "patch" '
            '"update"]}') in binding.stderr
    # What she holds she may pass on: a role within her rights, a binding to view.
    cluster.kubectl(ALICE, "create", "role", "reader", "--verb=get", "--resource=pods", "-n", "team")
    cluster.kubectl(ALICE, "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob", "-n", "team")
    assert cluster.kubectl(BOB, "auth", "can-i", "list", "pods", "-n", "team").stdout.strip() == "yes"
    # The bind verb on a role lets her bind it without holding it.
    cluster.kubectl(ADMIN, "create", "role", "binder", "--verb=bind", "--resource=clusterroles",
                    "--resource-name=edit", "-n", "team")
    cluster.kubectl(ADMIN, "create", "rolebinding", "alice-binder", "--role=binder", "--user=alice", "-n", "team")
    cluster.kubectl(ALICE, "create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob", "-n", "team")
    # And the escalate verb lets her write roles beyond her rights.
    cluster.kubectl(ADMIN, "create", "role", "escalator", "--verb=escalate", "--resource=roles", "-n", "team")
    cluster.kubectl(ADMIN, "create", "rolebinding", "alice-escalator", "--role=escalator", "--user=alice", "-n", "team")
    cluster.kubectl(ALICE, "create", "role", "deleter", "--verb=delete", "--resource=pods", "-n", "team")


def test_every_route_passes_the_chain(cluster: AuthCluster) -> None:
    # system:public-info-viewer: health and version for everyone.
    assert _get(cluster, "/healthz") == (200, "ok")
    assert _get(cluster, "/version")[0] == 200
    # Discovery and OpenAPI only for the authenticated (system:discovery).
    assert _get(cluster, "/api") == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'forbidden: User "system:anonymous" cannot get path "/api"', "reason": "Forbidden",
        "details": {}, "code": 403})
    assert _get(cluster, "/openapi/v3")[0] == 403
    assert _get(cluster, "/api", BOB)[0] == 200
    assert _get(cluster, "/openapi/v3", BOB)[0] == 200
    status, body = _get(cluster, "/api/v1/namespaces/team/pods")
    assert status == 403 and isinstance(body, dict)
    assert body["message"] == ('pods is forbidden: User "system:anonymous" cannot list resource "pods" in API '
                               'group "" in the namespace "team"')
    assert body["details"] == {"kind": "pods"}


def test_modes_in_order_and_no_anonymous(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``--authorization-mode=AlwaysDeny,RBAC``: AlwaysDeny has no opinion, RBAC decides, and a denial
    carries AlwaysDeny's reason; ``--no-anonymous-auth``: no credentials is a 401."""
    with auth_cluster(tmp_path_factory.mktemp("modes"), "--authorization-mode", "AlwaysDeny,RBAC",
                      "--no-anonymous-auth") as other:
        assert _get(other, "/healthz") == (401, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
            "reason": "Unauthorized", "code": 401})
        assert _get(other, "/healthz", BOB) == (200, "ok")
        status, body = _get(other, "/api/v1/namespaces/default/secrets", BOB)
        assert status == 403 and isinstance(body, dict)
        assert body["message"] == ('secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" '
                                   'in the namespace "default": Everything is forbidden.')
        assert _get(other, "/api/v1/namespaces/default/secrets", ADMIN)[0] == 200


def test_rule_matching_as_rule_allows(cluster: AuthCluster) -> None:
    """``RuleAllows`` case by case, asked through SubjectAccessReview: ``*/subresource``, resource
    names, groups, non-resource URLs with a trailing ``*``."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "carol"},
            "rules": [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get", "update"]},
                      {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["*"]},
                      {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["patch"]},
                      {"nonResourceURLs": ["/logs/*", "/metrics"], "verbs": ["get"]}]}
    cluster.kubectl(ADMIN, "create", "-f", "-", "--validate=false", input=json.dumps(role))
    cluster.kubectl(ADMIN, "create", "clusterrolebinding", "carol", "--clusterrole=carol", "--user=carol")
    api = client.AuthorizationV1Api(cluster.api(ADMIN))

    def allowed(**attributes: str) -> bool:
        key = "nonResourceAttributes" if "path" in attributes else "resourceAttributes"
        review = api.create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "carol", key: attributes}})
        return bool(review.status.allowed)

    assert allowed(verb="update", group="apps", resource="deployments", subresource="scale", namespace="x")
    assert allowed(verb="get", group="", resource="replicationcontrollers", subresource="scale")
    assert not allowed(verb="get", group="apps", resource="deployments", namespace="x")  # scale is not the object
    assert not allowed(verb="delete", group="apps", resource="deployments", subresource="scale", namespace="x")
    assert allowed(verb="delete", group="", resource="configmaps", name="settings", namespace="x")
    assert not allowed(verb="delete", group="", resource="configmaps", name="other", namespace="x")
    assert not allowed(verb="list", group="", resource="configmaps", namespace="x")  # a list names nothing
    assert allowed(verb="patch", group="apps", resource="deployments", subresource="status", namespace="x")
    assert not allowed(verb="patch", group="extensions", resource="deployments", subresource="status", namespace="x")
    assert allowed(verb="get", path="/logs/kube-apiserver.log")
    assert allowed(verb="get", path="/logs/")
    assert not allowed(verb="get", path="/logs")
    assert allowed(verb="get", path="/metrics")
    assert not allowed(verb="post", path="/metrics")
