"""ReplicationController against a real API server: the kind (defaults, validation, /status, /scale)
and the replication manager (owned pods, scaling, replacement, status, adoption, cascading deletes).

The replication manager runs beside the ReplicaSet controller and the garbage collector, as in a
controller manager; the fake kubelet marks pods Running and Ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from pilothouse.client import errors
from pilothouse.client.rest import resource
from pilothouse.components.controllers.garbagecollector import GarbageCollector
from pilothouse.components.controllers.namespace import NamespaceController
from pilothouse.components.controllers.replicaset import ReplicaSetController
from pilothouse.components.controllers.replication import ReplicationManager
from tests.conftest import ServerProcess
from tests.controllers.conftest import Cluster, eventually, live_pods, replace_one_pod

PODS = resource("", "v1", "pods")
RC = resource("", "v1", "replicationcontrollers")
NAMESPACES = resource("", "v1", "namespaces")
EVENTS = resource("", "v1", "events")

Object = dict[str, Any]


@pytest.fixture
async def cluster(server: ServerProcess) -> AsyncIterator[Cluster]:
    c = Cluster(server.url, (ReplicationManager, ReplicaSetController, GarbageCollector, NamespaceController))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def core_api(server: ServerProcess) -> k8s.CoreV1Api:
    """The official client's typed core/v1 API."""
    return k8s.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def rc_body(name: str, replicas: int | None, *, selector: dict[str, str] | None = None) -> Object:
    """An RC whose template carries one more label (tier, listed first: strings built from the
    labels must sort them) than its selector."""
    spec: Object = {"template": {"metadata": {"labels": {"tier": "web", "app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name}, "spec": spec}


async def namespace(cluster: Cluster, name: str) -> str:
    await cluster.client.create(NAMESPACES, {"metadata": {"name": name}})
    return name


async def pod_count_is(cluster: Cluster, ns: str, app: str, n: int) -> list[Object]:
    """The live pods once there are ``n`` (n > 0: an empty list reads as "not yet")."""
    pods = await live_pods(cluster, ns, app)
    return pods if len(pods) == n else []


async def status_is(cluster: Cluster, ns: str, name: str, **expected: int) -> Object:
    status = (await cluster.client.get(RC, name, ns)).get("status") or {}
    return status if all(status.get(k) == v for k, v in expected.items()) else {}


async def gone(cluster: Cluster, name: str, ns: str) -> bool:
    try:
        await cluster.client.get(RC, name, ns)
    except errors.NotFoundError:
        return True
    return False


# -- the kind ------------------------------------------------------------------------------------

async def test_defaults_selector_labels_and_replicas_from_the_template(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-defaults")
    created = await cluster.client.create(RC, rc_body("plain", None), ns)
    assert created["spec"]["selector"] == {"app": "plain", "tier": "web"}
    assert created["metadata"]["labels"] == {"app": "plain", "tier": "web"}
    assert created["spec"]["replicas"] == 1
    assert created["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert created["status"] == {"replicas": 0}
    assert created["metadata"]["generation"] == 1
    # A selector given stays as given; labels set on the RC are kept.
    body = rc_body("given", 0, selector={"app": "given"})
    body["metadata"]["labels"] = {"owner": "me"}
    given = await cluster.client.create(RC, body, ns)
    assert given["spec"]["selector"] == {"app": "given"}
    assert given["metadata"]["labels"] == {"owner": "me"}
    # The selector may change (unlike a ReplicaSet's), and a spec change bumps generation.
    changed = await cluster.client.patch(RC, "given", {"spec": {"selector": {"app": "given", "tier": "web"}}}, ns)
    assert changed["spec"]["selector"] == {"app": "given", "tier": "web"}
    assert changed["metadata"]["generation"] == 2


async def test_validation_as_kubernetes_words_it(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-invalid")

    async def rejected(body: Object) -> str:
        with pytest.raises(errors.InvalidError) as caught:
            await cluster.client.create(RC, body, ns)
        return caught.value.message

    mismatch = rc_body("mismatch", 1, selector={"app": "other"})
    assert await rejected(mismatch) == (
        'ReplicationController "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"mismatch", "tier":"web"}: `selector` does not match template `labels`')
    never = rc_body("never", 1)
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    never["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 10
    assert await rejected(never) == (
        'ReplicationController "never" is invalid: [spec.template.spec.restartPolicy: Unsupported value: '
        '"Never": supported values: "Always", spec.template.spec.activeDeadlineSeconds: Forbidden: '
        'activeDeadlineSeconds in ReplicationController is not Supported]')
    bare = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bare"},
            "spec": {"replicas": -1}}
    assert await rejected(bare) == (
        'ReplicationController "bare" is invalid: [spec.selector: Required value, spec.replicas: Invalid '
        'value: -1: must be greater than or equal to 0, spec.template: Required value]')

    await cluster.client.create(RC, rc_body("counted", 0), ns)
    with pytest.raises(errors.InvalidError) as caught:
        await cluster.client.patch(RC, "counted", {"status": {"replicas": 1, "readyReplicas": 2}}, ns,
                                   subresource="status")
    assert caught.value.message == (
        'ReplicationController "counted" is invalid: status.readyReplicas: Invalid value: 2: '
        'cannot be greater than status.replicas')


# -- the replication manager ---------------------------------------------------------------------

async def test_creates_owned_pods_and_reports_status(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-create")
    rc = await cluster.client.create(RC, rc_body("web", 3, selector={"app": "web"}), ns)
    status = await eventually(lambda: status_is(cluster, ns, "web", replicas=3, fullyLabeledReplicas=3,
                                                readyReplicas=3, availableReplicas=3, observedGeneration=1))
    assert "conditions" not in status
    pods = await live_pods(cluster, ns, "web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["generateName"] == "web-"
        assert pod["metadata"]["labels"] == {"app": "web", "tier": "web"}
        assert pod["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ReplicationController", "name": "web", "uid": rc["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}]

    async def create_events() -> list[Object]:
        items, _ = await cluster.client.list_all(EVENTS, ns)
        found = [e for e in items if e["reason"] == "SuccessfulCreate"]
        return found if len(found) == 3 else []
    events = await eventually(create_events)
    assert sorted(e["message"] for e in events) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)
    assert {e["source"]["component"] for e in events} == {"replication-controller"}
    assert {e["involvedObject"]["kind"] for e in events} == {"ReplicationController"}


async def test_deleted_pod_is_replaced_and_scale_subresource_resizes(cluster: Cluster, server: ServerProcess) -> None:
    ns = await namespace(cluster, "rc-scale")
    await cluster.client.create(RC, rc_body("app", 2), ns)
    await replace_one_pod(cluster, ns, "app", 2)

    # The official client's typed /scale calls: the Scale's selector is the RC's map in string form.
    core = core_api(server)
    scale = await asyncio.to_thread(core.read_namespaced_replication_controller_scale, "app", ns)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=app,tier=web")
    await asyncio.to_thread(core.patch_namespaced_replication_controller_scale, "app", ns,
                            {"spec": {"replicas": 4}})
    await eventually(lambda: pod_count_is(cluster, ns, "app", 4))
    await eventually(lambda: status_is(cluster, ns, "app", replicas=4, readyReplicas=4, observedGeneration=2))
    typed = await asyncio.to_thread(core.read_namespaced_replication_controller, "app", ns)
    assert typed.status.ready_replicas == 4 and typed.spec.selector == {"app": "app", "tier": "web"}

    await cluster.client.patch(RC, "app", {"spec": {"replicas": 0}}, ns)
    await eventually(lambda: _no_pods(cluster, ns, "app"))
    status = await eventually(lambda: status_is(cluster, ns, "app", replicas=0, observedGeneration=3))
    assert "readyReplicas" not in status  # zero counters are omitted, as Kubernetes serializes them


async def test_adopts_orphans_by_selector_and_counts_fully_labeled(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-adopt")
    # Matches the selector but lacks the template's tier label: adopted, not fully labeled.
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    await cluster.client.create(PODS, orphan, ns)
    rc = await cluster.client.create(RC, rc_body("adopt", 2, selector={"app": "adopt"}), ns)

    async def adopted() -> bool:
        pod = await cluster.client.get(PODS, "orphan", ns)
        return [(r["kind"], r["uid"]) for r in pod["metadata"].get("ownerReferences") or []] == \
            [("ReplicationController", rc["metadata"]["uid"])]
    await eventually(adopted)
    await eventually(lambda: status_is(cluster, ns, "adopt", replicas=2, fullyLabeledReplicas=1, readyReplicas=2))
    assert len(await live_pods(cluster, ns, "adopt")) == 2  # the orphan counted: only one pod made

    # Relabelled out of the selector: released, and replaced.
    await cluster.client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "elsewhere"}}}, ns)

    async def released() -> bool:
        return not (await cluster.client.get(PODS, "orphan", ns))["metadata"].get("ownerReferences")
    await eventually(released)
    await eventually(lambda: status_is(cluster, ns, "adopt", replicas=2, fullyLabeledReplicas=2))


async def test_failed_creates_set_replica_failure(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-failure")
    # Valid as a template, refused as a pod (nodeName with scheduling gates), as in Kubernetes.
    body = rc_body("stuck", 1)
    body["spec"]["template"]["spec"].update({"nodeName": "node-1", "schedulingGates": [{"name": "wait"}]})
    await cluster.client.create(RC, body, ns)

    async def failure() -> Object | None:
        status = (await cluster.client.get(RC, "stuck", ns)).get("status") or {}
        return next((c for c in status.get("conditions") or () if c["type"] == "ReplicaFailure"), None)
    condition = await eventually(failure)
    assert (condition["status"], condition["reason"]) == ("True", "FailedCreate")
    assert "nodeName" in condition["message"]
    # Fixed template: the condition goes away once pods can be made.
    await cluster.client.patch(RC, "stuck", {"spec": {"template": {"spec": {"schedulingGates": None}}}}, ns)
    await eventually(lambda: status_is(cluster, ns, "stuck", replicas=1))
    assert await failure() is None


async def test_cascading_deletes(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rc-cascade")
    for name in ("bg", "fg", "keep"):
        await cluster.client.create(RC, rc_body(name, 2), ns)
    for name in ("bg", "fg", "keep"):
        await eventually(lambda name=name: pod_count_is(cluster, ns, name, 2))  # type: ignore[misc]

    await cluster.client.delete(RC, "bg", ns, propagation_policy="Background")
    await eventually(lambda: gone(cluster, "bg", ns))
    await eventually(lambda: _no_pods(cluster, ns, "bg"))

    await cluster.client.delete(RC, "fg", ns, propagation_policy="Foreground")
    await eventually(lambda: gone(cluster, "fg", ns))
    assert not await live_pods(cluster, ns, "fg")  # the RC went only after its pods

    await cluster.client.delete(RC, "keep", ns, propagation_policy="Orphan")
    await eventually(lambda: gone(cluster, "keep", ns))

    async def orphaned() -> bool:
        pods = await live_pods(cluster, ns, "keep")
        return len(pods) == 2 and all(not p["metadata"].get("ownerReferences") for p in pods)
    await eventually(orphaned)


async def test_delete_without_a_policy_orphans_as_v1_always_did(cluster: Cluster, server: ServerProcess) -> None:
    ns = await namespace(cluster, "rc-default-policy")
    await cluster.client.create(RC, rc_body("legacy", 2), ns)
    await eventually(lambda: pod_count_is(cluster, ns, "legacy", 2))
    # No DeleteOptions at all: rcStrategy's DefaultGarbageCollectionPolicy (Orphan) applies.
    await asyncio.to_thread(core_api(server).delete_namespaced_replication_controller, "legacy", ns)
    await eventually(lambda: gone(cluster, "legacy", ns))

    async def orphaned() -> bool:
        pods = await live_pods(cluster, ns, "legacy")
        return len(pods) == 2 and all(not p["metadata"].get("ownerReferences") for p in pods)
    await eventually(orphaned)

    # Namespace deletion asks for Background: the RC and its pods go, nothing waits on a finalizer.
    await cluster.client.create(RC, rc_body("inside", 2), ns)
    await eventually(lambda: pod_count_is(cluster, ns, "inside", 2))
    await cluster.client.delete(NAMESPACES, ns)

    async def namespace_gone() -> bool:
        try:
            await cluster.client.get(NAMESPACES, ns)
        except errors.NotFoundError:
            return True
        return False
    await eventually(namespace_gone, timeout=30)


async def _no_pods(cluster: Cluster, ns: str, app: str) -> bool:
    items, _ = await cluster.client.list_all(PODS, ns, label_selector=f"app={app}")
    return not items
