"""NetworkPolicy programming latency: a policy change → the node's rules enforce it, with 100
policies over 500 pods (10 namespaces of 50 pods; all 500 on the measured node, the worst case:
every pod gets its chains).

Three figures:
- ``compute``: :func:`pilothouse.components.netpolicy.rules.compute` of the whole cluster (the
  controller recomputes everything on each change), pure Python;
- ``nft``: the first full write of that ruleset into a network namespace, and one policy change
  (plan + apply of the difference);
- ``end to end``: a real API server process (no controller manager) and a PolicyController (informers over HTTP) in this
  process programming a network namespace; one sample is an update of one policy (its port) through
  the API until the controller has applied it to the kernel. Needs root.

    .venv/bin/python bench/network_policy.py [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.netpolicy.controller import NAMESPACES, NETWORKPOLICIES, PODS, PolicyController
from pilothouse.components.netpolicy.model import namespace_from, pod_from, policy_from
from pilothouse.components.netpolicy.rules import compute, full_commands, plan
from tests.conftest import start_server_process
from tests.netpolicy.builders import namespace, pod, policy

NODE = "bench"
SERVICEACCOUNTS = resource("", "v1", "serviceaccounts")
SPACES, PODS_PER_SPACE, POLICIES_PER_SPACE = 10, 50, 10


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {ordered[-1] * 1000:7.1f} ms")


def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    spaces = [namespace(f"ns{n}", {"team": f"t{n % 3}"}) for n in range(SPACES)]
    pods = [pod(f"ns{n}", f"p{i}", f"10.244.{n}.{i + 2}", {"app": f"a{i % POLICIES_PER_SPACE}", "tier": f"t{i % 3}"},
                node=NODE, ports=(("http", 8080 + i % 2, "TCP"),))
            for n in range(SPACES) for i in range(PODS_PER_SPACE)]
    policies = [policy(f"ns{n}", f"np{k}", {"matchLabels": {"app": f"a{k}"}}, types=["Ingress", "Egress"], ingress=[
        {"from": [{"podSelector": {"matchLabels": {"tier": f"t{k % 3}"}}},
                  {"namespaceSelector": {"matchLabels": {"team": f"t{k % 3}"}},
                   "podSelector": {"matchLabels": {"app": f"a{(k + 1) % POLICIES_PER_SPACE}"}}},
                  {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}],
         "ports": [{"port": "http", "protocol": "TCP"}, {"port": 9000, "endPort": 9100, "protocol": "TCP"}]}],
        egress=[{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "t0"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": "http", "protocol": "TCP"}]}])
        for n in range(SPACES) for k in range(POLICIES_PER_SPACE)]
    return spaces, pods, policies


def timed(function: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        out.append(time.perf_counter() - started)
    return out


async def pure_and_nft(netns: str, samples: int) -> None:
    spaces, pods, policies = cluster()
    parsed_pods = [p for p in map(pod_from, pods) if p is not None]
    parsed_spaces = [namespace_from(s) for s in spaces]
    parsed = [policy_from(p) for p in policies]
    ruleset = compute(parsed, parsed_pods, parsed_spaces, NODE)
    rules = sum(len(chain) for chain in ruleset.chains.values())
    print(f"{len(policies)} policies, {len(pods)} pods: {len(ruleset.chains)} chains, {rules} rules")
    computing = timed(lambda: compute(parsed, parsed_pods, parsed_spaces, NODE), samples)
    print(f"  compute (whole cluster)        {quantiles(computing)}")
    nft = Nft(netns)
    commands = full_commands(ruleset)
    started = time.perf_counter()
    await nft.apply(commands)
    seconds = time.perf_counter() - started
    print(f"  first full write               {seconds * 1000:7.1f} ms ({len(commands)} commands)")
    changes: list[float] = []
    sizes: list[int] = []
    current = ruleset
    for sample in range(samples):
        started = time.perf_counter()
        changed = list(policies)
        k = sample % len(changed)
        changed[k] = policy(changed[k]["metadata"]["namespace"], changed[k]["metadata"]["name"],
                            changed[k]["spec"]["podSelector"], ingress=[{"ports": [{"port": 7000 + sample}]}])
        new = compute(map(policy_from, changed), parsed_pods, parsed_spaces, NODE)
        difference = plan(current, new)
        await nft.apply(difference)
        changes.append(time.perf_counter() - started)
        sizes.append(len(difference))
        current = new
    print(f"  one policy change (compute+plan+apply)  {quantiles(changes)}  ({statistics.median(sizes):.0f} commands)")


async def end_to_end(url: str, netns: str, samples: int) -> None:
    spaces, pods, policies = cluster()
    client = APIClient(url)
    semaphore = asyncio.Semaphore(32)

    async def create_pod(body: dict[str, Any]) -> None:
        async with semaphore:
            status = body.pop("status")
            created = await client.create(PODS, body, body["metadata"]["namespace"])
            created["status"] = {**status, "podIPs": [{"ip": status["podIP"]}]}
            await client.update_status(PODS, created)

    for space in spaces:
        await client.create(NAMESPACES, space)
    for space in spaces:  # the pods need their namespace's default ServiceAccount
        await client.create(SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                              "metadata": {"name": "default"}}, space["metadata"]["name"])
    await asyncio.gather(*(create_pod(p) for p in pods))
    await asyncio.gather(*(client.create(NETWORKPOLICIES, p, p["metadata"]["namespace"]) for p in policies))
    control = PolicyController(client, NODE, netns=netns)
    started = time.perf_counter()
    await control.start()
    await asyncio.wait_for(control.synced.wait(), 60)
    applied = control._applied
    print(f"  end to end: first sync after start {(time.perf_counter() - started) * 1000:7.1f} ms "
          f"({len(applied.chains) if applied else 0} chains)")
    latencies: list[float] = []
    for sample in range(samples):
        target = policies[sample % len(policies)]
        current = await client.get(NETWORKPOLICIES, target["metadata"]["name"], target["metadata"]["namespace"])
        current["spec"]["ingress"][0]["ports"][1]["port"] = 9001 + sample % 50  # 9000 is no change
        since = time.monotonic()
        started = time.perf_counter()
        await client.update(NETWORKPOLICIES, current)
        await control.wait_applied(since, timeout=60)
        latencies.append(time.perf_counter() - started)
    print(f"  end to end: policy write → enforced    {quantiles(latencies)}  "
          f"(one sync {quantiles(control.stats.history[-samples:])})")
    await control.stop()
    await client.close()


async def main(samples: int) -> None:
    netns = f"pnb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        await pure_and_nft(netns, samples)
        subprocess.run(["ip", "netns", "exec", netns, "nft", "flush", "ruleset"], check=True)
        with tempfile.TemporaryDirectory() as directory:
            # no controller manager: its pod garbage collector and node lifecycle controller would
            # delete or evict the pods of a node that no agent runs, and that churn is not the figure
            server = start_server_process(Path(directory), extra=("--disable", "scheduler,controller-manager"))
            try:
                await end_to_end(server.url, netns, samples)
            finally:
                server.stop()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().samples))
