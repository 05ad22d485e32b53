"""The official ``kubernetes`` Python client's watch, informer and YAML helpers against a real
pilothouse server, used the way their users write them.

The installed client (37.x) ships ``kubernetes.informer.SharedInformer`` (list, then watch from the
list's resourceVersion, reconnect with the last seen version, a relist every ``resync_period``), so
the informer test drives that class itself; the list-then-watch-with-resume loop that users of
older clients write by hand is tested on its own below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, utils, watch
from kubernetes.informer import ADDED, DELETED, MODIFIED, SharedInformer

from pilothouse.apiserver.discovery import Discovery
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry
from tests.conftest import ServerProcess


def api_client(server: ServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


@pytest.fixture(scope="module")
def core(server: ServerProcess) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(server))


def make_namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def configmap(name: str, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data or None)


# ------------------------------------------------------------------ Watch().stream


def test_watch_stream_sees_live_added_modified_deleted(core: client.CoreV1Api) -> None:
    namespace = make_namespace(core, "live-watch")
    listed = core.list_namespaced_config_map(namespace)
    events: list[tuple[str, str, str, dict[str, str] | None]] = []
    watcher = watch.Watch()
    started = threading.Event()

    def consume() -> None:
        started.set()
        for event in watcher.stream(core.list_namespaced_config_map, namespace,
                                    resource_version=listed.metadata.resource_version, timeout_seconds=30):
            obj = event["object"]
            events.append((event["type"], obj.metadata.name, obj.metadata.resource_version, obj.data))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    started.wait()
    created = core.create_namespaced_config_map(namespace, configmap("live", k="1"))
    patched = core.patch_namespaced_config_map("live", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("live", namespace)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [(kind, name, data) for kind, name, _, data in events] == [
        ("ADDED", "live", {"k": "1"}), ("MODIFIED", "live", {"k": "2"}), ("DELETED", "live", {"k": "2"})]
    versions = [int(rv) for _, _, rv, _ in events]
    assert versions[0] == int(created.metadata.resource_version)
    assert versions[1] == int(patched.metadata.resource_version)
    assert versions == sorted(versions) and len(set(versions)) == 3
    # The Watch object tracks the last version it saw, which is what a resume starts from.
    assert watcher.resource_version == str(versions[-1])


def test_watch_stream_with_field_selector_on_one_object(core: client.CoreV1Api) -> None:
    namespace = make_namespace(core, "one-watch")
    core.create_namespaced_config_map(namespace, configmap("other"))
    start = core.create_namespaced_config_map(namespace, configmap("mine"))
    core.patch_namespaced_config_map("other", namespace, {"data": {"x": "1"}})
    core.patch_namespaced_config_map("mine", namespace, {"data": {"x": "1"}})
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, field_selector="metadata.name=mine",
                                  resource_version=start.metadata.resource_version, timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("MODIFIED", "mine")]


def test_watch_stream_refuses_an_unsupported_field_label(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as refused:
        for _ in watch.Watch().stream(core.list_namespaced_pod, "default", field_selector="spec.image=x",
                                      timeout_seconds=1):
            pass
    assert refused.value.status == 400
    assert '"message":"field label not supported: spec.image"' in refused.value.body


def test_client_reads_pretty_and_plain_answers_alike(core: client.CoreV1Api) -> None:
    namespace = make_namespace(core, "pretty-client")
    core.create_namespaced_config_map(namespace, configmap("shown", a="<&>"))
    plain = core.read_namespaced_config_map("shown", namespace)
    pretty = core.read_namespaced_config_map("shown", namespace, pretty="true")
    assert pretty.data == plain.data == {"a": "<&>"}
    raw = core.read_namespaced_config_map("shown", namespace, pretty="true", _preload_content=False).data
    assert raw.startswith(b'{\n  "') and b"\\u003c\\u0026\\u003e" in raw
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("absent", namespace, pretty="true")
    assert missing.value.status == 404 and missing.value.body.startswith('{\n  "kind": "Status"')


# ------------------------------------------------------------------ list, watch, expire, resume


def test_list_then_watch_resumes_after_timeout_without_losing_events(core: client.CoreV1Api) -> None:
    """The loop users write: list, watch from the list's version with a timeout, and when the
    server ends the watch, watch again from the last version seen. Changes made while no watch is
    open arrive on the next one; nothing is seen twice."""
    namespace = make_namespace(core, "resume")
    core.create_namespaced_config_map(namespace, configmap("before"))
    listed = core.list_namespaced_config_map(namespace)
    cache = {item.metadata.name: item.metadata.resource_version for item in listed.items}
    assert set(cache) == {"before"}
    version = listed.metadata.resource_version
    seen: list[tuple[str, str]] = []

    def watch_once() -> float:
        nonlocal version
        watcher = watch.Watch()
        began = time.monotonic()
        for event in watcher.stream(core.list_namespaced_config_map, namespace, resource_version=version,
                                    timeout_seconds=1):
            obj = event["object"]
            seen.append((event["type"], obj.metadata.name))
            if event["type"] == "DELETED":
                cache.pop(obj.metadata.name, None)
            else:
                cache[obj.metadata.name] = obj.metadata.resource_version
        version = watcher.resource_version or version
        return time.monotonic() - began

    # Nothing happens: the server ends the watch when timeoutSeconds runs out.
    assert 0.8 <= watch_once() < 5
    assert seen == []
    # Changes between two watches.
    core.create_namespaced_config_map(namespace, configmap("gap"))
    core.patch_namespaced_config_map("before", namespace, {"data": {"v": "2"}})
    watch_once()
    assert seen == [("ADDED", "gap"), ("MODIFIED", "before")]
    core.delete_namespaced_config_map("gap", namespace)
    watch_once()
    assert seen == [("ADDED", "gap"), ("MODIFIED", "before"), ("DELETED", "gap")]
    assert cache == {item.metadata.name: item.metadata.resource_version
                     for item in core.list_namespaced_config_map(namespace).items}


# ------------------------------------------------------------------ SharedInformer


class Recorder:
    def __init__(self, informer: SharedInformer) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        for kind in (ADDED, MODIFIED, DELETED):
            informer.add_event_handler(kind, self._handler(kind))

    def _handler(self, kind: str) -> Callable[[Any], None]:
        def record(obj: Any) -> None:
            with self.lock:
                self.events.append((kind, obj.metadata.name, obj.metadata.resource_version))
        return record

    def of(self, name: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(kind, rv) for kind, n, rv in self.events if n == name]


@pytest.fixture
def informer_namespace(core: client.CoreV1Api) -> str:
    return make_namespace(core, f"informer-{time.monotonic_ns()}")


def test_informer_sees_adds_updates_deletes(core: client.CoreV1Api, informer_namespace: str) -> None:
    namespace = informer_namespace
    core.create_namespaced_config_map(namespace, configmap("existing", a="1"))
    informer = SharedInformer(core.list_namespaced_config_map, namespace=namespace)
    recorder = Recorder(informer)
    informer.start()
    try:
        wait_for(lambda: recorder.of("existing") != [], what="the initial list")
        assert [kind for kind, _ in recorder.of("existing")] == [ADDED]
        created = core.create_namespaced_config_map(namespace, configmap("new", b="1"))
        wait_for(lambda: recorder.of("new") != [], what="ADDED")
        assert recorder.of("new") == [(ADDED, created.metadata.resource_version)]
        updated = core.patch_namespaced_config_map("new", namespace, {"data": {"b": "2"}})
        wait_for(lambda: len(recorder.of("new")) == 2, what="MODIFIED")
        assert recorder.of("new")[1] == (MODIFIED, updated.metadata.resource_version)
        cached = informer.cache.get_by_key(f"{namespace}/new")
        assert cached is not None and cached.data == {"b": "2"}
        core.delete_namespaced_config_map("new", namespace)
        wait_for(lambda: len(recorder.of("new")) == 3, what="DELETED")
        assert recorder.of("new")[2][0] == DELETED
        assert informer.cache.get_by_key(f"{namespace}/new") is None
        assert sorted(informer.cache.list_keys()) == [f"{namespace}/existing"]
    finally:
        informer.stop()


def test_informer_resyncs(core: client.CoreV1Api, informer_namespace: str) -> None:
    """With a resync period the informer's watch asks for timeoutSeconds; when the server ends it,
    the informer relists, and every cached object comes round again as MODIFIED (same version)."""
    namespace = informer_namespace
    first = core.create_namespaced_config_map(namespace, configmap("steady"))
    informer = SharedInformer(core.list_namespaced_config_map, namespace=namespace, resync_period=1)
    recorder = Recorder(informer)
    informer.start()
    try:
        wait_for(lambda: len(recorder.of("steady")) >= 3, timeout=15, what="two resyncs")
        kinds = [kind for kind, _ in recorder.of("steady")]
        assert kinds[0] == ADDED and set(kinds[1:]) == {MODIFIED}
        assert {rv for _, rv in recorder.of("steady")} == {first.metadata.resource_version}
        # Changes between resyncs still arrive through the watch.
        core.create_namespaced_config_map(namespace, configmap("late"))
        wait_for(lambda: recorder.of("late") != [], what="ADDED after a resync")
        assert recorder.of("late")[0][0] == ADDED
        core.delete_namespaced_config_map("steady", namespace)
        wait_for(lambda: any(kind == DELETED for kind, _ in recorder.of("steady")), what="DELETED")
        assert informer.cache.get_by_key(f"{namespace}/steady") is None
    finally:
        informer.stop()


# ------------------------------------------------------------------ utils.create_from_yaml

SERVICE_AND_CONFIGMAP = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
"""


