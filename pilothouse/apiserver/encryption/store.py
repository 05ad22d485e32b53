"""A :class:`~pilothouse.store.interface.Store` that encrypts values per resource on their way down.

It wraps whatever backend the server opened, so SQLite's file and etcd hold only ciphertext for the
configured resources, while everything above (the generic registry, lists, watches, the admission
caches) keeps reading plaintext bytes without knowing. The resource of an entry comes from its key,
``/registry/<group|core>/<plural>/...``; the lookup order is kube-apiserver's
(``transformerFromOverrides``): exactly ``plural.group``, then ``*.group``, then ``*.*``, else the
identity transformer that refuses encrypted data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from pilothouse.apiserver.encryption.config import ANY, EncryptionConfiguration, GroupResource, load_config
from pilothouse.apiserver.encryption.stale import StaleKeyValue
from pilothouse.apiserver.encryption.transformers import (
    IdentityTransformer,
    PrefixTransformers,
    Transformer,
    TransformError,
    provider_transformers,
)
from pilothouse.store.interface import KeyValue, ListIndex, ListResult, Store, WatchEvent, WatchTrigger

__all__ = ["EncryptingStore", "Transformers"]

log = logging.getLogger("pilothouse.apiserver.encryption")

#: kube-apiserver checks the file for changes once a minute (EncryptionConfigFileChangePollDuration).
RELOAD_INTERVAL = 60.0

# Entries that are not API objects (the Service IP and node port bitmaps) are never encrypted, as in
# Kubernetes, where they are not REST resources an EncryptionConfiguration can name.
_NOT_RESOURCES = "/registry/ranges/"
# events.k8s.io Events share the core "events" storage (hence the config names only ``events``).
_ALIASES = {GroupResource("events.k8s.io", "events"): GroupResource("", "events")}
_IDENTITY = IdentityTransformer()


class Transformers:
    """Which transformer each store key goes through, from one configuration."""

    def __init__(self, config: EncryptionConfiguration) -> None:
        self._table: dict[GroupResource, PrefixTransformers] = {
            gr: provider_transformers(providers) for gr, providers in config.providers_by_resource().items()}
        self._by_prefix: dict[str, Transformer | None] = {}

    def for_key(self, key: str) -> Transformer | None:
        """None for keys that are not resources (left untouched)."""
        parts = key.split("/", 4)
        if len(parts) < 4 or key.startswith(_NOT_RESOURCES):
            return None
        prefix = "/".join(parts[:4])
        if prefix not in self._by_prefix:
            self._by_prefix[prefix] = self._lookup(GroupResource("" if parts[2] == "core" else parts[2], parts[3]))
        return self._by_prefix[prefix]

    def _lookup(self, gr: GroupResource) -> Transformer:
        gr = _ALIASES.get(gr, gr)
        for candidate in (gr, GroupResource(gr.group, "*"), ANY):
            if candidate in self._table:
                return self._table[candidate]
        return _IDENTITY


class EncryptingStore:
    """The wrapped store, values transformed per key; everything else passes through."""

    def __init__(self, inner: Store, path: str | Path, *, automatic_reload: bool = False,
                 reload_interval: float = RELOAD_INTERVAL) -> None:
        self.inner = inner
        self._path = Path(path)
        self._digest = hashlib.sha256(self._path.read_bytes()).digest()
        self.transformers = Transformers(load_config(self._path))
        self._reload_interval = reload_interval if automatic_reload else 0.0
        self._reloader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- transforms

    def _read(self, kv: KeyValue, *, name_key: bool = True) -> KeyValue:
        """The entry as stored before transformation. A failure names the key, as kube-apiserver's
        list and watch do (its get, ``name_key=False``, answers with the bare reason)."""
        transformer = self.transformers.for_key(kv.key)
        if transformer is None:
            return kv
        try:
            plain, stale = transformer.from_storage(kv.value, kv.key.encode())
        except TransformError as error:
            if not name_key:
                raise
            raise TransformError(f"unable to transform key {json.dumps(kv.key)}: {error}", key=kv.key) from None
        if stale:
            return StaleKeyValue(kv.key, plain, kv.create_revision, kv.mod_revision)
        return kv if plain is kv.value else dataclasses.replace(kv, value=plain)

    def _write(self, key: str, value: bytes) -> bytes:
        transformer = self.transformers.for_key(key)
        return value if transformer is None else transformer.to_storage(value, key.encode())

    # ------------------------------------------------------------- the Store protocol

    async def start(self) -> None:
        await self.inner.start()
        if self._reload_interval > 0:
            self._reloader = asyncio.create_task(self._reload_loop())

    async def close(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        await self.inner.close()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def get(self, key: str) -> KeyValue | None:
        kv = await self.inner.get(key)
        return None if kv is None else self._read(kv, name_key=False)

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0,
                   index: ListIndex | None = None) -> ListResult:
        # ``index`` is not passed down: the inner store indexes the stored bytes, here ciphertext.
        result = await self.inner.list(prefix, limit=limit, start_after=start_after, revision=revision)
        return ListResult([self._read(kv) for kv in result.items], result.revision, result.more)

    async def count(self, prefix: str) -> int:
        return await self.inner.count(prefix)

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        kv = await self.inner.create(key, self._write(key, value), ttl=ttl)
        return dataclasses.replace(kv, value=value)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, ttl: int = 0) -> KeyValue:
        kv = await self.inner.update(key, self._write(key, value), expected_mod_revision=expected_mod_revision,
                                     ttl=ttl)
        return dataclasses.replace(kv, value=value)

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> KeyValue:
        return self._read(await self.inner.delete(key, expected_mod_revision=expected_mod_revision))

    def watch(self, prefix: str, start_revision: int,
              trigger: WatchTrigger | None = None) -> AsyncIterator[WatchEvent]:
        # The backend's extractor sees ciphertext for encrypted resources, cannot read it, and so
        # hands those events to every watcher of the field: correct, only not narrowed. Its ``field``
        # is dropped: the backend's index holds no ciphertext, and would skip those events.
        if trigger is not None and trigger.field is not None:
            trigger = dataclasses.replace(trigger, field=None)
        return _DecryptingWatch(self, self.inner.watch(prefix, start_revision, trigger))

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    # ------------------------------------------------------------- automatic reload

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reload_interval)
            self.reload()

    def reload(self) -> bool:
        """Take the file's new content if it changed and is valid; a broken edit keeps the old
        configuration (and is logged), as kube-apiserver's DynamicEncryptionConfigContent does."""
        try:
            data = self._path.read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest == self._digest:
                return False
            transformers = Transformers(load_config(self._path))
        except (OSError, ValueError) as error:
            log.error("encryption provider configuration not reloaded: %s", error)
            return False
        self.transformers, self._digest = transformers, digest
        log.info("encryption provider configuration reloaded from %s", self._path)
        return True


class _DecryptingWatch:
    """The backend's watch with every event's values decrypted; closes the backend watch with it."""

    def __init__(self, store: EncryptingStore, inner: AsyncIterator[WatchEvent]) -> None:
        self._store = store
        self._inner = inner

    def __aiter__(self) -> _DecryptingWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self._inner.__anext__()
        prev = None if event.prev is None else self._store._read(event.prev)
        return WatchEvent(event.type, self._store._read(event.kv), prev)

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
