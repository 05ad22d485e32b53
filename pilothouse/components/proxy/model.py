"""Services and EndpointSlices read into what the proxy needs: one :class:`ServicePort` per port of a
proxied Service, and its endpoints merged over the Service's slices (kube-proxy's ServicePortMap and
EndpointsMap, pkg/proxy/serviceport.go and endpointslicecache.go)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pilothouse.machinery.meta import Object

__all__ = ["DEFAULT_AFFINITY_SECONDS", "SERVICE_NAME_LABEL", "Endpoint", "ServicePort", "endpoints_for",
           "service_ports"]


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: ``sessionAffinityConfig.clientIP.timeoutSeconds``' default (3 hours), as the API defaults it
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # lower case: tcp, udp, sctp
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()  # spec.externalIPs and status.loadBalancer.ingress IPs
    affinity_seconds: int = 0  # sessionAffinity ClientIP's timeout; 0 = no affinity
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local
    #: status.loadBalancer.ingress IPs (also in external_ips), which spec.loadBalancerSourceRanges guards
    load_balancer_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """kube-proxy's ServicePortName: ``namespace/name/protocol/portname``."""
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}"

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips)


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    node: str = ""
    ready: bool = True
    serving: bool = True
    terminating: bool = False


def service_ports(service: Object) -> list[ServicePort]:
    """The proxied ports of ``service``: none for headless and ExternalName Services, which have no
    virtual IP to capture."""
    spec = service.get("spec") or {}
    metadata = service["metadata"]
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or cluster_ip in ("", "None"):
        return []
    cluster_ips = [ip for ip in (spec.get("clusterIPs") or [cluster_ip]) if ":" not in ip]  # IPv4 proxier
    if not cluster_ips:
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    balancers: list[str] = []
    if spec.get("type") == "LoadBalancer":
        balancers = [ingress["ip"] for ingress in ((service.get("status") or {}).get("loadBalancer") or {})
                     .get("ingress") or [] if ingress.get("ip") and ":" not in ingress["ip"]]
    externals = list(spec.get("externalIPs") or []) + balancers
    ranges = tuple(r.strip() for r in spec.get("loadBalancerSourceRanges") or [] if ":" not in r and r.strip())
    node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
    return [ServicePort(
        namespace=metadata.get("namespace", "default"), name=metadata["name"], port_name=port.get("name") or "",
        protocol=(port.get("protocol") or "TCP").lower(), cluster_ip=cluster_ips[0], port=int(port["port"]),
        node_port=int(port.get("nodePort") or 0) if node_ports else 0,
        external_ips=tuple(ip for ip in externals if ":" not in ip), affinity_seconds=affinity,
        external_local=spec.get("externalTrafficPolicy") == "Local" and bool(node_ports or externals),
        internal_local=spec.get("internalTrafficPolicy") == "Local",
        load_balancer_ips=tuple(balancers), source_ranges=ranges,
    ) for port in spec.get("ports") or []]


def endpoints_for(port: ServicePort, slices: Iterable[Object]) -> list[Endpoint]:
    """The endpoints of ``port`` over the Service's EndpointSlices (matched by port name and
    protocol, as kube-proxy matches them), deduplicated by address and sorted."""
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") != "IPv4":
            continue
        target = next((int(p["port"]) for p in endpoint_slice.get("ports") or []
                       if (p.get("name") or "") == port.port_name
                       and (p.get("protocol") or "TCP").lower() == port.protocol and p.get("port")), None)
        if target is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            # a missing condition counts as true, as kube-proxy reads them (endpointslicecache.go)
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving") is not False
            for address in (endpoint.get("addresses") or [])[:1]:  # kube-proxy uses the first address
                found.setdefault((address, target), Endpoint(
                    ip=address, port=target, node=endpoint.get("nodeName") or "", ready=ready, serving=serving,
                    terminating=conditions.get("terminating") is True))
    return sorted(found.values())
