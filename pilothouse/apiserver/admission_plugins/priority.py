"""Priority (pods' priority from their PriorityClass; one global default) and
DefaultTolerationSeconds (pods tolerate not-ready/unreachable nodes for 300 s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.machinery import meta
from pilothouse.machinery.admission import priority, tolerationseconds
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds.policy_kinds import SYSTEM_PRIORITY_CLASSES
from pilothouse.store.interface import Store

if TYPE_CHECKING:
    from pilothouse.apiserver.registry import ResourceStorage

__all__ = ["DefaultTolerationSeconds", "Priority", "bootstrap_priority_classes"]


class Priority(Plugin):
    name = "Priority"

    def __init__(self, store: Store) -> None:
        self.classes = WatchCache(store, "/registry/scheduling.k8s.io/priorityclasses/")
        self.caches = (self.classes,)

    async def admit(self, attrs: Attributes) -> None:
        if not attrs.is_main("", "pods"):
            return
        if attrs.operation == "UPDATE" and attrs.old is not None:
            priority.keep_on_update(attrs.obj, attrs.old)
        elif attrs.operation == "CREATE":
            classes = {pc["metadata"]["name"]: pc for pc in await self.classes.list()}
            priority.admit_pod(attrs.obj, classes)

    async def validate(self, attrs: Attributes) -> None:
        if not attrs.is_main("scheduling.k8s.io", "priorityclasses"):
            return
        if attrs.operation == "DELETE":
            # kube-apiserver's PriorityClass storage refuses this itself; a validating step here
            # keeps the registry free of per-kind code.
            priority.validate_delete(attrs.obj)
        else:
            priority.validate_priority_class(attrs.obj, await self.classes.list(), attrs.operation == "CREATE")


class DefaultTolerationSeconds(Plugin):
    name = "DefaultTolerationSeconds"

    async def admit(self, attrs: Attributes) -> None:
        if attrs.is_main("", "pods"):
            tolerationseconds.admit_pod(attrs.obj)


async def bootstrap_priority_classes(storage: ResourceStorage) -> None:
    """The scheduling post-start hook: create the system PriorityClasses a cluster always has."""
    from pilothouse.apiserver.registry import WriteContext  # here: the registry imports this package

    for system_class in SYSTEM_PRIORITY_CLASSES:
        try:
            await storage.create(None, meta.clone(system_class), WriteContext(field_manager="pilothouse-apiserver"))
        except StatusError as error:
            if error.reason != "AlreadyExists":
                raise
