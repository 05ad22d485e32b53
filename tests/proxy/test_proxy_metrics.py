"""kube-proxy's own metrics from the proxy (issue 14), scraped over HTTP from kube-proxy's metrics
server as Prometheus would: a Proxier against a real API server programs nftables in a network
namespace (netlab), and the named series move when a Service and its EndpointSlice change.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.components.proxy.metrics import LAST_CHANGE_TRIGGER_TIME, start_metrics_server
from pilothouse.components.proxy.proxier import Proxier
from tests.conftest import ServerProcess, free_port
from tests.proxy import netlab
from tests.proxy.builders import endpoint, endpoint_slice, service
from tests.proxy.test_kernel import lab, proxier  # noqa: F401 - the kernel tests' lab and proxier fixtures

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

NODE = "node-a"  # the kernel tests' proxier's node


def scrape(port: int) -> dict[str, float]:
    """Every sample of the page, keyed ``name{labels}`` as the text format writes them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_the_proxy_metrics_move_with_a_sync(server: ServerProcess, lab: netlab.Lab,  # noqa: F811
                                                  proxier: Proxier) -> None:  # noqa: F811
    port = free_port()
    runner = await start_metrics_server(f"127.0.0.1:{port}")
    assert runner is not None
    try:
        before = await asyncio.to_thread(scrape, port)
        for name in ("kubeproxy_sync_proxy_rules_duration_seconds_count",
                     "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
                     "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                     "kubeproxy_network_programming_duration_seconds_count",
                     "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                     "kubeproxy_sync_proxy_rules_service_changes_total",
                     "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"):
            assert name in before, name
        assert before["kubeproxy_sync_proxy_rules_duration_seconds_count"] >= 1  # the first (full) sync
        assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"}' in before  # 1 ms, doubling
        assert 'kubeproxy_network_programming_duration_seconds_bucket{le="0.25"}' in before

        svc = service("metered", "", ("http", 80, "TCP"))
        del svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"], svc["metadata"]["resourceVersion"]
        changed = datetime.now(UTC)
        endpoints = endpoint_slice("metered", [endpoint(lab.address(1), node=NODE)], ("http", 8080, "TCP"))
        endpoints["metadata"]["annotations"] = {
            LAST_CHANGE_TRIGGER_TIME: changed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        started = time.monotonic()
        server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                             "items": [svc, endpoints]}))
        await asyncio.sleep(0.3)
        await proxier.wait_applied(started)
        after = await asyncio.to_thread(scrape, port)
    finally:
        await runner.cleanup()

    assert after["kubeproxy_sync_proxy_rules_duration_seconds_count"] > \
        before["kubeproxy_sync_proxy_rules_duration_seconds_count"]
    assert after["kubeproxy_sync_partial_proxy_rules_duration_seconds_count"] >= 1
    assert after["kubeproxy_sync_proxy_rules_service_changes_total"] >= \
        before["kubeproxy_sync_proxy_rules_service_changes_total"] + 1
    assert after["kubeproxy_sync_proxy_rules_endpoint_changes_total"] >= \
        before["kubeproxy_sync_proxy_rules_endpoint_changes_total"] + 1
    assert after["kubeproxy_sync_proxy_rules_endpoint_changes_pending"] == 0
    assert after["kubeproxy_sync_proxy_rules_last_timestamp_seconds"] >= changed.timestamp()
    # the change was programmed: one latency observed, from the slice's trigger time, within seconds
    observed = after["kubeproxy_network_programming_duration_seconds_count"] - \
        before["kubeproxy_network_programming_duration_seconds_count"]
    assert observed >= 1
    assert 0 < after["kubeproxy_network_programming_duration_seconds_sum"] - \
        before["kubeproxy_network_programming_duration_seconds_sum"] < 30 * observed
