"""The endpoints of ``default/kubernetes``: this API server's advertised address and port, so that
pods reach the API through the Service's first address of the range (kube-apiserver's endpoint
reconciler, pkg/controlplane/reconcilers, which writes the Endpoints and the EndpointSlice both).

Several servers over one store each add their own address and keep the others' (the "master
count" reconciler's union); a server that is gone is not removed (kube-apiserver's lease reconciler
would, after its lease expires: left for later). A loopback advertise address is never written:
Endpoints may not hold one, and pods could not reach it anyway.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable

from pilothouse.apiserver.registry import ResourceStorage, WriteContext
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.meta import Object

__all__ = ["advertise_address", "reconcile_kubernetes_endpoints"]

log = logging.getLogger("pilothouse.apiserver.endpoints")

StorageOf = Callable[[str, str, str], ResourceStorage]
_CONTEXT = WriteContext(field_manager="pilothouse-apiserver")


def advertise_address(bind_address: str, explicit: str = "") -> str:
    """kube-apiserver's --advertise-address default: the bind address, or for an unspecified one
    (0.0.0.0) the address this host reaches the default route from."""
    if explicit:
        return explicit
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(bind_address).is_unspecified:
            return bind_address
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # a UDP "connect" only picks the route; nothing is sent
        return str(probe.getsockname()[0])
    return bind_address


def _addresses(endpoints: Object | None) -> list[str]:
    subsets = (endpoints or {}).get("subsets") or []
    return [a["ip"] for subset in subsets for a in subset.get("addresses") or [] if a.get("ip")]


async def _put(storage: ResourceStorage, obj: Object) -> None:
    name = obj["metadata"]["name"]
    try:
        current = await storage.get("default", name)
    except StatusError as error:
        if error.code != 404:
            raise
        with contextlib.suppress(StatusError):  # AlreadyExists: another server won; the next start merges
            await storage.create("default", obj, _CONTEXT)
        return
    obj["metadata"] = {**current["metadata"], "labels": obj["metadata"]["labels"]}
    await storage.update("default", name, obj, _CONTEXT)


async def reconcile_kubernetes_endpoints(storage_of: StorageOf, address: str, port: int) -> None:
    """Add ``address:port`` to the Endpoints and EndpointSlice ``default/kubernetes``."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).is_loopback:
            log.info("API server advertised on loopback (%s): the kubernetes Service gets no endpoints", address)
            return
    endpoints = storage_of("", "v1", "endpoints")
    try:
        current: Object | None = await endpoints.get("default", "kubernetes")
    except StatusError as error:
        if error.code != 404:
            raise
        current = None
    addresses = sorted({*_addresses(current), address})
    if current is not None and _addresses(current) == addresses and \
            all(p.get("port") == port for s in current.get("subsets") or [] for p in s.get("ports") or []):
        return
    labels = {"endpointslice.kubernetes.io/skip-mirror": "true"}
    await _put(endpoints, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "subsets": [{"addresses": [{"ip": ip} for ip in addresses],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})
    await _put(storage_of("discovery.k8s.io", "v1", "endpointslices"), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in addresses],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
