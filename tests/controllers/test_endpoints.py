"""Endpoints and EndpointSlice controllers against a real server."""

from __future__ import annotations

from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.endpoints import EndpointsController, resolve_port
from pilothouse.components.controllers.endpointslice import EndpointSliceController
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import PODS, create_namespace, mark_pod, pod_template, run_controllers, wait_for

SERVICES = resource("", "v1", "services")
ENDPOINTS = resource("", "v1", "endpoints")
SLICES = resource("discovery.k8s.io", "v1", "endpointslices")


def test_resolve_port() -> None:
    pod = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080},
                                              {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}
    assert resolve_port({"port": 80, "targetPort": "http"}, pod) == 8080
    assert resolve_port({"port": 80, "targetPort": 9000}, pod) == 9000
    assert resolve_port({"port": 80}, pod) == 80
    assert resolve_port({"port": 53, "targetPort": "dns", "protocol": "UDP"}, pod) == 53
    assert resolve_port({"port": 53, "targetPort": "dns"}, pod) is None  # TCP has no "dns" port


async def _pod(client: APIClient, ns: str, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            **pod_template(labels)}
    body["metadata"] = {"name": name, "labels": labels}
    await client.create(PODS, body, ns)


async def test_endpoints_and_slices_follow_pods(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "ep")
    async with run_controllers(server.url, EndpointsController, EndpointSliceController):
        await client.create(SERVICES, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                               {"name": "metrics", "port": 9100, "targetPort": 9100}]}}, ns)

        async def placeholder() -> list[dict[str, Any]] | None:
            items = (await client.list(SLICES, ns))["items"]
            return items if len(items) == 1 and not items[0].get("endpoints") else None

        await wait_for(placeholder, what="placeholder slice")
        await _pod(client, ns, "web-a", {"app": "web"})
        await _pod(client, ns, "web-b", {"app": "web"})
        await _pod(client, ns, "other", {"app": "db"})
        await mark_pod(client, ns, "web-a", ip="10.9.0.1", ready=True)
        await mark_pod(client, ns, "web-b", ip="10.9.0.2", ready=False)
        await mark_pod(client, ns, "other", ip="10.9.0.3", ready=True)

        async def endpoints() -> dict[str, Any] | None:
            try:
                ep = await client.get(ENDPOINTS, "web", ns)
            except Exception:
                return None
            subsets = ep.get("subsets") or []
            if len(subsets) == 1 and subsets[0].get("addresses") and subsets[0].get("notReadyAddresses"):
                return ep
            return None

        ep = await wait_for(endpoints, what="endpoints with ready and not-ready addresses")
        subset = ep["subsets"][0]
        assert [a["ip"] for a in subset["addresses"]] == ["10.9.0.1"]
        assert subset["addresses"][0]["targetRef"]["name"] == "web-a"
        assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.9.0.2"]
        assert sorted((p["name"], p["port"]) for p in subset["ports"]) == [("http", 8080), ("metrics", 9100)]

        async def slices() -> list[dict[str, Any]] | None:
            items = (await client.list(SLICES, ns))["items"]
            if len(items) == 1 and len(items[0].get("endpoints") or []) == 2:
                return items
            return None

        found = (await wait_for(slices, what="slice with two endpoints"))[0]
        labels = found["metadata"]["labels"]
        assert labels["kubernetes.io/service-name"] == "web"
        assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert labels["tier"] == "front"
        assert found["addressType"] == "IPv4"
        assert found["metadata"]["ownerReferences"][0]["kind"] == "Service"
        by_ip = {e["addresses"][0]: e for e in found["endpoints"]}
        assert by_ip["10.9.0.1"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert by_ip["10.9.0.2"]["conditions"]["ready"] is False
        assert by_ip["10.9.0.1"]["targetRef"]["name"] == "web-a"
        assert sorted((p["name"], p["port"]) for p in found["ports"]) == [("http", 8080), ("metrics", 9100)]

        # web-b becomes ready: everything moves to addresses
        await mark_pod(client, ns, "web-b", ip="10.9.0.2", ready=True)

        async def all_ready() -> bool:
            ep = await client.get(ENDPOINTS, "web", ns)
            subset = (ep.get("subsets") or [{}])[0]
            return len(subset.get("addresses") or []) == 2 and not subset.get("notReadyAddresses")

        await wait_for(all_ready, what="both ready")
        # a deleted pod leaves both objects
        await client.delete(PODS, "web-a", ns, grace_period_seconds=0)

        async def one_left() -> bool:
            ep = await client.get(ENDPOINTS, "web", ns)
            items = (await client.list(SLICES, ns))["items"]
            addresses = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
            endpoints = [e["addresses"][0] for s in items for e in s.get("endpoints") or []]
            return addresses == ["10.9.0.2"] and endpoints == ["10.9.0.2"]

        await wait_for(one_left, what="web-a removed")
        # the Service goes: its Endpoints go with it
        await client.delete(SERVICES, "web", ns)

        async def endpoints_gone() -> bool:
            return not (await client.list(ENDPOINTS, ns))["items"]

        await wait_for(endpoints_gone, what="endpoints deleted")
    await client.close()
