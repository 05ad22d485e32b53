"""The scheduler's and the controller manager's informers cache objects without their managedFields
(issue 16: at density's scale they were most of 1.8 GB in each process), as kube-scheduler's pod
informer and kube-controller-manager's informer factories do, and the writes the controllers make
from those objects keep the managedFields stored on the server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from pilothouse.client import errors
from pilothouse.client.informer import (
    EventHandler,
    InformerFactory,
    share_strings,
    strip_managed_fields,
    trim_for_cache,
)
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.manager import ControllerManager
from pilothouse.components.scheduler import Scheduler
from tests.conftest import ServerProcess

CONFIGMAPS, PODS, DEPLOYMENTS, REPLICASETS = (resource(group, "v1", plural) for group, plural in (
    ("", "configmaps"), ("", "pods"), ("apps", "deployments"), ("apps", "replicasets")))


async def _until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


async def _managers(client: APIClient, r: Any, name: str) -> set[str]:
    obj = await client.get(r, name, "default")
    return {entry["manager"] for entry in obj["metadata"].get("managedFields") or []}


async def test_a_factory_transform_reaches_listed_watched_and_deleted_objects(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        await client.create(CONFIGMAPS, {"metadata": {"name": "t-listed"}, "data": {"a": "1"}}, "default")
        factory = InformerFactory(client, transform=strip_managed_fields)
        informer = factory.informer(CONFIGMAPS, namespace="default")
        seen: list[tuple[str, dict[str, Any]]] = []
        informer.add_handler(EventHandler(lambda obj: seen.append(("add", obj)),
                                          lambda _old, new: seen.append(("update", new)),
                                          lambda obj: seen.append(("delete", obj))))
        factory.start()
        try:
            await factory.wait_synced(10)
            await client.create(CONFIGMAPS, {"metadata": {"name": "t-watched"}}, "default")
            await client.patch(CONFIGMAPS, "t-listed", {"data": {"a": "2"}}, "default")
            await client.delete(CONFIGMAPS, "t-watched", "default")
            await _until(lambda: ("delete", "t-watched") in [(k, o["metadata"]["name"]) for k, o in seen],
                         "the delete of t-watched reaches the handler")
            assert {(kind, obj["metadata"]["name"]) for kind, obj in seen} >= {
                ("add", "t-listed"), ("add", "t-watched"), ("update", "t-listed"), ("delete", "t-watched")}
            assert [obj["metadata"]["name"] for _, obj in seen if "managedFields" in obj["metadata"]] == []
            cached = informer.get("default/t-listed")
            assert cached is not None and cached["data"] == {"a": "2"}
            assert "managedFields" not in cached["metadata"]
            # the server's copy keeps them
            assert (await client.get(CONFIGMAPS, "t-listed", "default"))["metadata"]["managedFields"]
        finally:
            await factory.stop()


async def test_one_informer_is_not_handed_out_with_two_transforms(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        factory = InformerFactory(client)
        plain = factory.informer(CONFIGMAPS)
        assert factory.informer(CONFIGMAPS) is plain
        try:
            factory.informer(CONFIGMAPS, transform=strip_managed_fields)
        except ValueError:
            pass
        else:
            raise AssertionError("a second transform for one informer must be refused")
        stripping = InformerFactory(client, transform=strip_managed_fields)
        assert stripping.informer(PODS) is stripping.informer(PODS, transform=strip_managed_fields)


async def _pending_pod(client: APIClient, name: str) -> None:
    """A pod no scheduler takes (another scheduler's), once ServiceAccount admission admits it."""
    body = {"metadata": {"name": name}, "spec": {"schedulerName": "nobody", "containers": [
        {"name": "c", "image": "registry.local/app:1"}]}}
    for _ in range(300):
        try:
            await client.create(PODS, body, "default")
            return
        except errors.APIError as error:  # the default ServiceAccount is not there yet
            if error.code != 403:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the pod was never admitted")


async def test_the_controller_manager_and_the_scheduler_cache_pods_without_managed_fields(
        server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        await _pending_pod(client, "trimmed")
        assert (await client.get(PODS, "trimmed", "default"))["metadata"]["managedFields"]
        manager = ControllerManager(server.url, controllers=["replicaset"], use_service_account_credentials=False)
        scheduler = Scheduler(server.url, scheduler_name="informer-trim-test")
        try:
            await manager.start()
            await scheduler.start(sync_timeout=30)
            # the scheduler's pod informer is newPodInformer's: pods that are not terminal
            not_terminal = "status.phase!=Succeeded,status.phase!=Failed"
            cached = [manager.informers.informer(PODS, transform=trim_for_cache).get("default/trimmed"),
                      scheduler.informers.informer(PODS, field_selector=not_terminal,
                                                   transform=trim_for_cache).get("default/trimmed")]
            pods = [pod for pod in cached if pod is not None]
            assert len(pods) == 2, "the pod is cached by both"
            assert [pod for pod in pods if "managedFields" in pod["metadata"]] == []
            # two processes' worth of copies in this one: their strings are the same objects
            assert pods[0] is not pods[1]
            assert pods[0]["spec"]["schedulerName"] is pods[1]["spec"]["schedulerName"]
            # kube-controller-manager trims every informer of its factory; kube-scheduler only its pods'
            assert manager.informers.transform is trim_for_cache
        finally:
            await scheduler.stop()
            await manager.stop()
            await client.delete(PODS, "trimmed", "default", grace_period_seconds=0)


async def test_a_controller_write_from_its_trimmed_cache_keeps_the_other_managers(server: ServerProcess) -> None:
    """The deployment controller (the server's own controller manager) scales a ReplicaSet with a PUT
    of the ReplicaSet it cached, which has no managedFields: the entry of the manager who labelled
    the ReplicaSet stays, as the label does."""
    async with APIClient(server.url) as client:
        deployment = {"metadata": {"name": "trim"}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "trim"}},
            "template": {"metadata": {"labels": {"app": "trim"}}, "spec": {
                "schedulerName": "nobody", "containers": [{"name": "c", "image": "registry.local/app:1"}]}}}}
        await client.create(DEPLOYMENTS, deployment, "default")
        replica_sets: list[str] = []

        async def find() -> None:
            for _ in range(300):
                items = (await client.list(REPLICASETS, "default", label_selector="app=trim"))["items"]
                if items:
                    replica_sets.append(items[0]["metadata"]["name"])
                    return
                await asyncio.sleep(0.1)

        await find()
        assert replica_sets, "the deployment controller made its ReplicaSet"
        name = replica_sets[0]
        await client.patch(REPLICASETS, name, {"metadata": {"labels": {"owner": "team"}}}, "default",
                           field_manager="test-labeller")
        assert "test-labeller" in await _managers(client, REPLICASETS, name)
        await client.patch(DEPLOYMENTS, "trim", {"spec": {"replicas": 3}}, "default")
        for _ in range(300):
            if (await client.get(REPLICASETS, name, "default"))["spec"]["replicas"] == 3:
                break
            await asyncio.sleep(0.1)
        scaled = await client.get(REPLICASETS, name, "default")
        assert scaled["spec"]["replicas"] == 3
        assert scaled["metadata"]["labels"]["owner"] == "team"
        managers = {entry["manager"]: entry for entry in scaled["metadata"]["managedFields"]}
        assert "test-labeller" in managers
        assert "f:owner" in str(managers["test-labeller"]["fieldsV1"])
        await client.delete(DEPLOYMENTS, "trim", "default", propagation_policy="Background")


