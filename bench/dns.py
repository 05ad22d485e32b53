"""Cluster DNS benchmark: queries/s and latency percentiles for cluster names, against the floor of a
loopback upstream answering from a dict, and what one DNS server costs with many Services.

Usage::

    .venv/bin/python bench/dns.py [--services 1000] [--queries 20000] [--concurrency 1,16,64]

Starts a real ``pilothouse server`` (its own temp data dir), creates ``--services`` ClusterIP
Services plus a headless one with 10 ready endpoints (a hand-written EndpointSlice), starts a real
``pilothouse dns`` process forwarding to a loopback upstream (tests/dns/upstream.py, a plain socket
loop, the floor: no cluster logic, no cache), then at each concurrency sends UDP queries from
asyncio clients in this process, each waiting for its answer before the next:

- ``cluster A``: A of a random Service (``svc-N.default.svc.cluster.local``);
- ``headless A``: the headless Service (10 addresses);
- ``cluster NXDOMAIN``: a missing Service (answer with the SOA);
- ``forwarded (cached)``: a name outside the cluster, after the first answer cached;
- ``upstream floor``: the same name asked of the upstream directly.

Then: the DNS process's RSS and CPU seconds per 1,000 answers, and how long a new Service takes to
resolve (create → first answer, polled every 2 ms). Every loop is bounded by ``--queries`` and a
time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

# run as a script, this file's folder comes first on sys.path, and this file is named like dnspython
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

from tests.conftest import free_port, start_server_process, terminate  # noqa: E402
from tests.dns.upstream import LoopbackUpstream  # noqa: E402

TIME_CAP = 30.0


def post(url: str, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def make_services(url: str, count: int) -> None:
    for i in range(count):
        post(url, "/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
            "spec": {"ports": [{"name": "http", "port": 80}]}})
    post(url, "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    post(url, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "headless-1", "labels": {"kubernetes.io/service-name": "headless"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.244.50.{i}"], "conditions": {"ready": True}} for i in range(1, 11)]})


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)


async def load(port: int, names: Callable[[], str], queries: int, concurrency: int) -> tuple[float, list[float], int]:
    """(queries/s, latencies in ms, failures) for ``queries`` questions from ``concurrency`` clients."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + TIME_CAP
    per_client = queries // concurrency

    async def client() -> None:
        nonlocal failures
        transport, protocol = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
        try:
            for _ in range(per_client):
                if time.monotonic() > deadline:
                    return
                wire = dns.message.make_query(names(), "A").to_wire()
                protocol.waiting = loop.create_future()
                start = time.perf_counter()
                transport.sendto(wire)
                try:
                    await asyncio.wait_for(protocol.waiting, 2.0)
                except TimeoutError:
                    failures += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
        finally:
            transport.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - start), latencies, failures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def resolve_latency(url: str, port: int, samples: int) -> list[float]:
    """Create a Service, then ask until it resolves: watch + informer + answer, in ms."""
    out = []
    for i in range(samples):
        name = f"late-{i}"
        start = time.perf_counter()
        post(url, "/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}]}})
        query = dns.message.make_query(f"{name}.default.svc.cluster.local.", "A")
        while time.perf_counter() - start < 10:
            if dns.query.udp(query, "127.0.0.1", port=port, timeout=1).answer:
                out.append((time.perf_counter() - start) * 1000)
                break
            time.sleep(0.002)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory() as tmp, LoopbackUpstream({"www.example.org.": {"A": ["192.0.2.80"]}}) as up:
        server = start_server_process(Path(tmp) / "server")
        dns_process = None
        try:
            started = time.perf_counter()
            make_services(server.url, args.services)
            print(f"{args.services} Services created in {time.perf_counter() - started:.1f}s")
            port = free_port()
            log = open(Path(tmp) / "dns.log", "wb")  # noqa: SIM115 - closed with the directory
            dns_process = subprocess.Popen(
                [sys.executable, "-m", "pilothouse", "dns", "--kubeconfig", str(server.kubeconfig),
                 "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up.port}"], stdout=log, stderr=log)
            last = f"svc-{args.services - 1}.default.svc.cluster.local."
            while True:
                try:
                    if dns.query.udp(dns.message.make_query(last, "A"), "127.0.0.1", port=port, timeout=1).answer:
                        break
                except dns.exception.Timeout:
                    pass
                time.sleep(0.05)
            print(f"DNS ready (informers synced) {time.perf_counter() - started:.1f}s after the first create, "
                  f"RSS {rss_mb(dns_process.pid):.1f} MB")
            dns.query.udp(dns.message.make_query("www.example.org.", "A"), "127.0.0.1", port=port, timeout=2)
            cases: list[tuple[str, int, Callable[[], str]]] = [
                ("cluster A", port, lambda: f"svc-{random.randrange(args.services)}.default.svc.cluster.local."),
                ("headless A (10 endpoints)", port, lambda: "headless.default.svc.cluster.local."),
                ("cluster NXDOMAIN", port, lambda: "missing.default.svc.cluster.local."),
                ("forwarded (cached)", port, lambda: "www.example.org."),
                ("upstream floor", up.port, lambda: "www.example.org."),
            ]
            print(f"\n{'case':28} {'clients':>7} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'lost':>5}")
            for name, target, names in cases:
                for concurrency in levels:
                    cpu_before = cpu_seconds(dns_process.pid)
                    qps, latencies, lost = asyncio.run(load(target, names, args.queries, concurrency))
                    cpu = cpu_seconds(dns_process.pid) - cpu_before
                    extra = f"  ({cpu / max(1, len(latencies)) * 1e6:.0f} us CPU/answer)" if target == port else ""
                    print(f"{name:28} {concurrency:>7} {qps:>8.0f} {statistics.median(latencies):>8.2f} "
                          f"{percentile(latencies, 0.99):>8.2f} {lost:>5}{extra}")
            print(f"\nDNS RSS after the runs: {rss_mb(dns_process.pid):.1f} MB")
            delays = resolve_latency(server.url, port, 20)
            print(f"new Service resolvable after: p50 {statistics.median(delays):.1f} ms, "
                  f"max {max(delays):.1f} ms ({len(delays)} Services)")
            answer = dns.query.udp(dns.message.make_query("nothing.default.svc.cluster.local.", "A"), "127.0.0.1",
                                   port=port, timeout=2)
            assert answer.rcode() == dns.rcode.NXDOMAIN
        finally:
            terminate(dns_process)
            server.stop()


if __name__ == "__main__":
    main()
