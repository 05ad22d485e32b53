"""``pods/binding`` as kube-apiserver's ``BindingREST``: admission sees the Binding, and the pod is
changed through the storage alone (``setPodNodeAndMetadata``), so no pod strategy, validation or
managedFields run on it; the Binding's UID and resourceVersion are preconditions; its annotations
are merged into the pod; the PodScheduled condition is updated in place (``UpdatePodCondition``).
Refusals are Conflicts on ``pods/binding``; a name that differs from the URL's is a 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.apiserver.costhelpers import Client, pods_rest

PATH = "/api/v1/namespaces/default/pods"


async def _create(client: Client, name: str, **spec: Any) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}
    response = await client.post(PATH, json=pod, params={"fieldManager": "kube-controller-manager"})
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def _bind(client: Client, name: str, node: str = "node-1", **metadata: Any) -> tuple[int, dict[str, Any]]:
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, **metadata},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    response = await client.post(f"{PATH}/{name}/binding", json=binding, params={"fieldManager": "kube-scheduler"})
    return response.status, await response.json()


async def _get(client: Client, name: str) -> dict[str, Any]:
    response = await client.get(f"{PATH}/{name}")
    assert response.status == 200
    pod: dict[str, Any] = await response.json()
    return pod


async def test_a_binding_changes_only_the_node_the_condition_and_the_annotations(tmp_path: Path) -> None:
    async with pods_rest(tmp_path) as (client, _):
        created = await _create(client, "p")
        status, answer = await _bind(client, "p", uid=created["metadata"]["uid"],
                                     annotations={"scheduler.example/decided-by": "test"})
        assert status == 201 and answer["kind"] == "Status" and answer["status"] == "Success", answer
        pod = await _get(client, "p")
        assert pod["spec"]["nodeName"] == "node-1"
        assert pod["metadata"]["annotations"] == {"scheduler.example/decided-by": "test"}
        [scheduled] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert scheduled["status"] == "True" and scheduled["lastProbeTime"] is None
        assert scheduled["lastTransitionTime"]
        # The binding went through the storage alone: the pod's managers are the ones before it
        # (kube-apiserver records none for pods/binding; this code recorded kube-scheduler's).
        assert [entry["manager"] for entry in pod["metadata"]["managedFields"]] == ["kube-controller-manager"]
        assert pod["metadata"]["managedFields"] == created["metadata"]["managedFields"]


async def test_the_binding_uid_and_resource_version_are_preconditions(tmp_path: Path) -> None:
    async with pods_rest(tmp_path) as (client, _):
        created = await _create(client, "p")
        status, answer = await _bind(client, "p", uid="not-the-pods-uid")
        assert status == 409 and answer["reason"] == "Conflict", answer
        assert "Precondition failed: UID in precondition: not-the-pods-uid" in answer["message"]
        status, answer = await _bind(client, "p", resourceVersion="1")
        assert status == 409 and "Precondition failed: ResourceVersion in precondition: 1" in answer["message"]
        assert "nodeName" not in (await _get(client, "p"))["spec"]
        status, _ = await _bind(client, "p", uid=created["metadata"]["uid"],
                                resourceVersion=created["metadata"]["resourceVersion"])
        assert status == 201
        assert (await _get(client, "p"))["spec"]["nodeName"] == "node-1"


async def test_refusals_are_conflicts_on_pods_binding(tmp_path: Path) -> None:
    async with pods_rest(tmp_path) as (client, _):
        await _create(client, "p")
        assert (await _bind(client, "p"))[0] == 201
        status, answer = await _bind(client, "p", node="node-2")
        assert status == 409, answer
        assert answer["message"] == ('Operation cannot be fulfilled on pods/binding "p": '
                                     'pod p is already assigned to node "node-1"')
        assert answer["details"] == {"name": "p", "kind": "pods/binding"}

        await _create(client, "gated", schedulingGates=[{"name": "example.com/wait"}])
        status, answer = await _bind(client, "gated")
        assert status == 409 and answer["message"].endswith("pod gated has non-empty .spec.schedulingGates")


async def test_a_binding_named_otherwise_than_the_url_is_a_400(tmp_path: Path) -> None:
    async with pods_rest(tmp_path) as (client, _):
        await _create(client, "p")
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "other"}, "target": {"name": "n"}}
        response = await client.post(f"{PATH}/p/binding", json=binding)
        answer = await response.json()
        assert response.status == 400 and answer["message"] == "name in URL does not match name in Binding object"
        response = await client.post(f"{PATH}/p/binding", json={**binding, "metadata": {"name": "p"},
                                                                 "target": {"kind": "Pod", "name": "n"}})
        answer = await response.json()
        assert response.status == 422 and "target.kind: Unsupported value" in answer["message"], answer
        assert "nodeName" not in (await _get(client, "p"))["spec"]


@pytest.mark.parametrize("before", ["False", "True"])
async def test_the_pod_scheduled_condition_is_updated_where_it_stands(tmp_path: Path, before: str) -> None:
    """An unschedulable pod's PodScheduled=False (the scheduler's status patch) becomes True in its
    place, without the old reason and message; one that is already True keeps its transition time."""
    async with pods_rest(tmp_path) as (client, _):
        await _create(client, "p")
        conditions = [{"type": "PodScheduled", "status": before, "reason": "Unschedulable", "message": "0/3 nodes",
                       "lastProbeTime": None, "lastTransitionTime": "2020-01-01T00:00:00Z"},
                      {"type": "Example", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": "2020-01-01T00:00:00Z"}]
        patched = await client.patch(f"{PATH}/p/status", data=orjson.dumps({"status": {"conditions": conditions}}),
                                     headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status == 200, await patched.text()
        assert (await _bind(client, "p"))[0] == 201
        first, second = (await _get(client, "p"))["status"]["conditions"]
        assert second["type"] == "Example"
        assert first["type"] == "PodScheduled" and first["status"] == "True"
        assert "reason" not in first and "message" not in first
        if before == "True":
            assert first["lastTransitionTime"] == "2020-01-01T00:00:00Z"
        else:
            assert first["lastTransitionTime"] != "2020-01-01T00:00:00Z"