def test_shared_strings_are_equal_and_one_object() -> None:
    raw = orjson.dumps({"metadata": {"name": "a", "labels": {"app": "web-frontend", "tier": "x" * 200}},
                        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                                                 "args": ["--port", "8080"]}], "priority": 0}})
    first, second = orjson.loads(raw), orjson.loads(raw)
    assert first["metadata"]["labels"]["app"] is not second["metadata"]["labels"]["app"]
    assert share_strings(first) == orjson.loads(raw)
    share_strings(second)
    assert first == second
    for path in (("metadata", "labels", "app"), ("spec", "containers", 0, "image"),
                 ("spec", "containers", 0, "args", 1)):
        a: Any = first
        b: Any = second
        for step in path:
            a, b = a[step], b[step]
        assert a is b, path
    # a long value is rarely repeated: left as decoded
    assert first["metadata"]["labels"]["tier"] is not second["metadata"]["labels"]["tier"]


def test_strip_managed_fields_keeps_the_rest() -> None:
    pod = {"metadata": {"name": "p", "resourceVersion": "7", "managedFields": [{"manager": "m"}]}, "spec": {}}
    assert strip_managed_fields(pod) == {"metadata": {"name": "p", "resourceVersion": "7"}, "spec": {}}
    assert strip_managed_fields({"kind": "Status"}) == {"kind": "Status"}
