"""A failed preStop hook is reported (issue 15): the agent dropped its failure silently; the kubelet
records a ``FailedPreStopHook`` Warning event on the pod (without the hook's output, which may hold
secrets) and goes on stopping the container. Real containers under podman."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.conftest import AgentProcess, PodmanFixture, get_pod, start_ready_agent, wait_for
from tests.conftest import ServerProcess

NODE = "prestop-node"


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    proc = start_ready_agent(server, podman, tmp_path_factory.mktemp("agent"), NODE)
    yield proc
    proc.stop()


def hook_events(server: ServerProcess, pod: str) -> list[dict[str, Any]]:
    events = json.loads(server.kubectl("get", "events", "-o", "json").stdout)["items"]
    return [e for e in events if e["involvedObject"].get("name") == pod and e["reason"] == "FailedPreStopHook"]


def test_failed_pre_stop_hook_is_an_event(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                                          busybox_image: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooked"}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "app", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "echo s3cret; exit 3"]}}}}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))

    def running() -> bool:
        current = get_pod(server, "hooked")
        return bool(current) and current["status"].get("phase") == "Running"
    try:
        wait_for(running, 60, "pod Running")
        uid = get_pod(server, "hooked")["metadata"]["uid"]
        server.kubectl("delete", "pod", "hooked", "--timeout=30s")  # the container stops all the same
        assert not [c for c in podman.containers(f"io.kubernetes.pod.uid={uid}") if c["State"] == "running"]
        wait_for(lambda: bool(hook_events(server, "hooked")), 15, "FailedPreStopHook event")
    except AssertionError:
        pytest.fail(agent.log())
    event = hook_events(server, "hooked")[0]
    assert event["type"] == "Warning"
    assert event["message"] == "PreStopHook failed"  # the kubelet's words; the output stays out
