"""The cluster as the DNS server sees it: informer caches of Services, EndpointSlices and Namespaces.

The same three watches CoreDNS's ``kubernetes`` plugin keeps (it watches Pods only in ``pods
verified`` mode, which kubeadm does not use). Lookups go through informer indexes: Services by
cluster IP and slices by Service and by address, so an answer never scans the cluster.
"""

from __future__ import annotations

import time

from pilothouse.client.informer import EventHandler, Informer, InformerFactory
from pilothouse.client.rest import resource
from pilothouse.machinery.meta import Object

__all__ = ["ENDPOINTSLICES", "NAMESPACES", "SERVICES", "InformerView"]


SERVICES = resource("", "v1", "services")
ENDPOINTSLICES = resource("discovery.k8s.io", "v1", "endpointslices")
NAMESPACES = resource("", "v1", "namespaces")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _cluster_ips(service: Object) -> list[str]:
    spec = service.get("spec") or {}
    return [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]


def _slice_service(slice_: Object) -> list[str]:
    name = (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{slice_['metadata']['namespace']}/{name}"] if name else []


def _slice_addresses(slice_: Object) -> list[str]:
    return sorted({a for e in slice_.get("endpoints") or () for a in e.get("addresses") or ()})


class InformerView:
    """A :class:`~pilothouse.components.dns.records.ClusterView` over shared informers."""

    def __init__(self, factory: InformerFactory) -> None:
        self.services: Informer = factory.informer(SERVICES)
        self.endpoint_slices: Informer = factory.informer(ENDPOINTSLICES)
        self.namespaces: Informer = factory.informer(NAMESPACES)
        self.services.add_indexer("ip", _cluster_ips)
        self.endpoint_slices.add_indexer("service", _slice_service)
        self.endpoint_slices.add_indexer("ip", _slice_addresses)
        self.serial = int(time.time())
        self.generation = 0
        touch = EventHandler(lambda _obj: self._touch(), lambda _old, _new: self._touch(), lambda _obj: self._touch())
        for informer in (self.services, self.endpoint_slices, self.namespaces):
            informer.add_handler(touch)

    def _touch(self) -> None:
        self.serial = int(time.time())
        self.generation += 1

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in (self.services, self.endpoint_slices, self.namespaces))

    def namespace_exists(self, namespace: str) -> bool:
        return self.namespaces.get(namespace) is not None

    def service(self, namespace: str, name: str) -> Object | None:
        return self.services.get(f"{namespace}/{name}")

    def slices(self, namespace: str, service: str) -> list[Object]:
        return self.endpoint_slices.by_index("service", f"{namespace}/{service}")

    def services_by_ip(self, ip: str) -> list[Object]:
        return self.services.by_index("ip", ip)

    def slices_by_ip(self, ip: str) -> list[Object]:
        return self.endpoint_slices.by_index("ip", ip)
