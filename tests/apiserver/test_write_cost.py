"""What a write costs the API server beyond its own steps (issue 16, helper ``writecost``): the work
counted, not timed.

- The SQLite writer thread is woken once per loop iteration's writes, not once per write: the
  writes submitted during one iteration reach it as one queue item, at the start of the next
  iteration (so a lone write waits one turn of the loop at most), in order, and a group still holds
  at most ``MAX_GROUP`` of them.
- A write is answered from the bytes it stored, with its resourceVersion spliced in, not by
  decoding what it wrote and encoding that again: a create decodes nothing, a PUT only the object
  it replaces, a binding (answered with a Status) only the pod it changes. The
  answer is byte for byte the old one; a kind whose storage hooks read the written object still
  decodes it for them.
"""

from __future__ import annotations

import asyncio
import queue
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from pilothouse.apiserver import rest, strictbody
from pilothouse.apiserver.objects import decode_stored, encode_for_store, encode_for_store_cut, written_json
from pilothouse.apiserver.registry import ResourceStorage, StorageHooks
from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.machinery.meta import Object
from pilothouse.store import _sqlite_writer
from pilothouse.store._sqlite_writer import Op, Writer
from pilothouse.store.interface import KeyValue, UnavailableError
from pilothouse.store.sqlite import SQLiteStore
from tests.apiserver.costhelpers import count_decodes, pods_rest


class _CountingQueue(queue.SimpleQueue[object]):
    """The writer's queue, counting what is put in it: each put wakes the writer thread."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        self.puts += 1
        super().put(item, block, timeout)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite_writer, "queue", types.SimpleNamespace(SimpleQueue=_CountingQueue,
                                                                       Empty=queue.Empty))


def _writer(store: SQLiteStore) -> tuple[Writer, _CountingQueue]:
    writer = store._writer
    assert writer is not None and isinstance(writer._queue, _CountingQueue)
    return writer, writer._queue


def _op(key: str, value: bytes = b"v") -> Op:
    return Op("create", key, value, 0, asyncio.get_running_loop().create_future())


async def test_one_loop_iterations_writes_wake_the_writer_once(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        before = await store.current_revision()
        # 50 requests' writes in one iteration (the tasks' first steps all run in the next one).
        kvs = await asyncio.gather(*(store.create(f"/k/{i:02}", b"v%d" % i) for i in range(50)))
        # Before: 50 puts, one per write, and as many wake-ups of the thread.
        assert handed.puts == 1
        assert writer.commits == 1 and writer.writes == 50
        # In the order submitted.
        assert [kv.mod_revision for kv in kvs] == list(range(before + 1, before + 51))


async def test_a_lone_write_reaches_the_writer_on_the_next_loop_turn(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        op = _op("/k/lone")
        writer.submit(op)
        assert handed.puts == 0  # buffered for the rest of this iteration
        await asyncio.sleep(0)  # one turn of the loop
        assert handed.puts == 1
        kv = await op.future
        assert isinstance(kv, KeyValue) and kv.value == b"v"


async def test_stop_commits_what_was_submitted_before_it_and_refuses_the_rest(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, _ = _writer(store)
        accepted = [_op(f"/k/{i}") for i in range(3)]
        for op in accepted:
            writer.submit(op)
        await writer.stop()  # in the same iteration: the buffered ops go ahead of the stop marker
        assert [isinstance(await op.future, KeyValue) for op in accepted] == [True, True, True]
        late = _op("/k/late")
        writer.submit(late)
        with pytest.raises(UnavailableError):
            await late.future
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as reopened:
        assert [kv.key for kv in (await reopened.list("/k/")).items] == ["/k/0", "/k/1", "/k/2"]


async def test_a_group_holds_at_most_max_group_writes(tmp_path: Path, counted: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite_writer, "MAX_GROUP", 3)
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        before = await store.current_revision()
        kvs = await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(10)))
        assert handed.puts == 1  # one item of ten, committed as groups of 3, 3, 3 and 1
        assert writer.commits == 4 and writer.writes == 10
        assert [kv.mod_revision for kv in kvs] == list(range(before + 1, before + 11))


# --------------------------------------------------------------- answers from the stored bytes

PODS = next(r for r in BUILTIN_RESOURCES if r.plural == "pods" and not r.group)
Client = TestClient[web.Request, web.Application]


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {"note": "<web & db>"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["é", "\u2028", "a\"b\\c\n"]}]}}


class _ReadingHooks(StorageHooks):
    """A kind whose hooks look at what was written (as a Service's allocations do)."""

    def __init__(self) -> None:
        self.seen: list[Object] = []

    async def after_write(self, obj: Object) -> None:
        self.seen.append(obj)


async def _as_stored(storage: ResourceStorage, name: str) -> bytes:
    """The old answer: the stored object decoded, then encoded (``codec.json_response``)."""
    return orjson.dumps(await storage.get("default", name), option=orjson.OPT_APPEND_NEWLINE)


async def test_a_write_is_answered_from_the_bytes_it_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pods_rest(tmp_path) as (client, storage):
        decoded = count_decodes(monkeypatch)
        path = "/api/v1/namespaces/default/pods"
        created = await client.post(path, json=_pod("p"), params={"fieldManager": "test"})
        assert created.status == 201, await created.text()
        body = await created.read()
        assert decoded == []  # before: the object it wrote, decoded to answer
        assert body == await _as_stored(storage, "p")  # the same bytes as before

        decoded.clear()
        put = dict(orjson.loads(body), spec={**orjson.loads(body)["spec"], "activeDeadlineSeconds": 30})
        replaced = await client.put(f"{path}/p", json=put, params={"fieldManager": "test"})
        assert replaced.status == 200, await replaced.text()
        assert len(decoded) == 1  # the object it replaces; before: and the one written
        assert await replaced.read() == await _as_stored(storage, "p")

        decoded.clear()
        bound = await client.post(f"{path}/p/binding", json={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "n1"}})
        assert bound.status == 201, await bound.text()
        assert orjson.loads(await bound.read())["kind"] == "Status"
        assert len(decoded) == 1  # the current pod, changed in place (storage-level); before: 3

        decoded.clear()
        patched = await client.patch(f"{path}/p/status", data=orjson.dumps({"status": {"phase": "Running"}}),
                                     headers={"Content-Type": "application/merge-patch+json"},
                                     params={"fieldManager": "kubelet"})
        assert patched.status == 200, await patched.text()
        assert len(decoded) == 2  # before: 3
        answer = await patched.read()
        assert answer == await _as_stored(storage, "p")
        assert orjson.loads(answer)["status"]["phase"] == "Running"
        assert orjson.loads(answer)["spec"]["nodeName"] == "n1"

        # What does not store answers as before: a no-op write and a dry run.
        again = await client.patch(f"{path}/p/status", data=orjson.dumps({"status": {"phase": "Running"}}),
                                   headers={"Content-Type": "application/merge-patch+json"},
                                   params={"fieldManager": "kubelet"})
        assert await again.read() == answer
        dry = await client.post(path, json=_pod("q"), params={"fieldManager": "test", "dryRun": "All"})
        assert dry.status == 201 and orjson.loads(await dry.read())["metadata"]["name"] == "q"
        # A Table is built from the object, decoded for it.
        table = await client.post(path, json=_pod("r"), params={"fieldManager": "test"},
                                  headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        assert table.status == 201 and orjson.loads(await table.read())["kind"] == "Table"


async def test_hooks_that_read_the_written_object_still_get_it(tmp_path: Path) -> None:
    hooks = _ReadingHooks()
    async with pods_rest(tmp_path, hooks) as (client, storage):
        created = await client.post("/api/v1/namespaces/default/pods", json=_pod("p"), params={"fieldManager": "t"})
        assert created.status == 201
        assert [obj["metadata"]["name"] for obj in hooks.seen] == ["p"]
        assert hooks.seen[0] == await storage.get("default", "p")
        assert await created.read() == await _as_stored(storage, "p")
    assert not StorageHooks().reads_written() and hooks.reads_written()


def test_the_answer_splice_is_byte_identical_to_decoding_and_encoding() -> None:
    objects: list[Object] = [
        {"apiVersion": "v1", "kind": "ConfigMap"},  # no metadata: stored as {}
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {}, "data": {}},
        {"data": {"f": "1.5e300", "esc": "\u2028<&>\"\\\n\x01 é"}, "apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "a", "resourceVersion": "5", "labels": {"a": "b"}},
         "x": {"floats": [1.5e300, -0.0, 0.1, 1e-7], "ints": [2**63 - 1, -2**63], "none": None, "t": True}},
    ]
    for obj in objects:
        value, cut = encode_for_store_cut(obj)
        assert value == encode_for_store(obj)
        assert value[cut:cut + 1] == b"}" and b"resourceVersion" not in value
        for revision in (1, 9_876_543_210):
            kv = KeyValue("/k", value, 1, revision)
            assert written_json(value, cut, revision) == orjson.dumps(decode_stored(kv))


