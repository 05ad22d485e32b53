"""A tiny authoritative DNS server on loopback, the upstream the cluster DNS forwards to in the tests
and in bench/dns.py (this machine reaches no real resolver)."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["LoopbackUpstream"]


class LoopbackUpstream:
    """Answers ``records`` ({"name.": {"A": ["1.2.3.4"]}}) with ``ttl``, NXDOMAIN with an SOA otherwise;
    counts the questions it gets (``asked``)."""

    def __init__(self, records: dict[str, dict[str, list[str]]], ttl: int = 60) -> None:
        self.records = {dns.name.from_text(name): rrs for name, rrs in records.items()}
        self.ttl = ttl
        self.asked: Counter[tuple[str, str]] = Counter()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = False

    def __enter__(self) -> LoopbackUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        self.asked[(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))] += 1
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        found = self.records.get(question.name)
        if found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text(
                question.name.parent() if len(question.name) > 1 else question.name, self.ttl, "IN", "SOA",
                "ns.upstream.test. hostmaster.upstream.test. 1 7200 1800 86400 10"))
            return response
        texts = found.get(dns.rdatatype.to_text(question.rdtype), [])
        if texts:
            response.answer.append(dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, texts))
        return response

    def _serve(self) -> None:
        while not self._stopped:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(dns.message.from_wire(data)).to_wire(), addr)
            except Exception:  # a malformed query: no answer, as a real server would drop it
                continue
