"""Service cluster IPs and node ports, allocated when a Service is written.

Each allocation is a key in the store (``/registry/ranges/serviceips/<ip>``,
``/registry/ranges/servicenodeports/<port>``), created atomically: two API servers over one etcd can
never hand out the same address, which is how Kubernetes 1.31+ tracks IPs (IPAddress objects)
instead of one contended bitmap. Allocations are released when the Service is deleted, and on an
update, whatever the old Service held that the new one does not (a type or port change).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from pilothouse.apiserver.registry import StorageHooks, WriteContext
from pilothouse.machinery.errors import FieldError, invalid
from pilothouse.machinery.meta import Object
from pilothouse.store.interface import KeyExistsError, KeyNotFoundError, Store, StoreError

__all__ = ["ServiceAllocator", "ServiceHooks"]

log = logging.getLogger("pilothouse.apiserver.allocators")


_IP_PREFIX = "/registry/ranges/serviceips/"
_PORT_PREFIX = "/registry/ranges/servicenodeports/"
_NEEDS_IP = ("ClusterIP", "NodePort", "LoadBalancer")
_NEEDS_NODE_PORT = ("NodePort", "LoadBalancer")


class ServiceAllocator:
    def __init__(self, store: Store, cidr: str = "10.96.0.0/12", node_ports: tuple[int, int] = (30000, 32767)) -> None:
        self.store = store
        self.network = ipaddress.ip_network(cidr)
        self.node_ports = node_ports
        # The first address belongs to the "kubernetes" service, as in Kubernetes.
        self.first_ip = str(self.network.network_address + 1)

    def _random_ip(self) -> str:
        hosts = self.network.num_addresses - 2
        return str(self.network.network_address + 2 + random.randrange(max(hosts - 1, 1)))

    async def _reserve(self, key: str, owner: str) -> bool:
        try:
            await self.store.create(key, owner.encode())
        except KeyExistsError:
            return False
        return True

    @staticmethod
    def held(service: Object) -> set[str]:
        """The allocation keys ``service`` holds."""
        spec = service.get("spec") or {}
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        keys = {_IP_PREFIX + ip for ip in ips if ip and ip != "None"}
        keys |= {f"{_PORT_PREFIX}{port['nodePort']}" for port in spec.get("ports") or () if port.get("nodePort")}
        if spec.get("healthCheckNodePort"):
            keys.add(f"{_PORT_PREFIX}{spec['healthCheckNodePort']}")
        return keys

    async def release(self, service: Object, keep: Object | None = None) -> None:
        """Free what ``service`` holds, except what ``keep`` (its replacement) still holds."""
        for key in sorted(self.held(service) - (self.held(keep) if keep is not None else set())):
            await self._delete(key)

    async def _delete(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except KeyNotFoundError:
            return  # already free
        except StoreError:
            # The Service write itself succeeded: failing it now would be wrong, but a leaked
            # port must not go unnoticed (kube-apiserver logs it and its repair loop frees it).
            log.exception("could not release service allocation %s", key)

    async def allocate(self, service: Object, old: Object | None, dry_run: bool) -> list[str]:
        """Fill clusterIP(s) and nodePorts the Service needs. Returns the keys reserved (to undo)."""
        spec = service.setdefault("spec", {})
        name = service["metadata"].get("name", "")
        owner = f"{service['metadata'].get('namespace', '')}/{name}"
        service_type = spec.get("type", "ClusterIP")
        reserved: list[str] = []
        old_spec = (old or {}).get("spec") or {}
        if service_type in _NEEDS_IP and not spec.get("clusterIP"):
            if old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
                spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
            else:
                ip = await self._allocate_ip(name, owner, dry_run, reserved)
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
        elif spec.get("clusterIP") and spec["clusterIP"] != "None" and spec["clusterIP"] != old_spec.get("clusterIP"):
            ip = spec["clusterIP"]
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                raise invalid("Service", "", name, [FieldError(
                    "FieldValueInvalid", "spec.clusterIPs[0]", "must be a valid IP address", [ip])]) from None
            if address not in self.network:
                raise invalid("Service", "", name, [FieldError(
                    "FieldValueInvalid", "spec.clusterIPs", f"failed to allocate IP {ip}: the provided IP "
                    f"({ip}) is not in the valid range. The range of valid IPs is {self.network}", [ip])])
            if not dry_run:
                if not await self._reserve(_IP_PREFIX + ip, owner):
                    raise invalid("Service", "", name, [FieldError(
                        "FieldValueInvalid", "spec.clusterIPs", f"failed to allocate IP {ip}: provided IP is "
                        "already allocated", [ip])])
                reserved.append(_IP_PREFIX + ip)
            spec.setdefault("clusterIPs", [ip])
        if service_type in _NEEDS_NODE_PORT:
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                         for p in old_spec.get("ports") or []}
            for index, port in enumerate(spec.get("ports") or []):
                if port.get("nodePort"):
                    if port["nodePort"] in old_ports.values():
                        continue
                    key = f"{_PORT_PREFIX}{port['nodePort']}"
                    if not dry_run:
                        if not await self._reserve(key, owner):
                            raise invalid("Service", "", name, [FieldError(
                                "FieldValueInvalid", f"spec.ports[{index}].nodePort",
                                "provided port is already allocated", port["nodePort"])])
                        reserved.append(key)
                    continue
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                port["nodePort"] = previous or await self._allocate_port(owner, dry_run, reserved)
        await self._health_check_port(spec, old_spec, name, owner, dry_run, reserved)
        return reserved

    async def _health_check_port(self, spec: dict[str, Any], old_spec: dict[str, Any], name: str, owner: str,
                                 dry_run: bool, reserved: list[str]) -> None:
        """kube-apiserver's healthCheckNodePort: a LoadBalancer Service with externalTrafficPolicy
        Local gets a node port of its own, where each node's proxy says whether it has endpoints."""
        if spec.get("type") != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local":
            return
        wanted = spec.get("healthCheckNodePort")
        if wanted and wanted == old_spec.get("healthCheckNodePort"):
            return
        if not wanted:
            spec["healthCheckNodePort"] = await self._allocate_port(owner, dry_run, reserved)
            return
        if not dry_run:
            if not await self._reserve(f"{_PORT_PREFIX}{wanted}", owner):
                raise invalid("Service", "", name, [FieldError(
                    "FieldValueInvalid", "spec.healthCheckNodePort", "provided port is already allocated", wanted)])
            reserved.append(f"{_PORT_PREFIX}{wanted}")

    async def _allocate_ip(self, name: str, owner: str, dry_run: bool, reserved: list[str]) -> str:
        for _ in range(256):
            ip = self._random_ip()
            if dry_run:
                return ip
            if await self._reserve(_IP_PREFIX + ip, owner):
                reserved.append(_IP_PREFIX + ip)
                return ip
        raise invalid("Service", "", name, [FieldError(
            "FieldValueInvalid", "spec.clusterIPs", "failed to allocate IP: range is full", None)])

    async def _allocate_port(self, owner: str, dry_run: bool, reserved: list[str]) -> int:
        low, high = self.node_ports
        for _ in range(256):
            port = random.randint(low, high)
            if dry_run:
                return port
            if await self._reserve(f"{_PORT_PREFIX}{port}", owner):
                reserved.append(f"{_PORT_PREFIX}{port}")
                return port
        raise invalid("Service", "", owner, [FieldError(
            "FieldValueInvalid", "spec.ports", "failed to allocate a node port: range is full", None)])

    async def undo(self, keys: list[str]) -> None:
        for key in keys:
            await self._delete(key)


class ServiceHooks(StorageHooks):
    """:class:`~pilothouse.apiserver.registry.StorageHooks` for Services."""

    def __init__(self, allocator: ServiceAllocator) -> None:
        self.allocator = allocator

    async def before_write(self, new: Object, old: Object | None,
                           ctx: WriteContext) -> Callable[[], Awaitable[None]]:
        reserved = await self.allocator.allocate(new, old, ctx.dry_run)

        async def undo() -> None:
            await self.allocator.undo(reserved)

        return undo

    async def after_update(self, new: Object, old: Object) -> None:
        await self.allocator.release(old, keep=new)

    async def after_delete(self, obj: Object) -> None:
        await self.allocator.release(obj)
