"""The official ``kubernetes`` Python client against a real pilothouse server, unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch

from tests.conftest import ServerProcess, start_server_process


@pytest.fixture(scope="module")
def compacting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that compacts its history every second, so 410 Expired can be observed quickly."""
    proc = start_server_process(tmp_path_factory.mktemp("compacting"), extra=("--compaction-interval", "1"))
    yield proc
    proc.stop()


def api_client(server: ServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


def test_crud(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    created = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="crud", labels={"suite": "crud"}), data={"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    read = core.read_namespaced_config_map("crud", "default")
    assert read.data == {"a": "1"}
    read.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("crud", "default", read)
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)
    patched = core.patch_namespaced_config_map("crud", "default", {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}
    core.delete_namespaced_config_map("crud", "default")
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("crud", "default")
    assert missing.value.status == 404


def test_typed_workload_objects(server: ServerProcess) -> None:
    apps = client.AppsV1Api(api_client(server))
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="typed"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels={"app": "typed"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "typed"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))))
    created = apps.create_namespaced_deployment("default", deployment)
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.template.spec.containers[0].image_pull_policy == "Always"
    scale = apps.read_namespaced_deployment_scale("typed", "default")
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("typed", "default", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("typed", "default").spec.replicas == 4


def test_list_with_selectors_and_paging(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="paging")))
    for index in range(7):
        core.create_namespaced_config_map("paging", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"item-{index}",
                                         labels={"parity": "even" if index % 2 == 0 else "odd"})))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map("paging", limit=3, _continue=token)
        names.extend(item.metadata.name for item in page.items)
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    # kube-root-ca.crt does not exist here; the namespace holds exactly our items.
    assert sorted(names) == [f"item-{i}" for i in range(7)]
    even = core.list_namespaced_config_map("paging", label_selector="parity=even")
    assert sorted(i.metadata.name for i in even.items) == ["item-0", "item-2", "item-4", "item-6"]
    set_based = core.list_namespaced_config_map("paging", label_selector="parity in (odd),parity notin (even)")
    assert len(set_based.items) == 3
    by_field = core.list_namespaced_config_map("paging", field_selector="metadata.name!=item-0",
                                               label_selector="parity=even")
    assert sorted(i.metadata.name for i in by_field.items) == ["item-2", "item-4", "item-6"]


def test_watch_from_resource_version(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    first = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="watch-a")))
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watch-b")))
    core.patch_namespaced_config_map("watch-a", "default", {"data": {"x": "y"}})
    core.delete_namespaced_config_map("watch-b", "default")
    events = []
    stream = watch.Watch().stream(core.list_namespaced_config_map, "default",
                                  resource_version=first.metadata.resource_version, timeout_seconds=2)
    for event in stream:
        events.append((event["type"], event["object"].metadata.name))
    # Strictly newer than the given version: the creation of watch-a itself is not replayed.
    assert events == [("ADDED", "watch-b"), ("MODIFIED", "watch-a"), ("DELETED", "watch-b")]


def test_stale_update_conflicts(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    created = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="stale"), data={"v": "1"}))
    created.data = {"v": "2"}
    core.replace_namespaced_config_map("stale", "default", created)
    created.data = {"v": "3"}
    with pytest.raises(client.ApiException) as conflict:
        core.replace_namespaced_config_map("stale", "default", created)
    assert conflict.value.status == 409
    assert "the object has been modified" in conflict.value.body


def test_gone_after_compaction(compacting_server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(compacting_server))
    old = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="old")))
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline and status != 410:
        core.patch_namespaced_config_map("old", "default", {"data": {"t": str(time.monotonic())}})
        time.sleep(0.5)
        try:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          resource_version=old.metadata.resource_version, timeout_seconds=1):
                pass
        except client.ApiException as error:
            status = error.status
    assert status == 410


def test_kubeconfig_written(server: ServerProcess) -> None:
    assert Path(server.kubeconfig).read_text().count("server: http://127.0.0.1:") == 1