def already_exists(resource: str, name: str, group: str = "") -> str:
    """kube-apiserver's 409 body for an existing object, byte for byte (Go's json.Encoder adds the
    newline)."""
    qualified = f"{resource}.{group}" if group else resource
    group_field = f'"group":"{group}",' if group else ""
    return ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            f'"message":"{qualified} \\"{name}\\" already exists","reason":"AlreadyExists",'
            f'"details":{{"name":"{name}",{group_field}"kind":"{resource}"}},"code":409}}\n')


def test_create_from_yaml_service_and_configmap(server: ServerProcess, core: client.CoreV1Api,
                                                tmp_path: Path) -> None:
    namespace = make_namespace(core, "from-yaml")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(SERVICE_AND_CONFIGMAP)
    created = utils.create_from_yaml(api_client(server), str(manifest), namespace=namespace)
    assert [type(objs[0]).__name__ for objs in created] == ["V1Service", "V1ConfigMap"]
    service = core.read_namespaced_service("web", namespace)
    assert service.spec.cluster_ip and service.spec.ports[0].target_port == 8080
    assert core.read_namespaced_config_map("web-config", namespace).data == {"greeting": "hello"}

    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_yaml(api_client(server), str(manifest), namespace=namespace)
    assert [e.status for e in failed.value.api_exceptions] == [409, 409]
    assert str(failed.value) == ("Error from server (Conflict): " + already_exists("services", "web")
                                 + "Error from server (Conflict): " + already_exists("configmaps", "web-config"))


