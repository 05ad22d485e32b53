"""The events a node agent records, as the kubelet does, read through the real kubectl (issue 14's
"events worth reading"): real containers under podman, the embedded scheduler and controllers.

A crash-looping pod reads in ``kubectl describe pod`` as on Kubernetes: Scheduled from
default-scheduler, then Pulled/Created/Started from the kubelet, then a BackOff that counts up as
one Event; its Node's events (Starting, NodeReady, RegisteredNode from the node controller) read
in ``kubectl describe node``; deleting a pod records Killing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.conftest import AgentProcess, PodmanFixture, start_ready_agent, wait_for
from tests.conftest import ServerProcess

NODE = "events-node"


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    proc = start_ready_agent(server, podman, tmp_path_factory.mktemp("agent"), NODE)
    yield proc
    proc.stop()


def events_of(server: ServerProcess, kind: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(server.kubectl("get", "events", "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name]


def events_section(described: str) -> list[str]:
    """The rows under ``Events:`` (after its Type/Reason header and the dashes)."""
    lines = described[described.index("\nEvents:") + 1:].splitlines()
    return [line for line in lines[3:] if line.strip()]


def test_a_crash_looping_pod_reads_as_on_kubernetes(server: ServerProcess, agent: AgentProcess,
                                                    busybox_image: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", "exit 3"]}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))
    try:
        # the kubelet restarts at once after the first exit, then backs off (10 s) after the second
        wait_for(lambda: any(e["reason"] == "BackOff" for e in events_of(server, "Pod", "crasher")), 90, "BackOff")
    except AssertionError:
        pytest.fail(agent.log())
    events = {e["reason"]: e for e in events_of(server, "Pod", "crasher")}
    assert {"Scheduled", "Pulled", "Created", "Started", "BackOff"} <= set(events), sorted(events)
    assert events["Created"]["message"] == "Created container: app"
    assert events["Started"]["message"] == "Started container app"
    assert events["Pulled"]["message"] == f'Container image "{busybox_image}" already present on machine'
    uid = events["Started"]["involvedObject"]["uid"]
    assert events["BackOff"]["message"] == f"Back-off restarting failed container app in pod crasher_default({uid})"
    assert events["BackOff"]["type"] == "Warning"
    for reason in ("Pulled", "Created", "Started", "BackOff"):
        assert events[reason]["involvedObject"]["fieldPath"] == "spec.containers{app}"
        assert events[reason]["source"] == {"component": "kubelet", "host": NODE}
    # each repeat counted up the first Event instead of writing another
    assert events["Started"]["count"] >= 2 and events["Created"]["count"] >= 2
    assert len([e for e in events_of(server, "Pod", "crasher") if e["reason"] == "Started"]) == 1

    rows = events_section(server.kubectl("describe", "pod", "crasher").stdout)
    reasons = [row.split()[1] for row in rows]
    assert reasons[0] == "Scheduled" and reasons.index("Created") < reasons.index("BackOff"), rows
    text = "\n".join(rows)
    assert re.search(r"Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/crasher to "
                     + NODE, text), text
    assert re.search(r"Normal\s+Started\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Started container app", text), text
    assert re.search(r"Warning\s+BackOff\s+\S+\s+kubelet\s+Back-off restarting failed container app in pod "
                     r"crasher_default", text), text



def test_a_running_pod_loses_its_sandbox_then_is_deleted(server: ServerProcess, agent: AgentProcess,
                                                          podman: PodmanFixture, busybox_image: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: any(e["reason"] == "Started" for e in events_of(server, "Pod", "sleeper")), 60, "Started")
    # the pod's sandbox dies under the agent: it says so, and makes a new one
    uid = json.loads(server.kubectl("get", "pod", "sleeper", "-o", "json").stdout)["metadata"]["uid"]
    (sandbox,) = [c for c in podman.containers(f"io.kubernetes.pod.uid={uid}")
                  if c["Labels"].get("io.pilothouse.role") == "sandbox"]
    podman.cli("kill", sandbox["Id"])
    wait_for(lambda: any(e["reason"] == "SandboxChanged" for e in events_of(server, "Pod", "sleeper")), 60,
             "SandboxChanged")
    changed = next(e for e in events_of(server, "Pod", "sleeper") if e["reason"] == "SandboxChanged")
    assert changed["message"] == "Pod sandbox changed, it will be killed and re-created."
    assert "fieldPath" not in changed["involvedObject"]  # about the pod, not a container
    wait_for(lambda: json.loads(server.kubectl("get", "pod", "sleeper", "-o", "json").stdout)["status"].get(
        "containerStatuses", [{}])[0].get("ready"), 60, "running again")

    server.kubectl("delete", "pod", "sleeper", "--wait=false")
    wait_for(lambda: any(e["reason"] == "Killing" for e in events_of(server, "Pod", "sleeper")), 30, "Killing")
    killing = next(e for e in events_of(server, "Pod", "sleeper") if e["reason"] == "Killing")
    assert killing["message"] == "Stopping container app"
    assert killing["involvedObject"]["fieldPath"] == "spec.containers{app}"


def test_every_failed_probe_is_counted_on_one_unhealthy_event(server: ServerProcess, agent: AgentProcess,
                                                              busybox_image: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                        "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "echo not yet; exit 1"]},
                                           "periodSeconds": 1}}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: any(e["reason"] == "Unhealthy" and e.get("count", 1) >= 3
                             for e in events_of(server, "Pod", "unready")), 60, "Unhealthy x3")
    except AssertionError:
        pytest.fail(agent.log())
    unhealthy = [e for e in events_of(server, "Pod", "unready") if e["reason"] == "Unhealthy"]
    assert len(unhealthy) == 1 and unhealthy[0]["type"] == "Warning"
    assert unhealthy[0]["message"] == "Readiness probe failed: not yet\n"
    assert unhealthy[0]["involvedObject"]["fieldPath"] == "spec.containers{app}"
    text = "\n".join(events_section(server.kubectl("describe", "pod", "unready").stdout))
    assert re.search(r"Warning\s+Unhealthy\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Readiness probe failed: not yet",
                     text), text
    server.kubectl("delete", "pod", "unready", "--wait=false")


def test_a_missing_config_map_is_a_failed_mount(server: ServerProcess, agent: AgentProcess,
                                                busybox_image: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unmounted"}, "spec": {
        "terminationGracePeriodSeconds": 1, "volumes": [{"name": "cfg", "configMap": {"name": "missing"}}],
        "containers": [{"name": "app", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "3600"], "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: any(e["reason"] == "FailedMount" for e in events_of(server, "Pod", "unmounted")), 60,
             "FailedMount")
    mount = next(e for e in events_of(server, "Pod", "unmounted") if e["reason"] == "FailedMount")
    assert mount["type"] == "Warning"
    assert mount["message"] == 'MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found'
    server.kubectl("delete", "pod", "unmounted", "--wait=false")


def test_the_node_events(server: ServerProcess, agent: AgentProcess) -> None:
    wait_for(lambda: {"Starting", "NodeReady", "RegisteredNode"} <= {e["reason"] for e in events_of(server, "Node",
                                                                                                     NODE)},
             30, "node events")
    events = {e["reason"]: e for e in events_of(server, "Node", NODE)}
    assert events["Starting"]["message"] == "Starting kubelet."
    for reason in ("NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"):
        assert events[reason]["message"] == f"Node {NODE} status is now: {reason}"
        assert events[reason]["involvedObject"]["uid"] == NODE  # the kubelet's nodeRef
    assert events["RegisteredNode"]["message"] == f"Node {NODE} event: Registered Node {NODE} in Controller"
    assert events["RegisteredNode"]["source"]["component"] == "node-controller"
    text = "\n".join(events_section(server.kubectl("describe", "node", NODE).stdout))
    assert re.search(r"Normal\s+Starting\s+\S+\s+kubelet\s+Starting kubelet\.", text), text
    assert re.search(r"Normal\s+RegisteredNode\s+\S+\s+node-controller\s+Node " + NODE, text), text
    assert re.search(r"Normal\s+NodeReady\s+\S+\s+kubelet\s+Node " + NODE + " status is now: NodeReady", text), text
    listed = server.kubectl("events", "--for", f"node/{NODE}").stdout
    # kubectl events --for selects on the reference's apiVersion too, which the kubelet's nodeRef
    # lacks: there, as on Kubernetes, only the node controller's events show
    assert re.search(r"Normal\s+RegisteredNode\s+Node/" + NODE + r"\s+Node " + NODE + " event: Registered Node",
                     listed), listed
