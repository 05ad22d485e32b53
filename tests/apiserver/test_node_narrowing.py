"""1.32's narrowing of a node's reads (``AuthorizeNodeWithSelectors``, beta and on by default): a node
reads only its own Node, gets only pods bound to it and lists or watches pods only with its
``spec.nodeName`` field selector. The official client and the real kubectl as nodes, against a real
server on the secure defaults; the 403 texts are Kubernetes'."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.apiserver.test_node_authz import TOKENS, api, forbidden, kubectl, node_body, wait_until
from tests.conftest import KUBECTL, ServerProcess, start_server_process


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("narrowing")
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(f'{token},{user},uid-{token},"{groups}"\n'
                                  for token, (user, groups) in {**TOKENS, "reader-token": ("reader", "")}.items()))
    server = start_server_process(directory / "data", extra=("--token-auth-file", str(token_file),
                                                            "--disable", "scheduler,controller-manager"), secure=True)
    admin = api(server, "admin-token")
    admin.create_node(node_body("n1"))
    admin.create_node(node_body("n2"))
    admin.create_namespace({"metadata": {"name": "apps"}})
    admin.create_namespaced_service_account("apps", {"metadata": {"name": "default"}})  # no controllers here
    for name, node in (("p1", "n1"), ("p2", "n2")):
        admin.create_namespaced_pod("apps", {"metadata": {"name": name}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    yield server
    server.stop()


def run(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl(server.url, "n1-token", *args)


def test_a_node_reads_only_its_own_node(nodes: ServerProcess) -> None:
    n1 = api(nodes, "n1-token")
    assert n1.read_node("n1").metadata.name == "n1"
    assert forbidden(lambda: n1.read_node("n2")) == (
        'nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes" in API group "" at the '
        "cluster scope: node 'n1' cannot read 'n2', only its own Node object")
    assert forbidden(lambda: n1.list_node()) == (
        'nodes is forbidden: User "system:node:n1" cannot list resource "nodes" in API group "" at the '
        "cluster scope: node 'n1' cannot read all nodes, only its own Node object")
    # A list or watch pinned to its own name is a read of its own Node (kubelet's node informer).
    assert [n.metadata.name for n in n1.list_node(field_selector="metadata.name=n1").items] == ["n1"]
    assert "cannot read 'n2'" in forbidden(lambda: n1.list_node(field_selector="metadata.name=n2"))
    result = run(nodes, "get", "nodes", "--field-selector", "metadata.name=n1", "-o", "name")
    assert result.returncode == 0 and result.stdout.split() == ["node/n1"], result.stderr
    result = run(nodes, "get", "nodes")
    assert "node 'n1' cannot read all nodes, only its own Node object" in result.stderr
    # Writes are NodeRestriction's to refuse, not the authorizer's (its message, not RBAC's).
    assert forbidden(lambda: n1.patch_node("n2", {"metadata": {"labels": {"a": "b"}}})) == (
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"')


def test_a_node_lists_and_gets_only_its_own_pods(nodes: ServerProcess) -> None:
    n1 = api(nodes, "n1-token")
    own = n1.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1").items
    assert [p.metadata.name for p in own] == ["p1"]
    assert forbidden(lambda: n1.list_pod_for_all_namespaces()) == (
        'pods is forbidden: User "system:node:n1" cannot list resource "pods" in API group "" at the cluster '
        "scope: can only list/watch pods with spec.nodeName field selector")
    assert "spec.nodeName field selector" in forbidden(
        lambda: n1.list_namespaced_pod("apps", field_selector="spec.nodeName=n2"))
    wait_until(lambda: _gets(n1, "p1"))  # the graph learns of the pod through its watch
    assert forbidden(lambda: n1.read_namespaced_pod("p2", "apps")) == (
        'pods "p2" is forbidden: User "system:node:n1" cannot get resource "pods" in API group "" in the '
        "namespace \"apps\": no relationship found between node 'n1' and this object")
    # The real kubectl: its own pods by selector, a watch too; not everyone's.
    result = run(nodes, "get", "pods", "-A", "--field-selector", "spec.nodeName=n1", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [p["metadata"]["name"] for p in json.loads(result.stdout)["items"]] == ["p1"]
    result = run(nodes, "get", "pods", "-n", "apps")
    assert "can only list/watch pods with spec.nodeName field selector" in result.stderr
    watch = subprocess.Popen(
        [KUBECTL, "--server", nodes.url, "--insecure-skip-tls-verify", "--token", "n1-token", "get", "pods",
         "-n", "apps", "--field-selector", "spec.nodeName=n1", "-w", "-o", "name"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "KUBECONFIG": "/dev/null"})
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().strip() == "pod/p1"
    finally:
        watch.kill()
        watch.wait()


def _gets(api_: client.CoreV1Api, name: str) -> bool:
    try:
        return bool(api_.read_namespaced_pod(name, "apps"))
    except client.ApiException as error:
        assert error.status == 403
        return False


def test_a_list_pinned_by_metadata_name_is_checked_against_resource_names(nodes: ServerProcess) -> None:
    """RequestInfoFactory names the object a list or watch pins with ``metadata.name``, so RBAC's
    resourceNames apply to it (as kubelets watch single Secrets): RBAC, not only the Node authorizer."""
    nodes.kubectl("create", "configmap", "cm1", "-n", "apps")
    nodes.kubectl("create", "configmap", "cm2", "-n", "apps")
    nodes.kubectl("create", "role", "one-map", "-n", "apps", "--verb=get,list,watch", "--resource=configmaps",
                  "--resource-name=cm1")
    nodes.kubectl("create", "rolebinding", "one-map", "-n", "apps", "--role=one-map", "--user=reader")
    pinned = kubectl(nodes.url, "reader-token", "get", "configmaps", "-n", "apps", "--field-selector",
                     "metadata.name=cm1", "-o", "name")
    assert pinned.returncode == 0 and pinned.stdout.split() == ["configmap/cm1"], pinned.stderr
    other = kubectl(nodes.url, "reader-token", "get", "configmaps", "-n", "apps", "--field-selector",
                    "metadata.name=cm2")
    assert 'User "reader" cannot list resource "configmaps"' in other.stderr, other.stderr
    everything = kubectl(nodes.url, "reader-token", "get", "configmaps", "-n", "apps")
    assert 'User "reader" cannot list resource "configmaps"' in everything.stderr, everything.stderr


def test_a_node_reads_the_claim_volume_and_volume_secret_of_its_pods(nodes: ServerProcess) -> None:
    """The graph's pod → PVC → PV → secret path, kept as edges (volumeName, the PV's secret refs)."""
    admin, n1, n2 = (api(nodes, token) for token in ("admin-token", "n1-token", "n2-token"))
    admin.create_namespaced_secret("apps", {"metadata": {"name": "csi-creds"}, "data": {"k": "eA=="}})
    admin.create_persistent_volume({"metadata": {"name": "pv-a"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "claimRef": {"namespace": "apps",
                                                                                        "name": "data"},
        "csi": {"driver": "example.com/csi", "volumeHandle": "h1",
                "nodePublishSecretRef": {"namespace": "apps", "name": "csi-creds"}}}})
    admin.create_namespaced_persistent_volume_claim("apps", {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-a",
        "storageClassName": ""}})
    admin.create_namespaced_pod("apps", {"metadata": {"name": "with-claim"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})

    def reads_all(api_: client.CoreV1Api) -> bool:
        try:
            api_.read_namespaced_persistent_volume_claim("data", "apps")
            api_.read_persistent_volume("pv-a")
            api_.read_namespaced_secret("csi-creds", "apps")
            return True
        except client.ApiException as error:
            assert error.status == 403
            return False

    wait_until(lambda: reads_all(n1))
    assert not reads_all(n2)
    assert "no relationship found between node 'n2' and this object" in forbidden(
        lambda: n2.read_persistent_volume("pv-a"))
    # The pod gone, the path from n1 to the claim, its volume and the secret is gone with it.
    admin.delete_namespaced_pod("with-claim", "apps", grace_period_seconds=0)
    wait_until(lambda: not reads_all(n1), 20)