RC_ROLE_BINDING = """\
apiVersion: v1
kind: ReplicationController
metadata:
  name: seed
spec:
  replicas: 1
  selector:
    app: seed
  template:
    metadata:
      labels:
        app: seed
    spec:
      containers:
      - name: c
        image: busybox
---
apiVersion: v1
kind: Service
metadata:
  name: seed
spec:
  selector:
    app: seed
  ports:
  - port: 80
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader
subjects:
- kind: ServiceAccount
  name: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: reader
"""


def _discovery_serves(group: str, version: str, *plurals: str) -> bool:
    """Whether the server's discovery document (built in-process from the same catalog the
    server serves) lists ``plurals``: the kinds other helpers add may not be merged yet."""
    listed = Discovery(ResourceRegistry(BUILTIN_RESOURCES)).resource_list(group, version)
    names = {r["name"] for r in (listed or {}).get("resources", [])}
    return set(plurals) <= names


@pytest.mark.skipif(not (_discovery_serves("", "v1", "replicationcontrollers")
                         and _discovery_serves("rbac.authorization.k8s.io", "v1", "roles", "rolebindings")),
                    reason="ReplicationController or Role/RoleBinding are not served yet")
def test_create_from_yaml_rc_service_role_binding(server: ServerProcess, core: client.CoreV1Api,
                                                  tmp_path: Path) -> None:
    namespace = make_namespace(core, "seed-yaml")
    manifest = tmp_path / "seed.yaml"
    manifest.write_text(RC_ROLE_BINDING)
    created = utils.create_from_yaml(api_client(server), str(manifest), namespace=namespace)
    assert [type(objs[0]).__name__ for objs in created] == [
        "V1ReplicationController", "V1Service", "V1Role", "V1RoleBinding"]
    assert core.read_namespaced_replication_controller("seed", namespace).spec.replicas == 1
    rbac = client.RbacAuthorizationV1Api(api_client(server))
    assert rbac.read_namespaced_role_binding("reader", namespace).role_ref.name == "reader"

    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_yaml(api_client(server), str(manifest), namespace=namespace)
    assert str(failed.value) == "".join("Error from server (Conflict): " + body for body in (
        already_exists("replicationcontrollers", "seed"), already_exists("services", "seed"),
        already_exists("roles", "reader", "rbac.authorization.k8s.io"),
        already_exists("rolebindings", "reader", "rbac.authorization.k8s.io")))
