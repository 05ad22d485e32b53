"""``pilothouse server --event-ttl``: Events (core/v1 and events.k8s.io/v1, one storage) expire that
long after their last write, as kube-apiserver's do, over SQLite and over etcd; other kinds never do.
Before, nothing expired an Event and the soak's kv table grew by ~0.75 MB a minute (issue 15)."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.conftest import ServerProcess, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary

TTL = 6  # seconds: long enough to renew an Event halfway through on a loaded machine
NS = "default"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    flags = ("--disable", "scheduler,controller-manager", "--event-ttl", f"{TTL}s")
    if request.param == "sqlite":
        proc = start_server_process(tmp_path_factory.mktemp("server"), extra=flags)
        yield proc
        proc.stop()
        return
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (apt-get install etcd-server)")
    with EtcdCluster(1, base_dir=tmp_path_factory.mktemp("etcd")) as etcd:
        proc = start_server_process(tmp_path_factory.mktemp("server"),
                                    extra=(*flags, "--datastore-endpoint", etcd.endpoint))
        try:
            yield proc
        finally:
            proc.stop()


def core_event(name: str) -> client.CoreV1Event:
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=name), reason="Tested", message="m", type="Normal", count=1,
        involved_object=client.V1ObjectReference(kind="ConfigMap", name="kept", namespace=NS))


def events_v1_event(name: str) -> client.EventsV1Event:
    return client.EventsV1Event(
        metadata=client.V1ObjectMeta(name=name), event_time=datetime.datetime.now(datetime.UTC),
        reporting_controller="tests/event-ttl", reporting_instance="tests-1", action="Test", reason="Tested",
        type="Normal", regarding=client.V1ObjectReference(kind="ConfigMap", name="kept", namespace=NS))


def exists(read: object, name: str) -> bool:
    try:
        read(name, NS)  # type: ignore[operator]
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def wait_gone(core: client.CoreV1Api, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while exists(core.read_namespaced_event, name):
        assert time.monotonic() < deadline, f"Event {name} still there after {timeout} s"
        time.sleep(0.2)


def test_events_expire_after_their_last_write_and_other_kinds_stay(server: ServerProcess) -> None:
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    core, events = client.CoreV1Api(api), client.EventsV1Api(api)
    start = core.list_namespaced_event(NS).metadata.resource_version
    deleted: list[str] = []

    def follow() -> None:
        # The official client's watch, from the list's resourceVersion.
        for change in watch.Watch().stream(core.list_namespaced_event, NS, resource_version=start,
                                           timeout_seconds=60):
            if change["type"] == "DELETED":
                deleted.append(change["object"].metadata.name)
            if len(deleted) == 3:
                return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept")))
    core.create_namespaced_event(NS, core_event("renewed"))
    core.create_namespaced_event(NS, core_event("plain"))
    events.create_namespaced_event(NS, events_v1_event("plain-v1"))
    time.sleep(TTL / 2)
    # A series count bump renews the Event: every write carries the TTL anew.
    core.patch_namespaced_event("renewed", NS, {"count": 2})
    wait_gone(core, "plain")
    wait_gone(core, "plain-v1")
    renewed = core.read_namespaced_event("renewed", NS)  # the first write's TTL has run out, not the patch's
    assert renewed.count == 2
    assert server.kubectl("get", "events", "-o", "name").stdout.split() == ["event/renewed"]
    wait_gone(core, "renewed")
    watcher.join(timeout=30)
    assert sorted(deleted) == ["plain", "plain-v1", "renewed"]
    assert server.kubectl("get", "events", "-o", "name").stdout.strip() == ""
    assert exists(core.read_namespaced_config_map, "kept")


def test_bad_event_ttl_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        start_server_process(tmp_path, extra=("--event-ttl", "an hour"))
    assert "Invalid value for '--event-ttl'" in (tmp_path / "server.log").read_text()
