"""Names outside the cluster: forwarded to the host's resolvers, answers kept for their TTL.

kubeadm's Corefile does this with ``forward . /etc/resolv.conf`` and ``cache 30``: the upstreams
are the host's nameservers (or ``--upstream``), tried in order; a response is cached for its
smallest TTL (a negative one for its SOA's minimum, RFC 2308), never longer than 30 seconds,
and served with the TTLs counted down. When no upstream answers the client gets SERVFAIL, as from
CoreDNS's ``forward``. Identical questions asked while one is in flight share its answer, so a
burst of pods resolving one name costs one upstream query.

The cache is ``cachetools.TLRUCache`` (a well-kept library: per-entry expiry plus LRU eviction
at a bound, what CoreDNS's cache plugin keeps, 9984 entries by default); the wire protocol is
dnspython's ``asyncquery`` (UDP, then TCP when the answer is truncated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cachetools
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["MAX_TTL", "Forwarder", "host_nameservers", "parse_upstream"]

log = logging.getLogger("pilothouse.dns.forward")

#: kubeadm's ``cache 30``: nothing from upstream is kept longer
MAX_TTL = 30
CACHE_SIZE = 9984
Key = tuple[str, int, int]


def parse_upstream(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353`` or ``[::1]:53``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host.rstrip("]"), int(port or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


def host_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[tuple[str, int]]:
    """The host's nameservers (``forward . /etc/resolv.conf``)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    return [(fields[1], 53) for fields in (line.split() for line in lines)
            if len(fields) > 1 and fields[0] == "nameserver"]


@dataclass(frozen=True)
class _Entry:
    response: dns.message.Message
    stored: float
    ttl: float


def _cache_ttl(response: dns.message.Message) -> float:
    """RFC 2308: a denial lives for its SOA's minimum (not at all without one); an answer for its
    smallest TTL."""
    if response.rcode() == dns.rcode.NXDOMAIN or not response.answer:
        ttls = [min(rrset.ttl, rrset[0].minimum) for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA]
    else:
        ttls = [rrset.ttl for rrset in response.answer]
    return float(min([MAX_TTL, *ttls])) if ttls else 0.0


def _aged(rrsets: list[dns.rrset.RRset], cap: float, elapsed: int) -> list[dns.rrset.RRset]:
    """TTLs capped at the cache's (as CoreDNS's cache does, from the first answer on), counted down."""
    return [dns.rrset.from_rdata_list(rrset.name, max(0, min(rrset.ttl, int(cap)) - elapsed), list(rrset))
            for rrset in rrsets]


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], timeout: float = 2.0, cache_size: int = CACHE_SIZE) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self._cache: cachetools.TLRUCache[Key, _Entry] = cachetools.TLRUCache(
            cache_size, lambda _key, entry, now: now + entry.ttl)
        self._inflight: dict[Key, asyncio.Future[dns.message.Message | None]] = {}

    async def resolve(self, query: dns.message.Message) -> dns.message.Message:
        """The response to ``query`` (its id and question), from the cache or an upstream."""
        question = query.question[0]
        key = (question.name.to_text().lower(), int(question.rdtype), int(question.rdclass))
        entry = self._cache.get(key)
        if entry is None:
            upstream = await self._shared(key, query)
            if upstream is None:
                failed = dns.message.make_response(query)
                failed.flags |= dns.flags.RA
                failed.set_rcode(dns.rcode.SERVFAIL)
                return failed
            entry = _Entry(upstream, time.monotonic(), _cache_ttl(upstream))
        return self._reply(query, entry)

    @staticmethod
    def _reply(query: dns.message.Message, entry: _Entry) -> dns.message.Message:
        elapsed = int(time.monotonic() - entry.stored)
        response = dns.message.make_response(query)
        response.flags = (entry.response.flags & ~dns.flags.AA) | dns.flags.QR | (query.flags & dns.flags.RD)
        response.set_rcode(entry.response.rcode())
        response.answer = _aged(entry.response.answer, entry.ttl, elapsed)
        response.authority = _aged(entry.response.authority, entry.ttl, elapsed)
        response.additional = _aged(entry.response.additional, entry.ttl, elapsed)
        return response

    async def _shared(self, key: Key, query: dns.message.Message) -> dns.message.Message | None:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dns.message.Message | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._ask(query)
        except BaseException:
            future.cancel()  # whoever waits on it gives up too (their clients ask again)
            raise
        finally:
            del self._inflight[key]
        if response is not None and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            ttl = _cache_ttl(response)
            if ttl > 0:
                self._cache[key] = _Entry(response, time.monotonic(), ttl)
        future.set_result(response)
        return response

    async def _ask(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        outgoing = dns.message.make_query(question.name, question.rdtype, question.rdclass,
                                          use_edns=query.edns if query.edns >= 0 else None,
                                          payload=max(query.payload, 1232))
        for host, port in self.upstreams:
            try:
                response = await dns.asyncquery.udp(outgoing, host, timeout=self.timeout, port=port)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(outgoing, host, timeout=self.timeout, port=port)
            except (dns.exception.DNSException, OSError) as error:
                log.debug("upstream %s:%s: %s", host, port, error)
                continue
            if response.rcode() != dns.rcode.SERVFAIL:
                return response
        return None