async def test_compact_bodies_and_merge_patches_are_not_walked(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape checks walk a body only when C scans cannot settle it: a compact create or update
    (what kubectl and the components send) is neither walked for its depth and duplicates nor, when
    it is a merge patch, its result for depth; a JSON patch's result still is, and a body with a
    duplicate member still gets its warning."""
    walks: list[str] = []
    real_members, real_depth = strictbody.members, rest.check_patched_depth

    def counted_members(value: Any) -> int:
        walks.append("body")
        return real_members(value)

    def counted_depth(value: Any) -> None:
        walks.append("patched")
        real_depth(value)

    monkeypatch.setattr(strictbody, "members", counted_members)
    monkeypatch.setattr(rest, "check_patched_depth", counted_depth)
    async with pods_rest(tmp_path) as (client, _):
        path = "/api/v1/namespaces/default/pods"
        created = await client.post(path, data=orjson.dumps(_pod("p")), params={"fieldManager": "t"},
                                    headers={"Content-Type": "application/json"})
        assert created.status == 201, await created.text()
        merged = await client.patch(f"{path}/p/status", data=orjson.dumps({"status": {"phase": "Running"}}),
                                    headers={"Content-Type": "application/merge-patch+json"})
        assert merged.status == 200, await merged.text()
        strategic = await client.patch(f"{path}/p", data=orjson.dumps({"metadata": {"labels": {"a": "b"}}}),
                                       headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert strategic.status == 200, await strategic.text()
        assert walks == []  # before: a walk of each body, and of both patched pods
        patched = await client.patch(f"{path}/p", data=orjson.dumps([{"op": "add", "path": "/metadata/labels/c",
                                                                       "value": "d"}]),
                                     headers={"Content-Type": "application/json-patch+json"})
        assert patched.status == 200, await patched.text()
        assert walks == ["patched"]
        duplicated = await client.post(path, data=b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q","name":"q"},'
                                       b'"spec":{"containers":[{"name":"c","image":"i"}]}}',
                                       headers={"Content-Type": "application/json"})
        assert duplicated.status == 201, await duplicated.text()
        assert duplicated.headers.getall("Warning") == ['299 - "duplicate field \\"metadata.name\\""']
        assert walks == ["patched", "body"]
