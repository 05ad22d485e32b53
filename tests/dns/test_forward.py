"""Upstream forwarding (pilothouse.components.dns.forward) against a loopback upstream: identical
questions in flight share one upstream query, the cache counts TTLs down, upstream addresses parse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.message
import dns.rcode

from pilothouse.components.dns.forward import Forwarder, host_nameservers, parse_upstream
from tests.dns.upstream import LoopbackUpstream


async def test_concurrent_identical_questions_share_one_upstream_query() -> None:
    with LoopbackUpstream({"shared.example.": {"A": ["192.0.2.7"]}}, ttl=20) as upstream:
        forwarder = Forwarder([("127.0.0.1", upstream.port)])
        queries = [dns.message.make_query("shared.example.", "A") for _ in range(20)]
        responses = await asyncio.gather(*(forwarder.resolve(q) for q in queries))
        assert [r.id for r in responses] == [q.id for q in queries]
        assert all(r.answer[0][0].to_text() == "192.0.2.7" and r.answer[0].ttl == 20 for r in responses)
        assert upstream.asked[("shared.example.", "A")] == 1


async def test_first_upstream_down_tries_the_next() -> None:
    gone = LoopbackUpstream({})
    gone.stop()
    with LoopbackUpstream({"next.example.": {"A": ["192.0.2.8"]}}) as upstream:
        forwarder = Forwarder([("127.0.0.1", gone.port), ("127.0.0.1", upstream.port)], timeout=0.5)
        response = await forwarder.resolve(dns.message.make_query("next.example.", "A"))
        assert response.rcode() == dns.rcode.NOERROR and response.answer[0][0].to_text() == "192.0.2.8"


def test_upstream_addresses(tmp_path: Path) -> None:
    assert parse_upstream("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_upstream("[::1]:5300") == ("::1", 5300)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nnameserver 10.0.0.2\nsearch example.org\nnameserver 10.0.0.3\n")
    assert host_nameservers(resolv) == [("10.0.0.2", 53), ("10.0.0.3", 53)]
    assert host_nameservers(tmp_path / "missing") == []
