"""SubjectAccessReview with field and label selectors (1.32's AuthorizeWithSelectors, on by default),
against a real server on the defaults (HTTPS, Node,RBAC), with the official client and the real
kubectl: upstream's validation and its text, and the selector reaching the Node authorizer, which lets
a node list and watch only the pods whose ``spec.nodeName`` is its own."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.apiserver.authcluster import AuthCluster, auth_cluster

NODE = {"user": "system:node:node1", "groups": ["system:nodes", "system:authenticated"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with auth_cluster(tmp_path_factory.mktemp("sar"), "--disable", "scheduler,controller-manager") as running:
        yield running


def review(cluster: AuthCluster, attributes: dict[str, Any], subject: dict[str, Any] | None = None) -> Any:
    api = client.AuthorizationV1Api(cluster.api("admin-token"))
    body = {"spec": {**(subject or NODE), "resourceAttributes": attributes}}
    return api.create_subject_access_review(body)


def pods(verb: str, **selectors: Any) -> dict[str, Any]:
    return {"verb": verb, "resource": "pods", "version": "v1", **selectors}


@pytest.mark.parametrize("verb", ["list", "watch"])
def test_node_lists_its_own_pods_by_selector(cluster: AuthCluster, verb: str) -> None:
    assert review(cluster, pods(verb, fieldSelector={"rawSelector": "spec.nodeName=node1"})).status.allowed
    requirement = {"key": "spec.nodeName", "operator": "In", "values": ["node1"]}
    assert review(cluster, pods(verb, fieldSelector={"requirements": [requirement]})).status.allowed


def test_node_is_refused_without_or_with_another_selector(cluster: AuthCluster) -> None:
    unlimited = review(cluster, pods("list"))
    assert not unlimited.status.allowed
    assert "can only list/watch pods with spec.nodeName field selector" in unlimited.status.reason
    assert not review(cluster, pods("list", fieldSelector={"rawSelector": "spec.nodeName=node2"})).status.allowed
    # Requirements that do not translate (Exists; In with two values) leave the request unlimited.
    for requirement in ({"key": "spec.nodeName", "operator": "Exists"},
                        {"key": "spec.nodeName", "operator": "In", "values": ["node1", "node2"]}):
        assert not review(cluster, pods("list", fieldSelector={"requirements": [requirement]})).status.allowed
    # A label selector narrows nothing the Node authorizer looks at.
    assert not review(cluster, pods("list", labelSelector={"rawSelector": "app=web"})).status.allowed


def invalid(cluster: AuthCluster, attributes: dict[str, Any]) -> str:
    """Posted as JSON by hand: the official client checks required fields before sending."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {**NODE, "resourceAttributes": attributes}}
    request = urllib.request.Request(cluster.server.url + "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                     json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": "Bearer admin-token",
                                              "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=cluster.context, timeout=10)
    assert refused.value.code == 422
    status = json.loads(refused.value.read())
    assert status["reason"] == "Invalid"
    return str(status["message"])


def test_validation_messages(cluster: AuthCluster) -> None:
    prefix = 'SubjectAccessReview.authorization.k8s.io "" is invalid: '
    both = {"rawSelector": "a=b", "requirements": [{"key": "a", "operator": "In", "values": ["b"]}]}
    assert invalid(cluster, pods("list", fieldSelector=both)) == (
        prefix + 'spec.resourceAttributes.fieldSelector.rawSelector: Invalid value: "a=b": may not specified at '
        "the same time as requirements")
    assert invalid(cluster, pods("list", labelSelector={})) == (
        prefix + "spec.resourceAttributes.labelSelector.requirements: Required value: when "
        "spec.resourceAttributes.labelSelector is specified, requirements or rawSelector is required")
    assert invalid(cluster, pods("list", fieldSelector={"requirements": [{"operator": "In"}]})) == (
        prefix + "[spec.resourceAttributes.fieldSelector.requirements[0].key: Required value: must be specified, "
        "spec.resourceAttributes.fieldSelector.requirements[0].values: Required value: must be specified when "
        "`operator` is 'In' or 'NotIn']")
    exists = {"requirements": [{"key": "app", "operator": "Exists", "values": ["x"]}]}
    assert invalid(cluster, pods("list", labelSelector=exists)) == (
        prefix + "spec.resourceAttributes.labelSelector.requirements[0].values: Forbidden: may not be specified "
        "when `operator` is 'Exists' or 'DoesNotExist'")
    # Unknown operators are allowed (a newer client's), and mean no selector.
    future = {"requirements": [{"key": "app", "operator": "Near", "values": ["x"]}]}
    assert not review(cluster, pods("list", labelSelector=future)).status.allowed


def test_kubectl_creates_a_review_with_a_selector(cluster: AuthCluster, tmp_path: Path) -> None:
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {**NODE, "resourceAttributes": pods("watch", fieldSelector={"rawSelector": "spec.nodeName=node1"})}}
    result = cluster.kubectl("admin-token", "create", "-f", "-", "-o", "json", input=json.dumps(body))
    answer = json.loads(result.stdout)
    assert answer["status"]["allowed"] is True
    assert answer["spec"]["resourceAttributes"]["fieldSelector"] == {"rawSelector": "spec.nodeName=node1"}
