"""The in-pod service-account token, end to end: a real container reads the token the agent got
from the TokenRequest API, and the test uses it against a ``--secure --authorization-mode=RBAC``
server (the pod itself cannot reach the API by Service IP yet: the networking issue).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.conftest import AgentProcess, PodmanFixture, get_pod, start_ready_agent, wait_for
from tests.conftest import ServerProcess, start_server_process

NODE = "token-node"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def rbac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("rbac"), secure=True,
                                  extra=("--authorization-mode", "RBAC"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(rbac_server: ServerProcess, podman: PodmanFixture, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    # The agent runs as the cluster admin here (the Node authorizer is another helper's work).
    proc = start_ready_agent(rbac_server, podman, tmp_path_factory.mktemp("agent"), NODE,
                             kubeconfig=str(rbac_server.kubeconfig))
    yield proc
    proc.stop()


def _call(server: ServerProcess, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(server.url + path, json.dumps(body).encode() if body is not None else None,
                                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_token_read_in_container_authenticates_and_is_authorized_by_rbac(
        rbac_server: ServerProcess, agent: AgentProcess, busybox_image: str) -> None:
    server = rbac_server
    wait_for(lambda: server.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, 30,
             "default ServiceAccount")
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", f"cat {TOKEN_DIR}/token; echo; cat {TOKEN_DIR}/namespace; echo; "
                                          f"readlink {TOKEN_DIR}/..data; echo END; sleep 3600"]}]}}))

    def logs() -> str | None:
        result = server.kubectl("logs", "reader", check=False)
        return result.stdout if result.returncode == 0 and "END" in result.stdout else None

    try:
        out = wait_for(logs, 90, "the pod's token in its logs")
    except AssertionError:
        raise AssertionError(f"{get_pod(server, 'reader')}\n{agent.log()}") from None
    token, namespace, version = out.splitlines()[:3]
    assert namespace == "default"
    assert version.startswith("..")  # the AtomicWriter layout, seen from inside the container
    assert token.count(".") == 2  # a JWT, not a placeholder
    pod = get_pod(server, "reader")
    assert pod is not None

    # TokenReview (as the admin): the default account, bound to this pod.
    admin = json.loads(server.kubectl("create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-",
                                      input=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                                        "kind": "TokenReview", "spec": {"token": token}})).stdout)
    assert admin["status"]["authenticated"], admin
    user = admin["status"]["user"]
    assert user["username"] == "system:serviceaccount:default:default"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]

    # The token itself against the API: RBAC says no until a RoleBinding to `view`.
    status, body = _call(server, "/api/v1/namespaces/default/pods", token)
    assert status == 403, body
    assert "system:serviceaccount:default:default" in body["message"]
    # `view` is an aggregated ClusterRole: its rules come from the clusterrole-aggregation controller,
    # which runs under RBAC on its own service account's credentials.
    server.kubectl("create", "rolebinding", "sa-view", "--clusterrole", "view", "--serviceaccount", "default:default")
    wait_for(lambda: _call(server, "/api/v1/namespaces/default/pods", token)[0] == 200, 15, "200 after the binding")
    status, body = _call(server, "/api/v1/namespaces/default/pods", token)
    assert "reader" in [item["metadata"]["name"] for item in body["items"]]
    server.kubectl("delete", "pod", "reader", "--wait=false")
