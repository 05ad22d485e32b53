"""The etcd watch's resume logic keeps the Store watch contract (every event once, in revision order)
even when a member breaks etcd's own ordering guarantee.

etcd 3.4/3.5 can replay old events, out of order, on a watch whose start revision is past the serving
member's revision (etcd issues 19487 and 20221): exactly what a resume on a lagging follower after a
leader loss asks for. These tests drive :class:`EtcdWatch` with scripted gateway streams, so the
ordering logic is checked deterministically; tests/store/test_etcd_cluster.py covers a real cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from pilothouse.store._etcd_client import b64
from pilothouse.store._etcd_watch import EtcdWatch
from pilothouse.store.interface import ListResult

Msg = dict[str, Any]


def _put(rev: int) -> Msg:
    return {"type": "PUT", "kv": {"key": b64(f"/p/k{rev}".encode()), "value": b64(b"v"),
                                  "create_revision": str(rev), "mod_revision": str(rev)}}


def _created(member_rev: int) -> Msg:
    return {"created": True, "header": {"revision": str(member_rev)}}


class _ScriptedClient:
    """Stands in for EtcdClient.watch_stream: each call plays the next script; None breaks the stream."""

    def __init__(self, scripts: list[list[Msg | None]]) -> None:
        self.scripts = scripts
        self.starts: list[int] = []
        self.rotations = 0

    def rotate(self) -> None:
        self.rotations += 1

    async def watch_stream(self, body: dict[str, Any]) -> AsyncGenerator[Msg, None]:
        self.starts.append(int(body["create_request"]["start_revision"]))
        script = self.scripts.pop(0) if self.scripts else []
        return self._play(script)

    async def _play(self, script: list[Msg | None]) -> AsyncGenerator[Msg, None]:
        for msg in script:
            if msg is None:
                raise aiohttp.ClientPayloadError("member stopped")
            yield msg
        await asyncio.Event().wait()  # an idle, healthy stream


async def _collect(client: _ScriptedClient, start: int, count: int) -> list[int]:
    async def snapshot(prefix: str) -> tuple[ListResult, int]:
        raise AssertionError("not used: the watch starts from a revision")

    w = EtcdWatch(client, "/p/", start, snapshot=snapshot, on_compacted=lambda r: None,  # type: ignore[arg-type]
                  queue_size=100, unavailable_after=5.0, on_end=lambda w: None)
    revs: list[int] = []
    try:
        async with asyncio.timeout(5):
            async for ev in w:
                revs.append(ev.revision)
                if len(revs) == count:
                    break
    finally:
        await w.aclose()
    return revs


async def test_resume_on_lagging_member_waits_instead_of_replaying_out_of_order() -> None:
    client = _ScriptedClient([
        [_created(2), {"events": [_put(3)]}, {"events": [_put(4)]}, None],
        # A follower still at revision 2: etcd's future-revision watch replays old events, reordered.
        [_created(2), {"events": [_put(7)]}, {"events": [_put(6)]}, {"events": [_put(5)]}],
        [_created(9), {"events": [_put(5), _put(6), _put(7)]}, {"events": [_put(9)]}],
    ])
    assert await _collect(client, 2, 6) == [3, 4, 5, 6, 7, 9]
    assert client.starts == [3, 5, 5]
    assert client.rotations == 1


async def test_replayed_and_backward_events_are_dropped() -> None:
    client = _ScriptedClient([
        [_created(2), {"events": [_put(3), _put(4)]}, None],
        # Caught up, but replays what was delivered and one event goes backwards within a message.
        [_created(6), {"events": [_put(4), _put(5)]}, {"events": [_put(6), _put(5)]}, {"events": [_put(8)]}],
    ])
    assert await _collect(client, 2, 5) == [3, 4, 5, 6, 8]


async def test_transaction_events_sharing_a_revision_all_arrive() -> None:
    txn = [_put(3), dict(_put(3), kv=dict(_put(3)["kv"], key=b64(b"/p/other")))]
    client = _ScriptedClient([[_created(2), {"events": txn}, {"events": [_put(4)]}]])
    assert await _collect(client, 2, 3) == [3, 3, 4]


async def test_lagging_member_is_skipped_before_any_event_was_delivered() -> None:
    # The first stream saw the cluster at revision 5 (its created header) but delivered nothing; the
    # resume lands on a member still at 2, which must not be trusted with a watch from revision 4.
    client = _ScriptedClient([
        [_created(5), None],
        [_created(2), {"events": [_put(5)]}, {"events": [_put(4)]}],
        [_created(5), {"events": [_put(4), _put(5)]}],
    ])
    assert await _collect(client, 3, 2) == [4, 5]
    assert client.starts == [4, 4, 4]
