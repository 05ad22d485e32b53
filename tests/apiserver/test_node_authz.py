"""The Node authorizer and NodeRestriction admission (``--authorization-mode=Node,RBAC``, the default,
over the default HTTPS), with kubelet credentials from ``--token-auth-file``: the official client and the
real kubectl as nodes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.agent.conftest import AgentProcess, wait_for
from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process

TOKENS = {
    "admin-token": ("root", "system:masters"),
    "n1-token": ("system:node:n1", "system:nodes"),
    "n2-token": ("system:node:n2", "system:nodes"),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    directory = tmp_path_factory.mktemp("nodeauthz")
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(f'{token},{user},uid-{token},"{groups}"\n'
                                  for token, (user, groups) in TOKENS.items()))
    server = start_server_process(directory / "data", extra=("--token-auth-file", str(token_file)), secure=True)
    try:
        yield server, server.url
    finally:
        server.stop()


def api(server: ServerProcess, token: str) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = server.url
    configuration.ssl_ca_cert = str(server.data_dir / "pki" / "ca.crt")
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(configuration))


def coordination(server: ServerProcess, token: str) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api(server, token).api_client)


def forbidden(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value.body
    return str(json.loads(caught.value.body)["message"])


def kubectl(https_url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real kubectl over the server's own HTTPS (the CA is not checked here: test_tls.py does)."""
    env = {**os.environ, "KUBECONFIG": "/dev/null"}
    return subprocess.run([KUBECTL, "--server", https_url, "--insecure-skip-tls-verify", "--token", token, *args],
                          capture_output=True, text=True, env=env, timeout=60)


