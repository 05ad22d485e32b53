"""The read and watch paths at scale keep their semantics (issue 16), against a real server process.

The store hands a pod event only to the watchers of the pod's old and new node (and to the unfiltered
ones); these tests check that a node-filtered watch still sees exactly what Kubernetes sends: a pod
bound to its node as ADDED, one leaving the filter as DELETED, in revision order, without gaps, live
and resumed from an older resourceVersion; and that paged lists stay consistent while pods change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch

from tests.conftest import ServerProcess, create_default_service_account, start_server_process

NAMESPACE = "default"


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No scheduler or controllers: every pod change in these tests is one the test made."""
    proc = start_server_process(tmp_path_factory.mktemp("scalepath"),
                                extra=("--disable", "scheduler,controller-manager"))
    create_default_service_account(proc.url)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def core(bare_server: ServerProcess) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(bare_server.kubeconfig)))


def pod(name: str, node: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def bind(core: client.CoreV1Api, name: str, node: str) -> None:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    # The client's V1Binding model cannot read the Status a binding answers with: raw response.
    core.create_namespaced_pod_binding(name, NAMESPACE, body, _preload_content=False)


class Recorder:
    """A watch of pods through the official client, in a thread: (type, name, resourceVersion, node)."""

    def __init__(self, core: client.CoreV1Api, resource_version: str, field_selector: str = "") -> None:
        self.events: list[tuple[str, str, int, str]] = []
        self._watch = watch.Watch()
        self._started = threading.Event()
        self._stopped = False
        kwargs: dict[str, Any] = {"resource_version": resource_version, "timeout_seconds": 60,
                                  "_preload_content": True}
        if field_selector:
            kwargs["field_selector"] = field_selector
        self._thread = threading.Thread(target=self._run, args=(core, kwargs), daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self, core: client.CoreV1Api, kwargs: dict[str, Any]) -> None:
        self._started.set()
        try:
            for event in self._watch.stream(core.list_namespaced_pod, NAMESPACE, **kwargs):
                obj = event["object"]
                self.events.append((event["type"], obj.metadata.name, int(obj.metadata.resource_version),
                                    obj.spec.node_name or ""))
        except urllib3.exceptions.ProtocolError:
            # A stopped watch stays blocked in its read until the server goes at the module's end,
            # which cuts the stream: expected then. Before stop() it is the test's failure to see.
            if not self._stopped:
                raise

    def until(self, count: int, timeout: float = 20) -> list[tuple[str, str, int, str]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.events)

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


def current_rv(core: client.CoreV1Api) -> str:
    return str(core.list_namespaced_pod(NAMESPACE, limit=1).metadata.resource_version)


def expected_for_node(events: list[tuple[str, str, int, str]], node: str) -> list[tuple[str, str, int]]:
    """What a ``spec.nodeName=<node>`` watch must send, derived from the unfiltered stream the way
    kube-apiserver's filtered watcher decides: the old and the new object each matched or not."""
    last_node: dict[str, str] = {}
    out: list[tuple[str, str, int]] = []
    for kind, name, rv, now in events:
        was = last_node.get(name)
        if kind == "DELETED":
            if now == node:
                out.append(("DELETED", name, rv))
            last_node.pop(name, None)
            continue
        last_node[name] = now
        if now == node:
            out.append(("MODIFIED" if was == node else "ADDED", name, rv))
        elif was == node:
            out.append(("DELETED", name, rv))
    return out


def test_node_filtered_watch_sees_bind_as_added_and_leaving_as_deleted(core: client.CoreV1Api) -> None:
    start = current_rv(core)
    everything = Recorder(core, start)
    on_n1 = Recorder(core, start, "spec.nodeName=n1")
    on_n2 = Recorder(core, start, "spec.nodeName=n2")
    unassigned = Recorder(core, start, "spec.nodeName=")  # the scheduler's watch
    by_name = Recorder(core, start, "metadata.name=mover")
    try:
        core.create_namespaced_pod(NAMESPACE, pod("mover"))
        core.create_namespaced_pod(NAMESPACE, pod("placed", node="n2"))
        bind(core, "mover", "n1")
        core.patch_namespaced_pod("mover", NAMESPACE, {"metadata": {"labels": {"step": "two"}}})
        core.delete_namespaced_pod("mover", NAMESPACE, grace_period_seconds=0)
        core.delete_namespaced_pod("placed", NAMESPACE, grace_period_seconds=0)

        all_events = everything.until(6)
        assert [(k, n) for k, n, _, _ in all_events] == [
            ("ADDED", "mover"), ("ADDED", "placed"), ("MODIFIED", "mover"), ("MODIFIED", "mover"),
            ("DELETED", "mover"), ("DELETED", "placed")]
        rv = {i: all_events[i][2] for i in range(6)}
        assert [e[:3] for e in on_n1.until(3)] == [
            ("ADDED", "mover", rv[2]), ("MODIFIED", "mover", rv[3]), ("DELETED", "mover", rv[4])]
        assert [e[:3] for e in on_n2.until(2)] == [("ADDED", "placed", rv[1]), ("DELETED", "placed", rv[5])]
        assert [e[:3] for e in unassigned.until(2)] == [("ADDED", "mover", rv[0]), ("DELETED", "mover", rv[2])]
        assert [e[:2] for e in by_name.until(4)] == [
            ("ADDED", "mover"), ("MODIFIED", "mover"), ("MODIFIED", "mover"), ("DELETED", "mover")]
        time.sleep(0.3)  # nothing more arrives for anyone
        assert (len(on_n1.events), len(on_n2.events), len(unassigned.events), len(by_name.events)) == (3, 2, 2, 4)
    finally:
        for recorder in (everything, on_n1, on_n2, unassigned, by_name):
            recorder.stop()


def test_node_watches_match_the_unfiltered_stream_live_and_resumed(core: client.CoreV1Api) -> None:
    """Many pods over a few nodes, bound, changed and deleted: each node's watch (live, and one
    resumed from the starting resourceVersion after the fact) is exactly the unfiltered stream seen
    through the node's filter, in revision order."""
    nodes = [f"node-{i}" for i in range(4)]
    start = current_rv(core)
    everything = Recorder(core, start)
    live = {node: Recorder(core, start, f"spec.nodeName={node}") for node in nodes}
    try:
        names = [f"churn-{i}" for i in range(24)]
        for i, name in enumerate(names):
            core.create_namespaced_pod(NAMESPACE, pod(name, node=nodes[0] if i % 6 == 0 else ""))
        for i, name in enumerate(names):
            if i % 6:
                bind(core, name, nodes[i % len(nodes)])
        for name in names[::3]:
            core.patch_namespaced_pod(name, NAMESPACE, {"metadata": {"labels": {"touched": "yes"}}})
        for name in names[::2]:
            core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
        total = len(names) + sum(1 for i in range(len(names)) if i % 6) + len(names[::3]) + len(names[::2])
        all_events = everything.until(total)
        assert len(all_events) == total
        revisions = [rv for _, _, rv, _ in all_events]
        assert revisions == sorted(set(revisions))
        resumed = {node: Recorder(core, start, f"spec.nodeName={node}") for node in nodes}
        try:
            for node in nodes:
                expected = expected_for_node(all_events, node)
                assert expected, node
                assert [e[:3] for e in live[node].until(len(expected))] == expected, node
                assert [e[:3] for e in resumed[node].until(len(expected))] == expected, node
        finally:
            for recorder in resumed.values():
                recorder.stop()
    finally:
        everything.stop()
        for recorder in live.values():
            recorder.stop()


def test_paged_list_is_consistent_while_pods_change(core: client.CoreV1Api) -> None:
    """Every page reads at the first page's revision: pods created after it are absent, pods deleted
    or changed after it are there as they were, and no name is returned twice."""
    names = [f"page-{i:03d}" for i in range(40)]
    for i, name in enumerate(names):
        core.create_namespaced_pod(NAMESPACE, pod(name, node="pager" if i % 2 else "", labels={"set": "paging"}))
    first = core.list_namespaced_pod(NAMESPACE, label_selector="set=paging", limit=7)
    revision = int(first.metadata.resource_version)
    seen = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    changed = 0
    while token:
        # Writes between pages: a new pod, a deleted one, a changed one.
        core.create_namespaced_pod(NAMESPACE, pod(f"page-late-{changed}", labels={"set": "paging"}))
        core.delete_namespaced_pod(names[-1 - changed], NAMESPACE, grace_period_seconds=0)
        core.patch_namespaced_pod(names[changed], NAMESPACE, {"metadata": {"labels": {"v": str(changed)}}})
        changed += 1
        page = core.list_namespaced_pod(NAMESPACE, label_selector="set=paging", limit=7, _continue=token)
        assert int(page.metadata.resource_version) == revision
        assert len(page.items) <= 7
        for item in page.items:
            assert int(item.metadata.resource_version) <= revision
            assert "v" not in (item.metadata.labels or {})
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert changed >= 5
    assert seen == names  # key order, each once, none created later, none lost to a later delete

    # The same with a field selector: only the node's pods, still one revision throughout.
    filtered = []
    page = core.list_namespaced_pod(NAMESPACE, field_selector="spec.nodeName=pager", limit=4)
    revision = int(page.metadata.resource_version)
    while True:
        filtered += [p.metadata.name for p in page.items]
        assert all(p.spec.node_name == "pager" for p in page.items)
        if not page.metadata._continue:
            break
        core.create_namespaced_pod(NAMESPACE, pod(f"page-zlate-{len(filtered)}", node="pager"))
        page = core.list_namespaced_pod(NAMESPACE, field_selector="spec.nodeName=pager", limit=4,
                                        _continue=page.metadata._continue)
        assert int(page.metadata.resource_version) == revision
    deleted = {names[-1 - k] for k in range(changed)}
    assert filtered == [n for i, n in enumerate(names) if i % 2 and n not in deleted]


def test_kubectl_chunked_get_lists_every_pod_once(bare_server: ServerProcess, core: client.CoreV1Api,
                                                  tmp_path: Path) -> None:
    for i in range(12):
        core.create_namespaced_pod(NAMESPACE, pod(f"chunk-{i:02d}", labels={"set": "chunk"}))
    out = bare_server.kubectl("get", "pods", "-l", "set=chunk", "--chunk-size=5", "-o",
                              "custom-columns=NAME:.metadata.name", "--no-headers").stdout.split()
    assert out == [f"chunk-{i:02d}" for i in range(12)]
    table = bare_server.kubectl("get", "pods", "-l", "set=chunk", "--chunk-size=5").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "READY"]
    assert [line.split()[0] for line in table[1:]] == [f"chunk-{i:02d}" for i in range(12)]


def test_field_selected_lists_narrowed_before_decoding_stay_exact(core: client.CoreV1Api) -> None:
    """Lists by metadata.name and spec.nodeName skip objects by their key or bytes first; what they
    return is still exactly the selector's: no suffix match, no match inside another field."""
    core.create_namespaced_pod(NAMESPACE, pod("exact-a1", node="exact-node"))
    core.create_namespaced_pod(NAMESPACE, pod("a1", node="exact-node-2"))
    decoy = pod("exact-decoy")
    decoy["metadata"]["annotations"] = {"nodeName": "exact-node"}  # the bytes, not the field
    core.create_namespaced_pod(NAMESPACE, decoy)
    by_name = core.list_pod_for_all_namespaces(field_selector="metadata.name=a1")
    assert [p.metadata.name for p in by_name.items] == ["a1"]
    on_node = core.list_namespaced_pod(NAMESPACE, field_selector="spec.nodeName=exact-node")
    assert [p.metadata.name for p in on_node.items] == ["exact-a1"]
    not_on = core.list_namespaced_pod(NAMESPACE, field_selector="spec.nodeName!=exact-node,metadata.name=exact-decoy")
    assert [p.metadata.name for p in not_on.items] == ["exact-decoy"]
