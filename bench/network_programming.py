"""Network programming latency: a Service or endpoint change → the node's rules in place → traffic
follows, at 100 and 1,000 Services (Kubernetes' SLI: p99 under 30 s at scale; our goal under 1 s).

A real API server process; the proxy (Proxier: informers over HTTP, nftables) in this process,
programming a network namespace that plays the node; two ``busybox httpd`` endpoints in namespaces
of their own (tests/proxy/netlab.py). Every Service has no selector and an EndpointSlice written
here, as the endpointslice controller would write it. One sample: flip one Service's slice from
one endpoint to the other (or create a new Service) and time until (a) the proxy has applied the
change to the kernel and (b) a fresh connection from the node to the Service's address is
answered by the new endpoint. Needs root.

A new Service's samples include the rejects its probe gets until the proxy has its endpoints: the
kernel rate-limits the ICMP errors of a REJECT (icmp_ratelimit), so a probe that keeps knocking at
1 ms intervals sees one SYN go unanswered and retries after TCP's 1 s, as any client would.

    .venv/bin/python bench/network_programming.py [--sizes 100,1000] [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pilothouse.client.rest import APIClient
from pilothouse.components.proxy.proxier import ENDPOINTSLICES, SERVICES, Proxier
from pilothouse.components.proxy.rules import ProxyConfig
from tests.conftest import start_server_process
from tests.proxy import netlab
from tests.proxy.builders import endpoint, endpoint_slice


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    median, top = statistics.median(ordered), ordered[-1]
    return f"p50 {median * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  max {top * 1000:7.1f} ms"


def slice_for(lab: netlab.Lab, name: str, index: int) -> dict[str, Any]:
    return endpoint_slice(name, [endpoint(lab.address(index))], ("http", netlab.ENDPOINT_PORT, "TCP"),
                          name=f"{name}-slice")


def service_for(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


async def create(client: APIClient, lab: netlab.Lab, names: list[str]) -> dict[str, str]:
    semaphore = asyncio.Semaphore(32)

    async def one(name: str) -> tuple[str, str]:
        async with semaphore:
            svc = await client.create(SERVICES, service_for(name), "default")
            await client.create(ENDPOINTSLICES, slice_for(lab, name, 1), "default")
            return name, str(svc["spec"]["clusterIP"])
    return dict(await asyncio.gather(*(one(n) for n in names)))


async def until(predicate: Any, timeout: float = 30) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError
        await asyncio.sleep(0.001)
    return time.perf_counter()


async def run_size(url: str, lab: netlab.Lab, size: int, samples: int) -> None:
    client = APIClient(url)
    proxy = Proxier(client, ProxyConfig(node_name="bench", cluster_cidr=netlab.POD_RANGE), netns=lab.node)
    prober = netlab.Prober(lab.node)
    try:
        prefix = f"s{size}-"
        addresses = await create(client, lab, [f"{prefix}{i}" for i in range(size)])
        await proxy.start()
        started = time.perf_counter()
        await asyncio.wait_for(proxy.synced.wait(), 120)
        while proxy.pending:  # the initial burst of informer events
            await asyncio.sleep(0.01)
        print(f"{size} Services: first full sync {proxy.stats.history[0] * 1000:.0f} ms "
              f"({proxy.stats.last_commands} nft commands), informers to programmed "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        # warm: every Service answers from endpoint 1
        probe_names = random.sample(sorted(addresses), min(5, size))
        for name in probe_names:
            assert prober.get(f"http://{addresses[name]}/") == "ep1", name

        current = dict.fromkeys(addresses, 1)
        rules: list[float] = []
        traffic: dict[str, list[float]] = {"endpoint change": [], "new Service": []}
        syncs: list[float] = []
        for sample in range(samples):
            if sample % 4 == 3:  # a new Service, with its slice
                name = f"{prefix}new{sample}"
                t0 = time.perf_counter()
                svc = await client.create(SERVICES, service_for(name), "default")
                await client.create(ENDPOINTSLICES, slice_for(lab, name, 2), "default")
                address, target = str(svc["spec"]["clusterIP"]), "ep2"
            else:  # an endpoint change: the Service's slice now names the other endpoint
                name = random.choice(sorted(current))
                current[name] = 3 - current[name]
                target, address = f"ep{current[name]}", addresses[name]
                existing = await client.get(ENDPOINTSLICES, f"{name}-slice", "default")
                existing["endpoints"] = [endpoint(lab.address(current[name]))]
                t0 = time.perf_counter()
                await client.update(ENDPOINTSLICES, existing)
            key, since = f"default/{name}", time.monotonic() - (time.perf_counter() - t0)
            t_rules = await until(lambda k=key, s=since: proxy.stats.applied.get(k, 0.0) > s and not proxy.pending)
            rules.append(t_rules - t0)
            syncs.append(proxy.stats.last_seconds)
            # the probe blocks on its answer: in a thread, so that the proxy (this event loop) runs meanwhile
            while (answer := await asyncio.to_thread(prober.get, f"http://{address}/")) != target:
                if time.perf_counter() - t0 > 30:
                    raise TimeoutError(f"{name} ({address}) never answered from {target}: {answer}")
            traffic["new Service" if "new" in name else "endpoint change"].append(time.perf_counter() - t0)
        print(f"  change → rules in place   {quantiles(rules)}")
        for kind, values in traffic.items():
            print(f"  {kind + ' → traffic':25} {quantiles(values)}")
        print(f"  one sync (compute + nft)  {quantiles(syncs)}  "
              f"(last: {proxy.stats.last_changed} Service port, {proxy.stats.last_commands} nft commands)")
    finally:
        prober.close()
        await proxy.stop()
        await proxy.cleanup()
        await client.close()


async def main(sizes: list[int], samples: int) -> None:
    reason = netlab.usable()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    lab = netlab.Lab.create(2)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server_process(Path(tmp))
        try:
            lab.wait_serving()
            for size in sizes:
                await run_size(server.url, lab, size, samples)
        finally:
            server.stop()
            lab.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.samples))
