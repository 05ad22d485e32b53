"""The node lifecycle controller's events against a real server, read with the real kubectl: a node it
comes to know is RegisteredNode, a silent one NodeNotReady (and its pods "Node is not ready"), a
deleted one RemovingNode, in kube-controller-manager's words and under its "node-controller" name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pilothouse.client.rest import APIClient
from pilothouse.components.controllers.nodelifecycle import NodeLifecycleController
from tests.conftest import ServerProcess, start_server_process
from tests.controllers._fixtures_b import (
    NODES,
    PODS,
    create_namespace,
    create_node,
    mark_pod,
    run_controllers,
    wait_for,
)

OPTIONS = {"node_monitor_grace_period": 2.0, "node_monitor_period": 0.2}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without its own controllers: the test runs the one it looks at."""
    server = start_server_process(tmp_path_factory.mktemp("bare"), extra=("--disable", "scheduler,controller-manager"))
    yield server
    server.stop()


def events_about(server: ServerProcess, kind: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(server.kubectl("get", "events", "-A", "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"].get("kind") == kind and e["involvedObject"]["name"] == name]


async def test_the_node_controller_says_what_it_sees(bare: ServerProcess) -> None:
    client = APIClient(bare.url)
    try:
        namespace = await create_namespace(client, "nodeevents")
        await create_node(client, "quiet")
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "resident"},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace)
        await mark_pod(client, namespace, "resident", node="quiet")
        async with run_controllers(bare.url, NodeLifecycleController, options=OPTIONS):
            async def reasons(kind: str, name: str, wanted: set[str]) -> list[dict[str, Any]] | None:
                found = events_about(bare, kind, name)
                return found if wanted <= {e["reason"] for e in found} else None

            node_events = await wait_for(lambda: reasons("Node", "quiet", {"RegisteredNode", "NodeNotReady"}),
                                         timeout=20, what="RegisteredNode and NodeNotReady")
            pod_events = await wait_for(lambda: reasons("Pod", "resident", {"NodeNotReady"}), timeout=20,
                                        what="the pod's NodeNotReady")
            await client.delete(NODES, "quiet")
            await wait_for(lambda: reasons("Node", "quiet", {"RemovingNode"}), timeout=20, what="RemovingNode")
    finally:
        await client.close()

    by_reason = {e["reason"]: e for e in node_events}
    assert by_reason["RegisteredNode"]["message"] == "Node quiet event: Registered Node quiet in Controller"
    assert by_reason["NodeNotReady"]["message"] == "Node quiet status is now: NodeNotReady"
    assert {e["source"]["component"] for e in node_events} == {"node-controller"}
    (not_ready,) = [e for e in pod_events if e["reason"] == "NodeNotReady"]
    assert (not_ready["type"], not_ready["message"]) == ("Warning", "Node is not ready")
    removing = next(e for e in events_about(bare, "Node", "quiet") if e["reason"] == "RemovingNode")
    assert removing["message"] == "Node quiet event: Removing Node quiet from Controller"

    listed = bare.kubectl("events", "-n", namespace, "--for", "pod/resident").stdout
    assert re.search(r"Warning\s+NodeNotReady\s+Pod/resident\s+Node is not ready", listed), listed
