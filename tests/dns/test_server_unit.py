"""The DNS server's message handling without sockets (pilothouse.components.dns.server): truncation over
UDP, malformed queries, other opcodes, SERVFAIL before the informers have synced, the answer cache."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode

from pilothouse.components.dns.forward import Forwarder
from pilothouse.components.dns.server import DNSServer, parse, render
from tests.dns.test_records import ListView, endpoint_slice, service

READY = {"ready": True}


def server(view: ListView, ready: bool = True) -> DNSServer:
    return DNSServer(view, Forwarder([]), ready=lambda: ready)


def big_view() -> ListView:
    endpoints = [{"addresses": [f"10.244.7.{i}"], "conditions": READY} for i in range(1, 61)]
    return ListView(services=[service("many", cluster_ip="None")], endpoint_slices=[endpoint_slice("many", endpoints)])


async def test_udp_answer_too_big_is_truncated_and_tcp_is_whole() -> None:
    query = dns.message.make_query("many.default.svc.cluster.local.", "A")  # no EDNS: 512 bytes
    wire = await server(big_view()).handle(query.to_wire(), udp=True)
    assert wire is not None
    truncated = dns.message.from_wire(wire)
    assert truncated.flags & dns.flags.TC and not truncated.answer
    whole = dns.message.from_wire(await server(big_view()).handle(query.to_wire(), udp=False) or b"")
    assert len(whole.answer[0]) == 60
    with_edns = dns.message.make_query("many.default.svc.cluster.local.", "A", use_edns=0, payload=4096)
    assert len(dns.message.from_wire(await server(big_view()).handle(with_edns.to_wire(), udp=True) or b"")
               .answer[0]) == 60


async def test_malformed_and_other_opcodes() -> None:
    formerr = await server(ListView()).handle(b"\x12\x34" + b"\x01\x00" + b"\x00\x05" + b"\x00" * 6 + b"junk", udp=True)
    assert formerr is not None and formerr[:2] == b"\x12\x34" and formerr[3] & 0x0F == dns.rcode.FORMERR
    assert await server(ListView()).handle(b"\x00", udp=True) is None
    notify = dns.message.make_query("cluster.local.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(await server(ListView()).handle(notify.to_wire(), udp=True) or b"").rcode() \
        == dns.rcode.NOTIMP


def test_servfail_for_cluster_names_until_synced() -> None:
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    view = ListView(services=[service("web")])
    response = server(view, ready=False).answer_local(query)
    assert response is not None and response.rcode() == dns.rcode.SERVFAIL
    assert server(view).answer_local(dns.message.make_query("example.org.", "A")) is None  # forwarded


def test_answers_follow_the_view_generation() -> None:
    view = ListView()
    dns_server = server(view)
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    first = dns_server.answer_local(query)
    assert first is not None and first.rcode() == dns.rcode.NXDOMAIN
    view.services.append(service("web"))
    stale = dns_server.answer_local(query)
    assert stale is not None and stale.rcode() == dns.rcode.NXDOMAIN  # same generation: remembered
    view.generation += 1
    fresh = dns_server.answer_local(query)
    assert fresh is not None and [rd.to_text() for rd in fresh.answer[0]] == ["10.96.0.20"]


def test_render_and_parse_round_trip() -> None:
    query = parse(dns.message.make_query("x.", "A").to_wire())
    assert isinstance(query, dns.message.Message)
    assert dns.message.from_wire(render(query, dns.message.make_response(query), udp=True)).id == query.id


def test_another_cluster_domain() -> None:
    """The seed's ``--cluster-domain=kube.local``: the zone is a parameter, nothing else changes."""
    dns_server = DNSServer(ListView(services=[service("web")]), Forwarder([]), dns.name.from_text("kube.local."))
    response = dns_server.answer_local(dns.message.make_query("web.default.svc.kube.local.", "A"))
    assert response is not None and [rd.to_text() for rd in response.answer[0]] == ["10.96.0.20"]
    missing = dns_server.answer_local(dns.message.make_query("nope.default.svc.kube.local.", "A"))
    assert missing is not None and missing.authority[0].name.to_text() == "kube.local."
    assert dns_server.answer_local(dns.message.make_query("web.default.svc.cluster.local.", "A")) is None  # not ours


def test_answer_names_echo_the_query_case() -> None:
    dns_server = server(ListView(services=[service("web")]))
    for name in ("web.default.svc.cluster.local.", "WEB.Default.svc.cluster.local."):
        response = dns_server.answer_local(dns.message.make_query(name, "A"))
        assert response is not None and response.answer[0].name.to_text() == name


def test_replies_remembered_by_question_until_the_cluster_changes() -> None:
    view = ListView(services=[service("web")])
    dns_server = server(view)
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    wire = query.to_wire()
    assert dns_server.cached_reply(wire) is None
    response = dns_server.answer_local(query)
    assert response is not None
    reply = render(query, response, udp=True)
    dns_server.remember_reply(wire, reply, response)
    again = dns.message.make_query("web.default.svc.cluster.local.", "A")
    hit = dns_server.cached_reply(again.to_wire())
    assert hit is not None and dns.message.from_wire(hit).id == again.id and hit[2:] == reply[2:]
    view.generation += 1
    assert dns_server.cached_reply(wire) is None
