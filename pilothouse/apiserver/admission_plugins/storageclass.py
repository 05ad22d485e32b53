"""DefaultStorageClass: a new PersistentVolumeClaim without a class gets the default one."""

from __future__ import annotations

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.machinery.admission import storageclass
from pilothouse.store.interface import Store

__all__ = ["DefaultStorageClass"]


class DefaultStorageClass(Plugin):
    name = "DefaultStorageClass"

    def __init__(self, store: Store) -> None:
        self.classes = WatchCache(store, "/registry/storage.k8s.io/storageclasses/")
        self.caches = (self.classes,)

    async def admit(self, attrs: Attributes) -> None:
        if attrs.operation == "CREATE" and attrs.is_main("", "persistentvolumeclaims"):
            storageclass.admit_claim(attrs.obj, await self.classes.list())
