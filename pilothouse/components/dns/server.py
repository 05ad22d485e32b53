"""The cluster DNS server: asyncio UDP and TCP on dnspython messages.

dnspython (``dns.message``, ``dns.rrset``, ``dns.asyncquery``) is the well-kept Python DNS library:
complete wire format (EDNS, name compression, truncation), typed, maintained for two decades; dnslib
only encodes and decodes, aiodns only resolves (c-ares). It has no server, and a DNS server on
asyncio is two small protocol classes, below.

A query goes to one of three places, the order of kubeadm's Corefile: the cluster zone
(``records.lookup``, SERVFAIL until the informers have synced, as CoreDNS answers before its first
list); PTR questions in ``in-addr.arpa``/``ip6.arpa`` about cluster addresses
(``records.reverse_lookup``); everything else to the upstream forwarder (``forward.Forwarder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pilothouse.components.dns.forward import Forwarder
from pilothouse.components.dns.records import Answer, ClusterView, lookup, reverse_lookup

__all__ = ["DNSServer", "parse", "render"]

log = logging.getLogger("pilothouse.dns")

_REVERSE = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))
_UDP_DEFAULT = 512  # RFC 1035, without EDNS
_ANSWER_CACHE = 10_000  # answers kept between two changes of the cluster
_SHUFFLED = (dns.rdatatype.A, dns.rdatatype.AAAA)


def _shuffled(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    rdatas = list(rrset)
    random.shuffle(rdatas)
    return dns.rrset.from_rdata_list(rrset.name, rrset.ttl, rdatas)


@dataclass
class DNSServer:
    view: ClusterView
    forwarder: Forwarder
    zone: dns.name.Name = field(default_factory=lambda: dns.name.from_text("cluster.local."))
    #: false until the view's informers have listed once: cluster names are SERVFAIL until then
    ready: Callable[[], bool] = lambda: True
    _transports: list[asyncio.BaseTransport | asyncio.Server] = field(default_factory=list)
    _answers: dict[tuple[tuple[bytes, ...], dns.rdatatype.RdataType], Answer] = field(default_factory=dict)
    _generation: int = -1
    #: UDP replies as sent, by the query's bytes after its id: a repeated question costs a dict lookup
    _wires: dict[bytes, bytes] = field(default_factory=dict)

    # ------------------------------------------------------------ answering

    def answer_local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response when this server has it without asking anyone (cluster names, PTR of cluster
        addresses, errors); None when it takes the network (forwarding, an ExternalName chased out)."""
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        if question.rdclass == dns.rdataclass.IN and name.is_subdomain(self.zone):
            if not self.ready():
                return self._reply(query, Answer(dns.rcode.SERVFAIL), authoritative=False)
            found = self._cluster_answer(name, rdtype)
            if found.chase is not None:
                if not found.chase.is_subdomain(self.zone):
                    return None
                found = dataclasses.replace(found, answer=found.answer + lookup(
                    self.view, self.zone, found.chase, rdtype).answer)
            return self._reply(query, found, authoritative=True)
        if rdtype == dns.rdatatype.PTR and any(name.is_subdomain(zone) for zone in _REVERSE) and self.ready():
            reverse = reverse_lookup(self.view, self.zone, name)
            if reverse is not None:
                return self._reply(query, reverse, authoritative=True)
        return None

    async def answer(self, query: dns.message.Message) -> dns.message.Message:
        local = self.answer_local(query)
        if local is not None:
            return local
        question = query.question[0]
        if question.name.is_subdomain(self.zone):  # an ExternalName out of the zone: CNAME + its target's records
            found = self._cluster_answer(question.name, question.rdtype)
            assert found.chase is not None
            target = await self.forwarder.resolve(dns.message.make_query(found.chase, question.rdtype))
            return self._reply(query, dataclasses.replace(found, answer=found.answer + target.answer),
                               authoritative=True)
        return await self.forwarder.resolve(query)

    def _cluster_answer(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Answer:
        """``lookup``, remembered until the view changes: computing an answer (rdata from the objects)
        costs more than the rest of a query's handling together (bench/dns.py)."""
        if self._generation != self.view.generation or len(self._answers) > _ANSWER_CACHE:
            self._answers.clear()
            self._wires.clear()
            self._generation = self.view.generation
        key = (name.labels, rdtype)  # the labels keep the query's case, which the answer's names echo
        found = self._answers.get(key)
        if found is None:
            found = self._answers[key] = lookup(self.view, self.zone, name, rdtype)
        return found

    @staticmethod
    def _reply(query: dns.message.Message, found: Answer, *, authoritative: bool) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA | (dns.flags.AA if authoritative else 0)
        response.set_rcode(found.rcode)
        # CoreDNS's loadbalance (in kubeadm's Corefile): addresses in a random order, so clients that
        # take the first one spread over a headless Service's endpoints
        response.answer = [_shuffled(rrset) if len(rrset) > 1 and rrset.rdtype in _SHUFFLED else rrset
                           for rrset in found.answer]
        response.authority, response.additional = found.authority, found.additional
        return response

    def cached_reply(self, wire: bytes) -> bytes | None:
        """The reply sent to the same question (same bytes but the id) since the cluster last changed."""
        if self._generation != self.view.generation:
            return None
        hit = self._wires.get(wire[2:])
        return wire[:2] + hit if hit is not None else None

    def remember_reply(self, wire: bytes, reply: bytes, response: dns.message.Message) -> None:
        """Keep a cluster answer's bytes, unless its addresses are shuffled per reply or it is an error."""
        if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and len(self._wires) < _ANSWER_CACHE and \
                not any(len(rrset) > 1 and rrset.rdtype in _SHUFFLED for rrset in response.answer):
            self._wires[wire[2:]] = reply[2:]

    async def handle(self, wire: bytes, *, udp: bool) -> bytes | None:
        """The wire response to a wire query (see ``render`` for UDP's size limit)."""
        query = parse(wire)
        if not isinstance(query, dns.message.Message):
            return query
        try:
            response = await self.answer(query)
        except Exception:
            response = _failed(query)
        return render(query, response, udp=udp)

    # ------------------------------------------------------------ transports

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` over UDP and TCP; the port bound (``port`` 0: a free one)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), local_addr=(host, port),
                                                           reuse_port=False)
        self._transports.append(transport)
        port = transport.get_extra_info("sockname")[1]
        server = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True)
        self._transports.append(server)
        return int(port)

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
            if isinstance(transport, asyncio.Server):
                with contextlib.suppress(Exception):
                    await transport.wait_closed()
        self._transports = []

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766: length-prefixed messages, several per connection."""
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                response = await self.handle(await reader.readexactly(length), udp=False)
                if response is None:
                    break
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def parse(wire: bytes) -> dns.message.Message | bytes | None:
    """The query, or what to answer a malformed one (FORMERR, or silence without a header)."""
    try:
        return dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)


def _failed(query: dns.message.Message) -> dns.message.Message:
    log.exception("answering %s", query.question)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response


def render(query: dns.message.Message, response: dns.message.Message, *, udp: bool) -> bytes:
    """Wire format; over UDP cut to the client's size (512 bytes, or its EDNS payload), with TC set
    and the sections emptied when it does not fit (the client asks again over TCP)."""
    if not udp:
        return response.to_wire()
    limit = max(_UDP_DEFAULT, query.payload) if query.edns >= 0 else _UDP_DEFAULT
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire()


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR echoing the id, when there is a header to echo (otherwise silence, as CoreDNS)."""
    if len(wire) < 12:
        return None
    flags = (struct.unpack("!H", wire[2:4])[0] & 0x7900) | 0x8000 | dns.rcode.FORMERR
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a subclass of asyncio's, though it is one in all but name
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # answered in the callback when no I/O is needed (every cluster name): a task per query
        # was a fifth of a cluster answer's CPU
        hit = self.server.cached_reply(data)
        if hit is not None:
            self._send(hit, addr)
            return
        query = parse(data)
        if not isinstance(query, dns.message.Message):
            if query is not None:
                self._send(query, addr)
            return
        try:
            response = self.server.answer_local(query)
        except Exception:
            response = _failed(query)
        if response is not None:
            reply = render(query, response, udp=True)
            self.server.remember_reply(data, reply, response)
            self._send(reply, addr)
            return
        task = asyncio.ensure_future(self._respond(query, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, query: dns.message.Message, addr: tuple[str, int]) -> None:
        try:
            response = await self.server.answer(query)
        except Exception:
            response = _failed(query)
        self._send(render(query, response, udp=True), addr)

    def _send(self, wire: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)
