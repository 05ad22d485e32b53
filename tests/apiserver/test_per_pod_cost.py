"""What the API server does per pod in issue 16's density run: the work counted, not timed.

In process: the store's watch fan-out (:class:`WatchHub`) under the registry's watch and the HTTP
watch stream, with the events published by hand.

- A kubelet's watch (``fieldSelector=spec.nodeName=<node>``) decides each event from the field the
  fan-out already read, and serves the shared stored bytes: no object is decoded for it (it used
  to decode the event's object and its previous one, then encode the event again, per watcher).
- kube-scheduler's watch (``status.phase!=Succeeded,status.phase!=Failed``), and any field selector
  on plain string fields, decides from the stored bytes and decodes only an entry that holds a
  value its terms name; the bytes never decide otherwise than decoding would.
- Events already queued for a watcher go out in one write, not one write each.

And costs of a write: a status merge patch copies the pod once, not twice; a generated name
suffix draws no system randomness; a managedFields key is encoded once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.watch_fanout import HubStore
from pilothouse.apiserver import admission, fieldindex, rest
from pilothouse.apiserver.objects import encode_for_store
from pilothouse.apiserver.registry import ListOptions, ResourceStorage, WriteContext
from pilothouse.machinery import meta
from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.machinery.patch import fieldset, merge
from pilothouse.machinery.selectors import parse_field_selector
from pilothouse.store.interface import EventType, KeyValue, WatchEvent
from pilothouse.store.sqlite import SQLiteStore
from pilothouse.store.watchhub import WatchHub
from tests.apiserver.costhelpers import count_decodes, watch_server

PODS = next(r for r in BUILTIN_RESOURCES if r.plural == "pods" and not r.group)


def _pod(name: str, node: str, phase: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": "u-" + name},
            "spec": spec, "status": {"phase": phase}}


class Pods:
    """Writes of pods as the store would publish them: each event with its previous entry."""

    def __init__(self, hub: WatchHub) -> None:
        self.hub = hub
        self.revision = hub.revision
        self.current: dict[str, KeyValue] = {}

    def event(self, name: str, node: str = "", phase: str = "Pending", delete: bool = False) -> WatchEvent:
        key = PODS.key("default", name)
        self.revision += 1
        revision = self.revision
        prev = self.current.get(key)
        if delete:
            assert prev is not None
            del self.current[key]
            return WatchEvent(EventType.DELETE, KeyValue(key, prev.value, prev.create_revision, revision), prev)
        kv = KeyValue(key, encode_for_store(_pod(name, node, phase)),
                      prev.create_revision if prev else revision, revision)
        self.current[key] = kv
        return WatchEvent(EventType.PUT, kv, prev)

    def publish(self, *args: Any, **kwargs: Any) -> None:
        self.hub.publish([self.event(*args, **kwargs)])


async def _collect(storage: ResourceStorage, selector: str, into: list[tuple[str, bytes]]) -> None:
    options = ListOptions(field_selector=parse_field_selector(selector))
    async for event in storage.watch(None, options, send_initial=False):
        into.append((event.type, event.json))


async def test_a_node_watch_is_served_without_decoding_objects(hub: WatchHub,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    storage = ResourceStorage(PODS, HubStore(hub), admission.NamespaceLifecycle(HubStore(hub)))  # type: ignore[arg-type]
    decoded = count_decodes(monkeypatch)
    n1: list[tuple[str, bytes]] = []
    everything: list[tuple[str, bytes]] = []
    tasks = [asyncio.create_task(_collect(storage, "spec.nodeName=n1", n1)),
             asyncio.create_task(_collect(storage, "", everything))]
    await asyncio.sleep(0.05)
    pods = Pods(hub)
    pods.publish("a")                        # created, unscheduled: not n1's
    pods.publish("a", "n1")                  # bound to n1: ADDED for n1
    pods.publish("a", "n1", "Running")       # MODIFIED
    pods.publish("b", "n2")                  # another node's: not n1's
    pods.publish("a", "n2", "Running")       # off n1 (not what pods do, but a field can change): DELETED
    pods.publish("c", "n1")                  # ADDED
    pods.publish("c", delete=True)           # DELETED
    pods.publish("b", "n2", "Running")       # not n1's
    for _ in range(100):
        if len(everything) == 8 and len(n1) == 5:
            break
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert [t for t, _ in n1] == ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"]
    # The same bytes the unfiltered watch got for those events (revisions 2, 3, 5, 6, 7).
    by_revision = {orjson.loads(j)["metadata"]["resourceVersion"]: j for _, j in everything}
    assert [orjson.loads(j)["metadata"]["resourceVersion"] for _, j in n1] == ["2", "3", "5", "6", "7"]
    assert all(j == by_revision[orjson.loads(j)["metadata"]["resourceVersion"]] for _, j in n1)
    assert orjson.loads(n1[2][1])["spec"]["nodeName"] == "n2"  # DELETED carries the object as it left
    assert decoded == []  # before: the event's object and its previous one, for each of n1's events


async def test_a_field_the_reader_cannot_find_falls_back_to_decoding(hub: WatchHub) -> None:
    """Exactness where the field is absent from the served fields: an unindexed selector value
    (``spec.nodeName=``, the unscheduled pods) still matches what decoding decides."""
    storage = ResourceStorage(PODS, HubStore(hub), admission.NamespaceLifecycle(HubStore(hub)))  # type: ignore[arg-type]
    unscheduled: list[tuple[str, bytes]] = []
    task = asyncio.create_task(_collect(storage, "spec.nodeName=", unscheduled))
    await asyncio.sleep(0.05)
    pods = Pods(hub)
    pods.publish("a")
    pods.publish("a", "n1")
    for _ in range(100):
        if len(unscheduled) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [t for t, _ in unscheduled] == ["ADDED", "DELETED"]


async def test_the_schedulers_watch_decodes_only_what_its_bytes_leave_open(
        hub: WatchHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """kube-scheduler's pod informer (``status.phase!=Succeeded,status.phase!=Failed``) and a mixed
    selector decide from the stored bytes: an entry is decoded only when it holds a value its terms
    name (then matched exactly), and the events are the unfiltered watch's bytes. Before, every event
    decoded its object and the one it replaced, then encoded the event again."""
    storage = ResourceStorage(PODS, HubStore(hub), admission.NamespaceLifecycle(HubStore(hub)))  # type: ignore[arg-type]
    decoded = count_decodes(monkeypatch)
    live: list[tuple[str, bytes]] = []
    running_on_n1: list[tuple[str, bytes]] = []
    everything: list[tuple[str, bytes]] = []
    tasks = [asyncio.create_task(_collect(storage, "status.phase!=Succeeded,status.phase!=Failed", live)),
             asyncio.create_task(_collect(storage, "spec.nodeName=n1,status.phase=Running", running_on_n1)),
             asyncio.create_task(_collect(storage, "", everything))]
    await asyncio.sleep(0.05)
    pods = Pods(hub)
    pods.publish("a")                         # 1: live ADDED
    pods.publish("a", "n1")                   # 2: live MODIFIED
    pods.publish("a", "n1", "Running")        # 3: live MODIFIED; running_on_n1 ADDED
    pods.publish("b", "n2", "Running")        # 4: live ADDED (another node)
    pods.publish("a", "n1", "Succeeded")      # 5: live DELETED; running_on_n1 DELETED
    pods.publish("a", delete=True)            # 6: not live any more: nothing
    pods.publish("b", delete=True)            # 7: live DELETED
    for _ in range(100):
        if len(everything) == 7 and len(live) == 6 and len(running_on_n1) == 2:
            break
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert [t for t, _ in live] == ["ADDED", "MODIFIED", "MODIFIED", "ADDED", "DELETED", "DELETED"]
    assert [t for t, _ in running_on_n1] == ["ADDED", "DELETED"]
    by_revision = {orjson.loads(j)["metadata"]["resourceVersion"]: j for _, j in everything}
    for _, event_json in live + running_on_n1:
        assert event_json == by_revision[orjson.loads(event_json)["metadata"]["resourceVersion"]]
    # Decoded: revision 3 for running_on_n1 ("Running" and "n1" are both in its bytes), as the event
    # and as revision 5's previous entry; revision 5 and the deletion 6, whose bytes hold
    # "Succeeded", for the live watch. The bytes settle the 16 other entries the two watches weighed.
    assert sorted(decoded) == [3, 3, 5, 6]


@pytest.fixture
async def watch_client(hub: WatchHub) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with watch_server(hub, PODS, "/pods") as client:
        yield client


async def test_queued_events_go_out_in_one_write(hub: WatchHub, watch_client: TestClient[web.Request, web.Application],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real = web.StreamResponse.write

    async def counting(self: web.StreamResponse, data: bytes) -> None:
        writes.append(data.count(b"\n"))
        await real(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", counting)
    pods = Pods(hub)
    pods.publish("first")
    response = await watch_client.get("/pods", params={"timeoutSeconds": "30", "resourceVersion": "1"})
    assert response.status == 200
    await asyncio.sleep(0.05)
    hub.publish([pods.event(f"p{i}") for i in range(50)])  # one group commit's worth
    lines: list[dict[str, Any]] = []
    while len(lines) < 50:
        lines.append(orjson.loads(await asyncio.wait_for(response.content.readline(), 10)))
    response.close()
    # Every event, in order, each its own line.
    assert [line["object"]["metadata"]["name"] for line in lines] == [f"p{i}" for i in range(50)]
    assert [line["type"] for line in lines] == ["ADDED"] * 50
    assert sum(writes) == 50
    assert len(writes) < 10, writes  # before: 50 writes, one per event


async def test_a_status_merge_patch_does_not_copy_the_pod_again(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-modify-write hands a merge patch its own clone of the stored pod; the patch used
    to deep-copy it once more (``copy.deepcopy``, a twentieth of the server's CPU in the density
    run). The stored object is still untouched and the patch applied."""
    copied: list[Any] = []
    real = merge.copy.deepcopy

    def counting(value: Any, *args: Any) -> Any:
        if isinstance(value, dict) and "spec" in value:
            copied.append(value)
        return real(value, *args)

    monkeypatch.setattr(merge.copy, "deepcopy", counting)
    async with SQLiteStore(tmp_path / "state.db", compact_interval=None) as store:
        await store.create(admission.NAMESPACE_KEY_PREFIX + "default", orjson.dumps(
            {"metadata": {"name": "default"}, "status": {"phase": "Active"}}))
        storage = ResourceStorage(PODS, store, admission.NamespaceLifecycle(store))
        await storage.create("default", _pod("p", "n1", "Pending"), WriteContext(field_manager="test"))
        patch = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
        for _ in range(2):  # the second time, a write that changes nothing
            patched, _ = await rest.apply_patch(storage, "default", "p", "application/merge-patch+json", patch,
                                                WriteContext(field_manager="kubelet"), "status")
        stored = await storage.get("default", "p")
    assert copied == []  # before: the whole pod, once per attempt
    assert stored["status"]["phase"] == "Running" and stored["spec"]["nodeName"] == "n1"
    assert stored["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert patched["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert patch == {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def test_name_suffixes_draw_no_system_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes draws generated names from math/rand; a system draw per character was a read
    of /dev/urandom each (a pod's token volume name, every pod)."""
    def refused(size: int) -> bytes:
        raise AssertionError("os.urandom read for a name suffix")

    monkeypatch.setattr("os.urandom", refused)
    monkeypatch.setattr("random._urandom", refused)  # what SystemRandom (secrets) reads
    suffixes = {meta.generate_name_suffix() for _ in range(200)}
    assert len(suffixes) > 190  # still random: 27^5 possibilities
    assert all(len(s) == 5 and set(s) <= set("bcdfghjklmnpqrstvwxz2456789") for s in suffixes)


def test_a_forked_child_draws_other_name_suffixes_than_its_parent() -> None:
    """The suffix generator is a PRNG of its own, which the random module does not reseed at fork."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next suffixes, then out without running pytest's teardown
        os.write(write, ",".join(meta.generate_name_suffix() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [meta.generate_name_suffix() for _ in range(20)]
    assert child != parent


def test_a_managed_fields_key_is_encoded_once_and_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[Any] = []
    real = fieldset.json.dumps

    def counting(value: Any, **kwargs: Any) -> str:
        encoded.append(value)
        return str(real(value, **kwargs))

    monkeypatch.setattr(fieldset.json, "dumps", counting)
    ready = fieldset.key({"type": "PodReadyToStartContainers-test"})
    assert [fieldset.serialize_element(ready) for _ in range(3)] == ['k:{"type":"PodReadyToStartContainers-test"}'] * 3
    assert len(encoded) == 1  # before: once per write of the entry
    # True == 1 and 1.0 == 1 in Python: such keys are never taken for one another.
    port = fieldset.serialize_element(fieldset.key({"port": 8123, "on": "x"}))
    assert port == 'k:{"on":"x","port":8123}'
    assert fieldset.serialize_element(fieldset.key({"port": True, "on": "x"})) == 'k:{"on":"x","port":true}'
    assert fieldset.serialize_element(fieldset.key({"port": 8123.0, "on": "x"})) == 'k:{"on":"x","port":8123.0}'
    assert fieldset.serialize_element(fieldset.key({"port": 8123, "on": "x"})) == port


async def test_events_one_at_a_time_start_no_task_each(hub: WatchHub,
                                                       watch_client: TestClient[web.Request, web.Application]) -> None:
    """A kubelet's watch gets its pod's events one at a time, each to an empty queue: waiting for
    the next one (bounded by the watch's timeout) used to start a task per event (``wait_for``)."""
    pods = Pods(hub)
    pods.publish("first")
    response = await watch_client.get("/pods", params={"timeoutSeconds": "30", "resourceVersion": "1"})
    assert response.status == 200
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started: list[str] = []
    default = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        started.append(getattr(coro, "__qualname__", repr(coro)))
        if default is not None:
            return default(loop, coro, **kwargs)  # type: ignore[arg-type]
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)  # type: ignore[arg-type]
    try:
        for i in range(20):
            pods.publish(f"p{i}")
            line = orjson.loads(await asyncio.wait_for(response.content.readline(), 10))
            assert line["object"]["metadata"]["name"] == f"p{i}"
    finally:
        loop.set_task_factory(default)
    response.close()
    # The test's own readline waits start tasks (wait_for, above); the server's loop must start none.
    assert [name for name in started if "readline" not in name] == [], started


@pytest.mark.parametrize("selector", [
    "status.phase!=Succeeded,status.phase!=Failed", "status.phase=Running", "spec.nodeName=n1,status.phase=Running",
    "spec.schedulerName!=default-scheduler", "status.phase!=Running,spec.restartPolicy=Never",
])
def test_the_bytes_never_decide_otherwise_than_decoding(selector: str) -> None:
    """Where the byte decider answers, decoding agrees: the value elsewhere in the object (a label,
    an annotation, a container's name), escaped, absent, null, or bytes not laid out by the store."""
    fields = parse_field_selector(selector)
    decide = fieldindex.byte_decider(PODS, fields)
    assert decide is not None
    pods = [_pod("a", "", "Running"), _pod("b", "n1", "Succeeded"), _pod("c", "n1", "Running")]
    decoy = _pod("d", "n2", "Pending")
    decoy["metadata"]["labels"] = {"phase": "Succeeded", "nodeName": "n1"}
    decoy["metadata"]["annotations"] = {"note": '{"phase":"Running","restartPolicy":"Never"}'}
    decoy["spec"]["containers"][0]["name"] = "Failed"
    odd = _pod("e", "", "")
    odd["spec"].update(nodeName=None, restartPolicy="Never", schedulerName="other")
    odd["status"] = {"phase": None}
    entries = [encode_for_store(pod) for pod in [*pods, decoy, odd]]
    entries.append(orjson.dumps(_pod("f", "n1", "Running"), option=orjson.OPT_INDENT_2))  # not the store's layout
    settled = 0
    for value in entries:
        exact = fields.matches(PODS.strategy.selectable_fields(orjson.loads(value)))
        decided = decide(KeyValue("/registry/pods/default/x", value, 1, 1))
        assert decided in (None, exact), (selector, value)
        settled += decided is not None
    assert settled >= 2  # the bytes do settle most entries


def test_selectors_the_bytes_cannot_decide_have_no_decider() -> None:
    for selector in ("spec.nodeName=", "status.podIP=10.0.0.1", "spec.hostNetwork=false", "status.phase!="):
        assert fieldindex.byte_decider(PODS, parse_field_selector(selector)) is None, selector