def node_body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def pod_body(name: str, node: str, secret: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                           "env": [{"name": "S", "valueFrom": {"secretKeyRef": {
                                               "name": secret, "key": "k"}}}]}]}}


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_node_writes_only_its_own_node_and_lease(cluster: tuple[ServerProcess, str]) -> None:
    server, https_url = cluster
    admin, n1 = api(server, "admin-token"), api(server, "n1-token")
    n1.create_node(node_body("n1", {"kubernetes.io/hostname": "n1"}))
    admin.create_node(node_body("n2"))
    n1.patch_node("n1", {"metadata": {"labels": {"example.com/team": "a", "node.kubernetes.io/instance-type": "x"}}})
    assert forbidden(lambda: n1.patch_node("n2", {"metadata": {"labels": {"a": "b"}}})) == (
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"')
    # The real kubectl reads the Node before it labels it, which 1.32's Node authorizer already
    # refuses for another node's (test_node_narrowing.py has more).
    result = kubectl(https_url, "n1-token", "label", "node", "n2", "a=b")
    assert result.returncode != 0
    assert "node 'n1' cannot read 'n2', only its own Node object" in result.stderr
    message = forbidden(lambda: n1.patch_node("n1", {"metadata": {"labels": {
        "node-restriction.kubernetes.io/trusted": "yes", "kubernetes.io/role": "master"}}}))
    assert message == ('nodes "n1" is forbidden: is not allowed to modify labels: '
                       "kubernetes.io/role, node-restriction.kubernetes.io/trusted")
    assert forbidden(lambda: n1.create_node(node_body("n1", {"node-role.kubernetes.io/x": ""}))) == (
        'nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: node-role.kubernetes.io/x')
    assert forbidden(lambda: n1.create_node(node_body("n3"))) == (
        'nodes "n3" is forbidden: node "n1" is not allowed to modify node "n3"')
    # Leases: its own, in kube-node-lease, only.
    leases = coordination(server, "n1-token")
    lease = {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}
    leases.create_namespaced_lease("kube-node-lease", lease)
    leases.patch_namespaced_lease("n1", "kube-node-lease", {"spec": {"leaseDurationSeconds": 41}})
    coordination(server, "admin-token").create_namespaced_lease(
        "kube-node-lease", {"metadata": {"name": "n2"}, "spec": {"holderIdentity": "n2"}})
    assert forbidden(lambda: leases.patch_namespaced_lease("n2", "kube-node-lease", {"spec": {}})) == (
        'leases.coordination.k8s.io "n2" is forbidden: User "system:node:n1" cannot patch resource "leases" '
        'in API group "coordination.k8s.io" in the namespace "kube-node-lease": '
        "can only access node lease with the same name as the requesting node")
    assert "is forbidden" in forbidden(lambda: leases.create_namespaced_lease(
        "kube-node-lease", {"metadata": {"name": "n2x"}, "spec": {}}))


def test_node_reads_only_secrets_its_pods_reference(cluster: tuple[ServerProcess, str]) -> None:
    server, https_url = cluster
    admin, n1 = api(server, "admin-token"), api(server, "n1-token")
    for name in ("s1", "s2", "unused"):
        admin.create_namespaced_secret("default", {"metadata": {"name": name}, "data": {"k": "eA=="}})
    wait_until(lambda: bool(admin.list_namespaced_service_account("default").items))
    admin.create_namespaced_pod("default", pod_body("p1", "n1", "s1"))
    admin.create_namespaced_pod("default", pod_body("p2", "n2", "s2"))
    wait_until(lambda: _can_read(n1, "s1"))
    assert n1.read_namespaced_secret("s1", "default").data["k"]
    assert forbidden(lambda: n1.read_namespaced_secret("s2", "default")) == (
        'secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" '
        "in the namespace \"default\": no relationship found between node 'n1' and this object")
    result = kubectl(https_url, "n1-token", "get", "secret", "unused")
    assert "no relationship found between node 'n1' and this object" in result.stderr
    assert "is forbidden" in forbidden(lambda: n1.list_namespaced_secret("default"))
    # Pods: its own only, listed by spec.nodeName (1.32's narrowing; test_node_narrowing.py has more).
    own = n1.list_namespaced_pod("default", field_selector="spec.nodeName=n1").items
    assert {p.metadata.name for p in own} == {"p1"}
    # Tokens: only for the service accounts of its pods.
    admin.create_namespaced_service_account("default", {"metadata": {"name": "other"}})
    request = {"spec": {"audiences": ["api"]}}
    assert n1.create_namespaced_service_account_token("default", "default", request).status.token
    assert forbidden(lambda: n1.create_namespaced_service_account_token("other", "default", request)) == (
        'serviceaccounts "other" is forbidden: User "system:node:n1" cannot create resource "serviceaccounts/token" '
        "in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object")
    # The graph follows the pods: a new pod on n1 referencing s2 grants it, its deletion takes it back.
    admin.create_namespaced_pod("default", pod_body("p3", "n1", "s2"))
    wait_until(lambda: _can_read(n1, "s2"))
    admin.delete_namespaced_pod("p3", "default", grace_period_seconds=0)
    wait_until(lambda: not _can_read(n1, "s2"), 20)


def _can_read(api_: client.CoreV1Api, secret: str) -> bool:
    try:
        api_.read_namespaced_secret(secret, "default")
        return True
    except ApiException as error:
        assert error.status == 403
        return False


def test_node_updates_only_its_pods_status(cluster: tuple[ServerProcess, str]) -> None:
    server, _ = cluster
    admin, n1 = api(server, "admin-token"), api(server, "n1-token")
    wait_until(lambda: bool(admin.list_namespaced_service_account("default").items))
    admin.create_namespaced_pod("default", pod_body("q1", "n1", "x"))
    admin.create_namespaced_pod("default", pod_body("q2", "n2", "x"))
    n1.patch_namespaced_pod_status("q1", "default", {"status": {"message": "from n1"}})
    assert admin.read_namespaced_pod("q1", "default").status.message == "from n1"
    assert forbidden(lambda: n1.patch_namespaced_pod_status("q2", "default", {"status": {"message": "x"}})) == (
        'pods "q2" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself')
    # Not a mirror pod: refused.
    assert forbidden(lambda: n1.create_namespaced_pod("default", {
        "metadata": {"name": "m"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})) == (
        'pods "m" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
        'node "n1" can only create mirror pods')
    mirror = {"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}},
              "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}
    assert forbidden(lambda: n1.create_namespaced_pod("default", mirror)) == (
        'pods "m" is forbidden: node "n1" can only create pods with an owner reference set to itself')
    assert forbidden(lambda: n1.patch_namespaced_pod_status("q1", "default", {"metadata": {"labels": {"a": "b"}}})) == (
        'pods "q1" is forbidden: node "n1" cannot update labels through pod status')
    assert "can only delete pods with spec.nodeName set to itself" in forbidden(
        lambda: n1.delete_namespaced_pod("q2", "default"))


def test_agent_with_node_credentials_registers_and_heartbeats(cluster: tuple[ServerProcess, str],
                                                               tmp_path: Path) -> None:
    server, _ = cluster
    kubeconfig = tmp_path / "kubelet.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "k",
        "clusters": [{"name": "c", "cluster": {"server": server.url, "certificate-authority":
                                                str(server.data_dir / "pki" / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": "n1-token"}}],
        "contexts": [{"name": "k", "context": {"cluster": "c", "user": "u"}}]}))
    admin = api(server, "admin-token")
    leases = coordination(server, "admin-token")
    # A clean start: the earlier tests made Node n1 and its Lease by hand.
    admin.delete_node("n1")
    leases.delete_namespaced_lease("n1", "kube-node-lease")
    proc = AgentProcess({"server": server.url, "kubeconfig": str(kubeconfig), "node_name": "n1", "runtime": "simulated",
                         "root_dir": str(tmp_path / "root"), "port": free_port()}, tmp_path / "agent.log")
    proc.start()
    try:
        def ready() -> bool:
            try:
                node = admin.read_node("n1")
            except ApiException as error:
                assert error.status == 404
                return False
            return any(c.type == "Ready" and c.status == "True" for c in (node.status and node.status.conditions) or [])
        wait_for(ready, 30, "node n1 Ready")
        def renewed() -> Any:
            try:
                return leases.read_namespaced_lease("n1", "kube-node-lease").spec.renew_time
            except ApiException as error:
                assert error.status == 404
                return None
        wait_for(lambda: renewed() is not None, 30, "lease n1 created")
        first = renewed()
        wait_for(lambda: renewed() != first, 30, "lease renewed")
    except AssertionError:
        pytest.fail(proc.log())
    finally:
        proc.stop()
