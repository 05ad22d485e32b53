"""API Priority and Fairness against a real server, with the official client and kubectl.

The server gets 3 seats (``--max-requests-inflight 2 --max-mutating-requests-inflight 1``), so every
limited priority level of the bootstrap configuration has one. A client that never finishes its
request body holds a seat (a slow-loris writer). With ``global-default``'s seat held by one user:
that user's next request waits in a queue (and gets the seat the moment it is freed, or a 429 after a
quarter of its deadline), while a node's Lease renewal (``node-high``) and an administrator
(``exempt``) pass at once. Every answer names its FlowSchema and priority level by UID; the
configuration is read from the API, so a FlowSchema a user creates takes over a flow.

kubectl sends no credentials over plain HTTP (kubectl#744): it is anonymous here, in
``global-default``, and only used while that level has a seat to spare.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import ServerProcess
from tests.hostile.tokenserver import start_token_server

TOKENS = {"admin-token": ("root", "system:masters"), "alice-token": ("alice", "devs"),
          "node-token": ("system:node:n1", "system:nodes")}
REQUEST_TIMEOUT = 8.0  # a queued request waits a quarter of it: 2 s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_token_server(tmp_path_factory.mktemp("apf"), TOKENS,
                                 "--max-requests-inflight", "2", "--max-mutating-requests-inflight", "1",
                                 "--request-timeout", f"{REQUEST_TIMEOUT:g}s")
    yield process
    process.stop()


def api(server: ServerProcess, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = server.url
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def configmap(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})


def stalled_write(server: ServerProcess, name: str, token: str = "alice-token") -> socket.socket:
    """A create whose body never arrives whole: its handler waits on the body, holding a seat."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname or "", url.port or 80))
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).encode()
    sock.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                 + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
                 + f"Content-Length: {len(body) + 100}\r\n\r\n".encode() + body)
    return sock


def admin_get(server: ServerProcess, path: str) -> bytes:
    """A read as ``system:masters`` (exempt: it passes whatever the levels hold)."""
    request = urllib.request.Request(server.url + path, headers={"Authorization": "Bearer admin-token"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()  # type: ignore[no-any-return]


def uid_of(server: ServerProcess, plural: str, name: str) -> str:
    answer = json.loads(admin_get(server, f"/apis/flowcontrol.apiserver.k8s.io/v1/{plural}/{name}"))
    return str(answer["metadata"]["uid"])


def get(server: ServerProcess, path: str, token: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def renew_lease(server: ServerProcess) -> None:
    leases = client.CoordinationV1Api(api(server, "node-token"))
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="n1"),
                          spec=client.V1LeaseSpec(holder_identity="n1", lease_duration_seconds=40))
    try:
        leases.create_namespaced_lease("kube-node-lease", body)
    except ApiException as error:
        if error.status != 409:
            raise
        current = leases.read_namespaced_lease("n1", "kube-node-lease")
        leases.replace_namespaced_lease("n1", "kube-node-lease", current)


def test_the_bootstrap_configuration_is_served(server: ServerProcess) -> None:
    schemas = set(server.kubectl("get", "flowschemas", "-o", "name").stdout.split())
    assert {f"flowschema.flowcontrol.apiserver.k8s.io/{name}" for name in (
        "exempt", "probes", "system-leader-election", "endpoint-controller", "workload-leader-election",
        "system-node-high", "system-nodes", "kube-controller-manager", "kube-scheduler",
        "kube-system-service-accounts", "service-accounts", "global-default", "catch-all")} == schemas
    levels = server.kubectl("get", "prioritylevelconfigurations").stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:6] for line in levels[1:]}
    assert rows["workload-low"] == ["Limited", "100", "128", "6", "50"]
    assert rows["node-high"] == ["Limited", "40", "64", "6", "50"]
    assert rows["exempt"][0] == "Exempt" and rows["catch-all"][:2] == ["Limited", "5"]


