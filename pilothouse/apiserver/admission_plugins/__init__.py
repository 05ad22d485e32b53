"""The admission plugins kube-apiserver enables by default that users notice, as one chain.

Every plugin speaks one vocabulary: :class:`Attributes` in, the object mutated in place (``admit``,
the mutating phase) or a :class:`~pilothouse.machinery.admission.Refusal` raised (``admit`` or
``validate``, the validating phase), which the chain renders as Kubernetes' 403. The chain runs
them in kube-apiserver's order (``AllOrderedPlugins``): LimitRanger, ServiceAccount, NodeRestriction,
PodSecurity, Priority, DefaultTolerationSeconds, DefaultStorageClass, then ResourceQuota last of all, so that quota is
charged for the object as it will be stored. NamespaceLifecycle stays in ``apiserver/admission.py``.
The rules themselves are pure functions in ``machinery/admission`` and ``machinery/quota``; the
plugins here feed them from watch-fed caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.errors import StatusError, forbidden
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["AdmissionChain", "Attributes", "Plugin"]


@dataclass
class Attributes:
    """One write as admission sees it (admission.Attributes)."""

    operation: Literal["CREATE", "UPDATE", "DELETE"]
    resource: ResourceType
    namespace: str
    #: The object as it will be stored; on DELETE, the object being deleted.
    obj: Object
    old: Object | None = None
    subresource: str = ""
    dry_run: bool = False
    #: The request's warnings (the write context's list), sent back as ``Warning`` headers.
    warnings: list[str] = field(default_factory=list)

    def is_main(self, group: str, plural: str) -> bool:
        """The resource itself (not a subresource) of ``group``/``plural``."""
        return not self.subresource and self.resource.group == group and self.resource.plural == plural

    def warn(self, message: str) -> None:
        """Add a warning once, as kube-apiserver's warning recorder deduplicates them (a write
        retried after a lost race runs admission again)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def refused(self, reason: str) -> StatusError:
        """admission.NewForbidden: named by the object's name, or its generateName before one exists."""
        metadata = self.obj.get("metadata") or {}
        name = metadata.get("name") or metadata.get("generateName") or "Unknown"
        return forbidden(self.resource.plural, self.resource.group, name, reason)


class Plugin:
    """A plugin overrides either phase or both; the caches it reads are started with the chain."""

    name = "plugin"
    caches: tuple[WatchCache, ...] = ()

    async def admit(self, attrs: Attributes) -> None:
        return None

    async def validate(self, attrs: Attributes) -> None:
        return None


class AdmissionChain:
    def __init__(self, plugins: list[Plugin]) -> None:
        self.plugins = plugins

    @classmethod
    def default(cls, store: Store) -> AdmissionChain:
        # Imported here: the plugin modules import this one for the vocabulary.
        from pilothouse.apiserver.admission_plugins import (
            limitranger,
            noderestriction,
            podsecurity,
            priority,
            resourcequota,
            serviceaccount,
            storageclass,
        )

        return cls([limitranger.LimitRanger(store), serviceaccount.ServiceAccount(store),
                    noderestriction.NodeRestriction(),
                    podsecurity.PodSecurity(store), priority.Priority(store), priority.DefaultTolerationSeconds(),
                    storageclass.DefaultStorageClass(store), resourcequota.ResourceQuota(store)])

    def start(self) -> None:
        for plugin in self.plugins:
            for cache in plugin.caches:
                cache.start()

    async def close(self) -> None:
        for plugin in self.plugins:
            for cache in plugin.caches:
                await cache.close()

    async def admit(self, attrs: Attributes) -> None:
        """The mutating phase."""
        for plugin in self.plugins:
            try:
                await plugin.admit(attrs)
            except Refusal as refusal:
                raise attrs.refused(str(refusal)) from None

    async def validate(self, attrs: Attributes) -> None:
        """The validating phase."""
        for plugin in self.plugins:
            try:
                await plugin.validate(attrs)
            except Refusal as refusal:
                raise attrs.refused(str(refusal)) from None
