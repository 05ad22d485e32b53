"""LimitRanger: defaults and bounds from the namespace's LimitRanges, on pod create (and bounds on
claims)."""

from __future__ import annotations

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.machinery.admission import limitranger
from pilothouse.store.interface import Store

__all__ = ["LimitRanger"]


class LimitRanger(Plugin):
    name = "LimitRanger"

    def __init__(self, store: Store) -> None:
        self.limit_ranges = WatchCache(store, "/registry/core/limitranges/")
        self.caches = (self.limit_ranges,)

    async def admit(self, attrs: Attributes) -> None:
        # Pod updates cannot change resources, so Kubernetes skips them (SupportsAttributes).
        if attrs.operation == "CREATE" and attrs.is_main("", "pods"):
            limitranger.default_pod(attrs.obj, await self._ordered(attrs.namespace))

    async def validate(self, attrs: Attributes) -> None:
        if attrs.operation == "CREATE" and attrs.is_main("", "pods"):
            limitranger.validate_pod(attrs.obj, await self._ordered(attrs.namespace))
        elif attrs.operation != "DELETE" and attrs.is_main("", "persistentvolumeclaims"):  # or a resize
            limitranger.validate_claim(attrs.obj, await self._ordered(attrs.namespace))

    async def _ordered(self, namespace: str) -> list[dict[str, object]]:
        return sorted(await self.limit_ranges.list(namespace), key=lambda lr: str(lr["metadata"]["name"]))