def test_answers_name_the_flowschema_and_priority_level(server: ServerProcess) -> None:
    for token, schema, level in (("alice-token", "global-default", "global-default"),
                                 ("admin-token", "exempt", "exempt")):
        code, headers = get(server, "/api/v1/namespaces/default/configmaps", token)
        assert code == 200
        assert (headers["X-Kubernetes-PF-FlowSchema-UID"], headers["X-Kubernetes-PF-PriorityLevel-UID"]) == \
            (uid_of(server, "flowschemas", schema), uid_of(server, "prioritylevelconfigurations", level)), token
    # A node's Lease is node-high's; its other requests are system's.
    code, headers = get(server, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "node-token")
    assert headers["X-Kubernetes-PF-FlowSchema-UID"] == uid_of(server, "flowschemas", "system-node-high")
    code, headers = get(server, "/api/v1/pods", "node-token")
    assert headers["X-Kubernetes-PF-FlowSchema-UID"] == uid_of(server, "flowschemas", "system-nodes")
    # A watch holds no seat but is classified all the same.
    code, headers = get(server, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", "alice-token")
    assert code == 200
    assert headers["X-Kubernetes-PF-FlowSchema-UID"] == uid_of(server, "flowschemas", "global-default")
    # Probes are exempt for everyone, anonymous included.
    with urllib.request.urlopen(server.url + "/healthz", timeout=30) as response:
        assert response.headers["X-Kubernetes-PF-FlowSchema-UID"] == uid_of(server, "flowschemas", "probes")


def test_a_full_level_queues_its_own_flows_and_no_other_level(server: ServerProcess) -> None:
    admin = client.CoreV1Api(api(server, "admin-token"))
    stalled = stalled_write(server, "held")
    try:
        time.sleep(0.5)  # global-default's one seat is held
        # Other levels pass at once: the node's heartbeat, the administrator.
        started = time.monotonic()
        renew_lease(server)
        admin.create_namespaced_config_map("default", configmap("admin-passes"))
        assert time.monotonic() - started < 1.5
        # Alice's next request waits in her queue, then is turned away after a quarter of its deadline.
        # (urllib: the official client would retry a 429 with Retry-After, as urllib3 does.)
        started = time.monotonic()
        request = urllib.request.Request(server.url + "/api/v1/namespaces/default/configmaps/admin-passes",
                                         headers={"Authorization": "Bearer alice-token"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        waited = time.monotonic() - started
        assert REQUEST_TIMEOUT / 4 - 0.3 <= waited < REQUEST_TIMEOUT / 4 + 2, waited
        assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "1"
        status = json.loads(refused.value.read())
        assert (status["reason"], status["message"]) == ("TooManyRequests",
                                                          "Too many requests, please try again later.")
        assert refused.value.headers["X-Kubernetes-PF-PriorityLevel-UID"] == \
            uid_of(server, "prioritylevelconfigurations", "global-default")
    finally:
        stalled.close()
    metrics = admin_get(server, "/metrics").decode()
    assert 'apiserver_flowcontrol_rejected_requests_total{flow_schema="global-default",' \
           'priority_level="global-default",reason="time-out"} 1.0' in metrics
    assert 'apiserver_flowcontrol_nominal_limit_seats{priority_level="global-default"} 1.0' in metrics


def test_a_queued_request_gets_the_seat_when_it_is_freed(server: ServerProcess) -> None:
    alice = client.CoreV1Api(api(server, "alice-token"))
    stalled = stalled_write(server, "held-again")
    outcome: dict[str, Any] = {}

    def queued() -> None:
        started = time.monotonic()
        try:
            outcome["created"] = alice.create_namespaced_config_map("default", configmap("after-the-wait"))
        except ApiException as error:
            outcome["error"] = error
        outcome["took"] = time.monotonic() - started

    time.sleep(0.5)
    waiter = threading.Thread(target=queued)
    waiter.start()
    time.sleep(0.8)
    assert "took" not in outcome  # still queued behind the held seat
    stalled.close()  # the held request ends, its seat goes to the queue
    waiter.join(30)
    assert "error" not in outcome, outcome
    assert outcome["created"].metadata.name == "after-the-wait"
    assert 0.7 <= outcome["took"] < REQUEST_TIMEOUT / 4, outcome["took"]


def test_a_flowschema_created_through_the_api_takes_over_a_flow(server: ServerProcess) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: alices}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 30
    limitResponse: {type: Reject}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: alices}
spec:
  priorityLevelConfiguration: {name: alices}
  matchingPrecedence: 300
  rules:
  - subjects: [{kind: User, user: {name: alice}}]
    resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"]}]
""")
    wanted = uid_of(server, "flowschemas", "alices")
    deadline = time.monotonic() + 15
    while True:
        _, headers = get(server, "/api/v1/namespaces/default/configmaps", "alice-token")
        if headers["X-Kubernetes-PF-FlowSchema-UID"] == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert headers["X-Kubernetes-PF-FlowSchema-UID"] == wanted
    assert headers["X-Kubernetes-PF-PriorityLevel-UID"] == uid_of(server, "prioritylevelconfigurations", "alices")
    # A Reject level does not queue: with its seat held, the next request is a 429 at once.
    stalled = stalled_write(server, "held-by-alices")
    try:
        time.sleep(0.5)
        started = time.monotonic()
        code, _ = get(server, "/api/v1/namespaces/default/configmaps", "alice-token")
        assert code == 429 and time.monotonic() - started < 1.0
    finally:
        stalled.close()
    server.kubectl("delete", "flowschema", "alices")
