"""The controllers' events, read with the real kubectl against a real server: each controller
records under kube-controller-manager's source name and words, so ``kubectl describe`` shows the
same "From" and "Message" columns as on Kubernetes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.conftest import ServerProcess

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}


def wait_for_events(server: ServerProcess, kind: str, name: str, reasons: set[str],
                    timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = json.loads(server.kubectl("get", "events", "-o", "json").stdout)["items"]
        found = [e for e in items if e["involvedObject"].get("kind") == kind and e["involvedObject"]["name"] == name]
        if reasons <= {e["reason"] for e in found}:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {reasons} for {kind}/{name}: {found}")


def create(server: ServerProcess, obj: dict[str, Any]) -> None:
    for _ in range(100):  # until the controller manager has made the default ServiceAccount
        result = server.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)
        if result.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(result.stderr)


def events_table(described: str) -> str:
    return described[described.index("\nEvents:"):]


def test_a_deployment_and_its_replica_set(server: ServerProcess) -> None:
    create(server, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    (scaled,) = wait_for_events(server, "Deployment", "web", {"ScalingReplicaSet"})
    rs_name = scaled["message"].split()[4]
    assert re.fullmatch(r"Scaled up replica set web-[a-z0-9]+ from 0 to 2", scaled["message"]), scaled["message"]
    assert scaled["source"]["component"] == "deployment-controller"
    text = events_table(server.kubectl("describe", "deployment", "web").stdout)
    assert re.search(r"Normal\s+ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up replica set "
                     + rs_name + " from 0 to 2", text), text

    created = wait_for_events(server, "ReplicaSet", rs_name, {"SuccessfulCreate"})
    assert {e["source"]["component"] for e in created} == {"replicaset-controller"}
    text = events_table(server.kubectl("describe", "replicaset", rs_name).stdout)
    assert len(re.findall(r"Normal\s+SuccessfulCreate\s+\S+\s+replicaset-controller\s+Created pod: "
                          + rs_name + r"-[a-z0-9]{5}", text)) == 2, text


def test_a_stateful_set_says_it_its_own_way(server: ServerProcess) -> None:
    create(server, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "web"}},
                             "template": TEMPLATE}})
    (created,) = wait_for_events(server, "StatefulSet", "db", {"SuccessfulCreate"})
    assert created["message"] == "create Pod db-0 in StatefulSet db successful"
    assert created["source"]["component"] == "statefulset-controller"
    text = events_table(server.kubectl("describe", "statefulset", "db").stdout)
    assert re.search(r"Normal\s+SuccessfulCreate\s+\S+\s+statefulset-controller\s+create Pod db-0 in StatefulSet "
                     r"db successful", text), text


def test_kubectl_events_lists_them_in_time_order(server: ServerProcess) -> None:
    listed = server.kubectl("events").stdout.splitlines()
    assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    objects = {row.split()[3] for row in listed[1:] if len(row.split()) > 3}
    assert {"Deployment/web", "StatefulSet/db"} <= objects, listed
