"""The one generic resource store: every kind's create/get/list/update/patch/delete/watch.

The pipeline belongs here, not to the kinds (kube-apiserver's ``genericregistry.Store`` with
``rest.BeforeCreate``/``BeforeUpdate``): decode checks, system metadata, defaulting, the kind's
prepare hook, validation, field-manager bookkeeping, admission, the store write, error translation.
A kind changes behaviour only through its :class:`~pilothouse.machinery.kinds.Strategy`.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pilothouse.apiserver import admission, errors_translate, fieldindex, writes
from pilothouse.apiserver.admission_plugins import AdmissionChain, Attributes
from pilothouse.apiserver.encryption import is_stale
from pilothouse.apiserver.objects import (
    bookmark_object,
    decode_continue,
    decode_stored,
    encode_continue,
    encode_for_store,
    encode_for_store_cut,
    stored_json,
    written_json,
)
from pilothouse.apiserver.watchjson import SharedEventJSON
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError, bad_request, conflict, expired, not_found
from pilothouse.machinery.jsonbytes import dumps_kept
from pilothouse.machinery.kinds import ResourceType, Strategy
from pilothouse.machinery.kinds.conversion import converter_for
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import FieldSelector, LabelSelector
from pilothouse.store.interface import CompactedError, EventType, KeyValue, Store, StoreError, WatcherTooSlowError

__all__ = ["DeleteOptions", "ListOptions", "ResourceStorage", "StorageHooks", "WatchEvent", "WriteContext", "Written"]


_TRUSTED = Strategy()

# How many times a read-modify-write retries on a revision race it did not ask for.
_MAX_RETRIES = 16


@dataclass
class WriteContext:
    """Per-request options of a write, and what the write reports back (warnings)."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Strict"  # the server default for kubectl is Strict; Ignore/Warn otherwise
    force: bool = False
    user_agent: str = ""
    #: "Apply" for server-side apply, whose merge already recorded field ownership.
    operation: str = "Update"
    #: A subresource a handler writes through the main resource (scale): it names the managedFields entry.
    managed_subresource: str = ""
    warnings: builtins.list[str] = field(default_factory=list)

    def manager(self) -> str:
        if self.field_manager:
            return self.field_manager
        # Kubernetes derives the manager from the User-Agent's program name.
        agent = self.user_agent.split("/", 1)[0].strip()
        return agent or "unknown"


@dataclass
class ListOptions:
    label_selector: LabelSelector = field(default_factory=LabelSelector)
    field_selector: FieldSelector = field(default_factory=FieldSelector)
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None


class WatchEvent:
    """One watch event. Holds the object as JSON bytes, as a dict, or both; whichever is missing is
    derived on demand (most watchers only need the bytes)."""

    __slots__ = ("_json", "_object", "type")

    def __init__(self, type: str, object: Object | None = None, json: bytes | None = None) -> None:
        self.type = type  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
        self._object = object
        self._json = json

    @property
    def object(self) -> Object:
        if self._object is None:
            self._object = orjson.loads(self._json or b"{}")
        return self._object

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = dumps_kept(self._object)  # shared by every watcher it is queued for
        return self._json


class Written:
    """A write's answer: the object as it was stored.

    After a store write it holds the bytes written (and where their metadata closes) and decodes
    them only when something asks for :attr:`object` (a storage hook, a Table, a caller inside the
    server); :attr:`json` is then spliced from those bytes, byte for byte what encoding the decoded
    object gives. Once the object was handed out (it may have been changed since), :attr:`json`
    encodes it, as before. A write that stored nothing (a dry run, a no-op) holds the object.
    """

    __slots__ = ("_cut", "_decode", "_kv", "_object")

    def __init__(self, obj: Object | None = None, kv: KeyValue | None = None, cut: int = 0,
                 decode: Callable[[KeyValue], Object] | None = None) -> None:
        self._object = obj
        self._kv = kv
        self._cut = cut
        self._decode = decode

    @property
    def object(self) -> Object:
        if self._object is None:
            assert self._kv is not None and self._decode is not None
            self._object = self._decode(self._kv)
            self._kv = None
        return self._object

    @property
    def json(self) -> bytes:
        if self._kv is not None:
            return written_json(self._kv.value, self._cut, self._kv.mod_revision)
        return orjson.dumps(self.object)


class StorageHooks:
    """Side effects a kind needs around its writes (a Service's IP and port allocations).

    ``before_write`` returns an undo coroutine factory, called if the store write then fails.
    """

    async def before_write(self, new: Object, old: Object | None, ctx: WriteContext) -> Callable[[], Awaitable[None]]:
        async def nothing() -> None:
            return None

        return nothing

    async def after_write(self, obj: Object) -> None:
        """``obj`` was just stored (created or updated)."""
        return None

    async def after_update(self, new: Object, old: Object) -> None:
        """``old`` was just replaced by ``new`` (after :meth:`after_write`): free what only ``old`` held."""
        return None

    async def after_delete(self, obj: Object) -> None:
        return None

    def reads_written(self) -> bool:
        """Whether :meth:`after_write` or :meth:`after_update` is a subclass's (it is handed the
        written object, so the write decodes it; the others answer from the stored bytes)."""
        cls = type(self)
        return cls.after_write is not StorageHooks.after_write or cls.after_update is not StorageHooks.after_update


class ResourceStorage:
    """Create/read/update/delete/watch for one resource type over the revisioned store."""

    def __init__(self, resource: ResourceType, store: Store, namespaces: admission.NamespaceLifecycle,
                 hooks: StorageHooks | None = None, admission_chain: AdmissionChain | None = None,
                 event_ttl: int = 0) -> None:
        self.resource = resource
        #: Seconds every write of this resource lives after it (``--event-ttl`` for the kinds whose
        #: strategy ``expires``; 0: forever).
        self.ttl = event_ttl if resource.strategy.expires else 0
        self.store = store
        self.namespaces = namespaces
        self.hooks = hooks or StorageHooks()
        self._hooks_read = self.hooks.reads_written()
        self.admission = admission_chain or AdmissionChain([])
        self._convert = converter_for(resource.group, resource.kind)
        self._own_version = b'{"apiVersion":"' + resource.api_version.encode() + b'"'
        self._event_json = SharedEventJSON(stored_json)  # one copy of an event's bytes for all watchers
        self._fields = fieldindex.FieldReaders(resource)  # indexed fields, read once per event

    # ----------------------------------------------------------------- reads

    def _view(self, kv: KeyValue) -> KeyValue:
        """The stored entry as this version of the resource serves it: an object written through
        another version (an autoscaling/v1 HPA read as v2) is converted; every other entry is
        passed through untouched, bytes and all."""
        if self._convert is None or kv.value.startswith(self._own_version):
            return kv
        converted = self._convert(orjson.loads(kv.value), self.resource.version)
        return dataclasses.replace(kv, value=encode_for_store(converted))

    def _decode(self, kv: KeyValue) -> Object:
        """The stored object as served: converted (built-ins, :meth:`_view`), then through the
        strategy's decorator where one is needed (custom resources)."""
        obj = decode_stored(self._view(kv))
        if self._needs_decorating(kv):
            self.resource.strategy.decorate(obj)  # type: ignore[misc]
        return obj

    def _written(self, kv: KeyValue, value: bytes, cut: int) -> Written:
        """The answer to a write that stored ``value`` (``cut``: :func:`encode_for_store_cut`'s) as
        ``kv``: from the bytes when they are served as stored (in this version, no decorator)."""
        if kv.value is value and not self._needs_decorating(kv) and (
                self._convert is None or value.startswith(self._own_version)):
            return Written(kv=kv, cut=cut, decode=self._decode)
        return Written(self._decode(kv))

    def _needs_decorating(self, kv: KeyValue) -> bool:
        """Whether a stored object must pass the strategy's decorator before it is served: not
        when it was written in the served version after the decorator last changed (it was
        shaped by the same rules at write time), which lets most reads skip decoding."""
        strategy = self.resource.strategy
        if strategy.decorate is None:
            return False
        return kv.mod_revision <= strategy.decorated_through or not kv.value.startswith(self._own_version)

    def _key(self, namespace: str | None, name: str) -> str:
        return self.resource.key(namespace if self.resource.namespaced else None, name)

    def _not_found(self, name: str) -> StatusError:
        return not_found(self.resource.plural, self.resource.group, name)

    async def _current(self, key: str, name: str) -> KeyValue:
        """The stored entry at ``key`` (a 404 when there is none), as the store holds it."""
        try:
            kv = await self.store.get(key)
        except StoreError as error:
            raise errors_translate.from_store(error, self.resource, name) from error
        if kv is None:
            raise self._not_found(name)
        return kv

    async def _get_kv(self, namespace: str | None, name: str) -> KeyValue:
        return self._view(await self._current(self._key(namespace, name), name))

    async def get(self, namespace: str | None, name: str) -> Object:
        return self._decode(await self._get_kv(namespace, name))

    async def get_json(self, namespace: str | None, name: str) -> bytes:
        """GET without decoding: the stored JSON with its resourceVersion."""
        kv = await self._get_kv(namespace, name)
        if self._needs_decorating(kv):
            return orjson.dumps(self._decode(kv))
        return stored_json(kv)

    async def list(self, namespace: str | None, options: ListOptions) -> tuple[builtins.list[Object], str, str]:
        """Returns (items, resourceVersion, continue token)."""
        items: builtins.list[Object] = []
        revision = token = ""
        async for entries, page_revision, page_token in self.list_pages(namespace, options):
            items.extend(obj if obj is not None else self._decode(kv) for kv, obj in entries)
            revision, token = page_revision, page_token
        return items, revision, token

    async def list_pages(self, namespace: str | None, options: ListOptions, page_size: int = 500,
                         ) -> AsyncIterator[tuple[builtins.list[tuple[KeyValue, Object | None]], str, str]]:
        """The list in pages of at most ``page_size`` store entries, all read at one revision, so
        that a large list can be streamed out without holding it whole. Each page comes with the
        list's resourceVersion and, on the last page, the continue token (if ``limit`` cut it).
        An entry's object is decoded only when selectors needed it."""
        prefix = self.resource.key_prefix(namespace)
        start_after = ""
        revision = 0
        if options.continue_token:
            revision, start_after = decode_continue(options.continue_token, prefix)
        filtered = not (options.label_selector.empty() and options.field_selector.empty())
        may_match = fieldindex.list_prefilter(self.resource, options.field_selector)
        store_index = fieldindex.list_index(self.resource, options.field_selector)
        limit = options.limit
        returned = 0
        try:
            while True:
                # With selectors a page may need more than one read; keep reading at the same
                # revision until the page is full, as the etcd3 store does.
                want = page_size if not limit or filtered else min(page_size, limit - returned + 1)
                batch = await self.store.list(prefix, limit=want, start_after=start_after, revision=revision,
                                              index=store_index)
                revision = batch.revision
                page: builtins.list[tuple[KeyValue, Object | None]] = []
                full = False
                for index, stored in enumerate(batch.items):
                    kv = self._view(stored)
                    start_after = kv.key
                    if may_match is not None and not may_match(kv):
                        continue
                    obj = None
                    if filtered or self._needs_decorating(kv):
                        obj = self._decode(kv)
                    if filtered and (obj is None or not self.matches(obj, options.label_selector,
                                                                      options.field_selector)):
                        continue
                    page.append((kv, obj))
                    if limit and returned + len(page) >= limit:
                        full = True
                        more = batch.more or index + 1 < len(batch.items)
                        break
                returned += len(page)
                if full:
                    yield page, str(revision), encode_continue(revision, start_after) if more else ""
                    return
                if not batch.more:
                    yield page, str(revision), ""
                    return
                yield page, str(revision), ""
        except CompactedError as error:
            if options.continue_token:
                raise expired("The provided continue parameter is too old to display a consistent list "
                              "result. You can start a new list without the continue parameter.") from error
            raise errors_translate.from_store(error, self.resource, "") from error
        except StoreError as error:
            raise errors_translate.from_store(error, self.resource, "") from error

    def matches(self, obj: Object, labels: LabelSelector, fields: FieldSelector) -> bool:
        if not labels.empty() and not labels.matches(obj["metadata"].get("labels")):
            return False
        return fields.empty() or fields.matches(self.resource.strategy.selectable_fields(obj))

    # ---------------------------------------------------------------- create

    async def create(self, namespace: str | None, obj: Object, ctx: WriteContext) -> Object:
        return (await self.create_written(namespace, obj, ctx)).object

    async def create_written(self, namespace: str | None, obj: Object, ctx: WriteContext) -> Written:
        """:meth:`create`, answered as :class:`Written` (the REST handler's: no decode to answer)."""
        resource = self.resource
        writes.check_type_meta(obj, resource)
        metadata = writes.check_namespace(obj, resource, namespace)
        writes.check_schema(obj, resource, ctx)
        strategy = resource.strategy
        strategy.default(obj)
        # The field manager records the object as decoded and defaulted, before the system fields,
        # mutating admission and PrepareForCreate, as kube-apiserver's create handler does: what an
        # admission plugin adds (a pod's service-account token volume) is nobody's. Objects a
        # controller creates from one template then record one FieldsV1, walked once (created.py).
        writes.track_managed_fields(None, obj, ctx, resource, "")
        generate_name = metadata.get("generateName")
        attempts = 8 if generate_name and not metadata.get("name") else 1
        writes.init_system_metadata(metadata)
        if resource.namespaced:
            await self.namespaces.admit_create(metadata.get("namespace", ""))
        # Mutating admission comes before PrepareForCreate, as in kube-apiserver (a pod's QoS class
        # must see the resources LimitRanger set).
        attributes = Attributes("CREATE", resource, metadata.get("namespace", ""), obj, dry_run=ctx.dry_run,
                                warnings=ctx.warnings)
        await self.admission.admit(attributes)
        strategy.prepare_for_create(obj)
        for attempt in range(attempts):
            if attempts > 1:
                metadata["name"] = f"{generate_name}{meta.generate_name_suffix()}"
            writes.validate_create(obj, resource)
            name = metadata["name"]
            await self.admission.validate(attributes)
            undo = await self.hooks.before_write(obj, None, ctx)
            if ctx.dry_run:
                return Written(obj)
            value, cut = encode_for_store_cut(obj)
            try:
                kv = await self.store.create(self._key(namespace, name), value, ttl=self.ttl)
            except StoreError as error:
                await undo()
                translated = errors_translate.from_store(error, resource, name)
                if translated.reason == "AlreadyExists" and attempt + 1 < attempts:
                    continue
                raise translated from error
            written = self._written(kv, value, cut)
            if self._hooks_read:
                await self.hooks.after_write(written.object)
            return written
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- update

    async def update(self, namespace: str | None, name: str, obj: Object, ctx: WriteContext,
                     subresource: str = "") -> tuple[Object, bool]:
        """PUT. Returns (object, created)."""
        written, created = await self.update_written(namespace, name, obj, ctx, subresource)
        return written.object, created

    async def update_written(self, namespace: str | None, name: str, obj: Object, ctx: WriteContext,
                             subresource: str = "") -> tuple[Written, bool]:
        """:meth:`update`, answered as :class:`Written`."""
        resource = self.resource
        writes.check_type_meta(obj, resource)
        writes.check_namespace(obj, resource, namespace)
        writes.check_name(obj, name)
        writes.check_schema(obj, resource, ctx)
        requested_rv = (obj.get("metadata") or {}).get("resourceVersion") or ""
        strategy = self._strategy(subresource)
        if not requested_rv and not strategy.allow_unconditional_update:
            raise writes.invalid_missing_rv(resource, name)

        async def mutate(current: Object) -> Object:
            # ``current`` is the stored object itself (see _read_modify_write): not to be changed.
            clone: Object = meta.clone(obj)
            return clone

        return await self._read_modify_write(namespace, name, mutate, ctx, subresource,
                                             create_if_missing=strategy.allow_create_on_update,
                                             new_object=obj)

    def _strategy(self, subresource: str) -> Strategy:
        strategy = self.resource.strategy_for(subresource)
        if strategy is not None:
            return strategy
        # A subresource without a strategy of its own changes exactly what its handler decided.
        return _TRUSTED

    async def guaranteed_update(self, namespace: str | None, name: str,
                                mutate: Callable[[Object], Awaitable[Object]], ctx: WriteContext,
                                subresource: str = "", create_if_missing: bool = False,
                                on_missing: Callable[[], Awaitable[Object]] | None = None,
                                ) -> tuple[Object, bool]:
        """Apply ``mutate`` to the current object and store it, retrying on revision races.
        ``on_missing`` builds the object to create when it does not exist (server-side apply)."""
        written, created = await self.guaranteed_update_written(namespace, name, mutate, ctx, subresource,
                                                                create_if_missing, on_missing)
        return written.object, created

    async def guaranteed_update_written(self, namespace: str | None, name: str,
                                        mutate: Callable[[Object], Awaitable[Object]], ctx: WriteContext,
                                        subresource: str = "", create_if_missing: bool = False,
                                        on_missing: Callable[[], Awaitable[Object]] | None = None,
                                        ) -> tuple[Written, bool]:
        """:meth:`guaranteed_update`, answered as :class:`Written` (a binding never looks at it)."""
        return await self._read_modify_write(namespace, name, mutate, ctx, subresource,
                                             create_if_missing=create_if_missing, on_missing=on_missing)

    async def update_in_storage(self, namespace: str | None, name: str, mutate: Callable[[Object], None], *,
                                uid: str = "", resource_version: str = "", dry_run: bool = False) -> None:
        """kube-apiserver's ``Store.Storage.GuaranteedUpdate``: the storage's own read-modify-write
        under UID and resourceVersion preconditions, retried on a lost race, and none of the
        registry's update path (no strategy, admission, validation or managedFields). For what
        upstream writes through its storage directly: a pod's binding (``BindingREST``). ``mutate``
        changes the current object in place or raises."""
        resource = self.resource
        key = self._key(namespace, name)
        for _ in range(_MAX_RETRIES):
            kv = await self._current(key, name)
            obj = self._decode(kv)
            writes.check_preconditions(obj, uid, resource_version, resource, name)
            mutate(obj)
            if dry_run:
                return
            if await self._cas_update(key, obj, kv.mod_revision, name) is not None:
                return
        raise conflict(resource.plural, resource.group, name, writes.MODIFIED_MESSAGE)

    async def _read_modify_write(
        self, namespace: str | None, name: str, mutate: Callable[[Object], Awaitable[Object]],
        ctx: WriteContext, subresource: str, *, create_if_missing: bool = False,
        new_object: Object | None = None, on_missing: Callable[[], Awaitable[Object]] | None = None,
    ) -> tuple[Written, bool]:
        resource = self.resource
        key = self._key(namespace, name)
        strategy = self._strategy(subresource)
        for _ in range(_MAX_RETRIES):
            try:
                kv = await self.store.get(key)
            except StoreError as error:
                raise errors_translate.from_store(error, resource, name) from error
            if kv is None:
                if on_missing is not None:
                    return await self.create_written(namespace, await on_missing(), ctx), True
                if create_if_missing and new_object is not None and not subresource:
                    created = meta.clone(new_object)
                    created["metadata"].pop("resourceVersion", None)
                    return await self.create_written(namespace, created, ctx), True
                raise self._not_found(name)
            current = self._decode(kv)
            if new_object is not None:
                # A PUT (``update``): its mutation is a copy of the body and never reads or changes
                # what it is given, so it needs no copy of the stored object (one JSON parse per
                # write less: a node Lease renewal is one every 10 s per node).
                new = await mutate(current)
            else:
                # The mutation's own copy, decoded again rather than cloned: one JSON parse instead
                # of an encode and a parse.
                new = await mutate(self._decode(kv))
            writes.check_type_meta(new, resource)
            writes.check_name(new, name)
            writes.check_resource_version(new, current, resource, strategy, name)
            if not subresource:
                strategy.default(new)
            writes.carry_system_metadata(new, current)
            attributes = Attributes("UPDATE", resource, current["metadata"].get("namespace", ""), new, current,
                                    subresource, ctx.dry_run, ctx.warnings)
            await self.admission.admit(attributes)
            strategy.prepare_for_update(new, current)
            writes.validate_update(new, current, resource, strategy)
            writes.track_managed_fields(current, new, ctx, resource, subresource)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if new == current and not is_stale(kv):
                # A no-op write keeps the resourceVersion, as Kubernetes does, unless the entry was
                # encrypted with an old key (then it is rewritten with the current one).
                return Written(current), False
            if writes.finalized(new, self.resource.strategy):
                # The last finalizer went away from an object being deleted: it goes now.
                if ctx.dry_run:
                    return Written(new), False
                gone = await self._cas_delete(key, kv.mod_revision, name)
                if gone is None:
                    continue
                return Written(gone), False
            await self.admission.validate(attributes)
            undo = await self.hooks.before_write(new, current, ctx)
            if ctx.dry_run:
                return Written(new), False
            stored = await self._cas_update(key, new, kv.mod_revision, name, undo)
            if stored is None:
                continue
            if self._hooks_read:
                await self.hooks.after_update(stored.object, current)
            return stored, False
        raise conflict(resource.plural, resource.group, name, writes.MODIFIED_MESSAGE)

    # ---------------------------------------------------------------- delete

    async def delete(self, namespace: str | None, name: str, options: DeleteOptions,
                     ctx: WriteContext) -> tuple[Object, bool]:
        """Returns (object, gone): gone=False while graceful deletion or finalizers keep it."""
        resource = self.resource
        key = self._key(namespace, name)
        for _ in range(_MAX_RETRIES):
            kv = await self._current(key, name)
            current = self._decode(kv)
            writes.check_delete_preconditions(current, options, resource, name)
            await self.admission.validate(Attributes("DELETE", resource, namespace or "", current, current,
                                                     dry_run=ctx.dry_run))
            updated = writes.prepare_delete(current, options, resource)
            if updated is not None:
                if updated == current or ctx.dry_run:
                    return updated, False
                stored = await self._cas_update(key, updated, kv.mod_revision, name)
                if stored is None:
                    continue
                return stored.object, False
            if ctx.dry_run:
                return current, True
            gone = await self._cas_delete(key, kv.mod_revision, name)
            if gone is None:
                continue
            return gone, True
        raise conflict(resource.plural, resource.group, name, writes.MODIFIED_MESSAGE)

    # ------------------------------------------------- compare-and-swap steps

    async def _cas_update(self, key: str, obj: Object, revision: int, name: str,
                          undo: Callable[[], Awaitable[None]] | None = None) -> Written | None:
        """Store ``obj`` if the key is still at ``revision``; None when it moved on (retry)."""
        value, cut = encode_for_store_cut(obj)
        try:
            stored = await self.store.update(key, value, expected_mod_revision=revision, ttl=self.ttl)
        except StoreError as error:
            if undo is not None:
                await undo()
            if errors_translate.is_conflict(error):
                return None
            raise errors_translate.from_store(error, self.resource, name) from error
        written = self._written(stored, value, cut)
        if self._hooks_read:
            await self.hooks.after_write(written.object)
        return written

    async def _cas_delete(self, key: str, revision: int, name: str) -> Object | None:
        """Delete the key if still at ``revision`` (the deleted object), None when it moved on."""
        try:
            deleted = await self.store.delete(key, expected_mod_revision=revision)
        except StoreError as error:
            if errors_translate.is_conflict(error):
                return None
            raise errors_translate.from_store(error, self.resource, name) from error
        gone = self._decode(deleted)
        await self.hooks.after_delete(gone)
        return gone

    async def delete_collection(self, namespace: str | None, list_options: ListOptions,
                                options: DeleteOptions, ctx: WriteContext) -> builtins.list[Object]:
        items, _, _ = await self.list(namespace, list_options)
        deleted: builtins.list[Object] = []
        for item in items:
            try:
                obj, _ = await self.delete(item["metadata"].get("namespace"), item["metadata"]["name"],
                                           options, ctx)
            except StatusError as error:
                if error.code == 404:
                    continue
                raise
            deleted.append(obj)
        return deleted

    # ----------------------------------------------------------------- watch

    async def watch(self, namespace: str | None, options: ListOptions,
                    send_initial: bool, initial_events_end: bool = False) -> AsyncIterator[WatchEvent]:
        """Events for objects matching the selectors. ``send_initial``: the current state first as
        ADDED, then changes after the list's revision; ``initial_events_end``: a bookmark between
        the two (WatchList). Otherwise changes after the given resourceVersion (unset or "0": now)."""
        labels, fields = options.label_selector, options.field_selector
        prefix = self.resource.key_prefix(namespace)
        if self.resource.namespaced and namespace is None:
            prefix = self.resource.key_prefix(None)
        name = fields.required_value("metadata.name")
        if send_initial:
            if name is not None and (namespace is not None or not self.resource.namespaced):
                try:
                    items = [await self.get(namespace, name)]
                except StatusError:
                    items = []
                revision = await self.store.current_revision()
                items = [o for o in items if self.matches(o, labels, fields)]
            else:
                items, revision_text, _ = await self.list(namespace, ListOptions(labels, fields))
                revision = int(revision_text)
            for obj in items:
                yield WatchEvent("ADDED", obj)
            if initial_events_end:
                yield WatchEvent("BOOKMARK", bookmark_object(self.resource.kind, self.resource.api_version,
                                                             revision, initial_events_end=True))
        elif options.resource_version in ("", "0"):
            revision = await self.store.current_revision()
        else:
            try:
                revision = int(options.resource_version)
            except ValueError:
                raise bad_request(f'invalid resource version "{options.resource_version}"') from None
        # A kubelet's watch (one spec.nodeName term) is decided from the field alone, undecoded.
        exact = fieldindex.exact_term(self.resource, fields, self._fields) if labels.empty() else None
        # Other field selectors on plain string fields (the scheduler's status.phase!=...): decided
        # from the stored bytes where those settle it.
        decide = fieldindex.byte_decider(self.resource, fields) if labels.empty() and exact is None else None
        try:
            changes = self.store.watch(prefix, revision, fieldindex.trigger_for(self.resource, fields, self._fields))
            try:
                async for event in changes:
                    translated = self._translate(event, labels, fields, exact, decide)
                    if translated is not None:
                        yield translated
            finally:
                # Release the store's watcher at once when the client goes away.
                close = getattr(changes, "aclose", None)
                if close is not None:
                    await close()
        except WatcherTooSlowError:
            raise  # not a 410: the stream ends and the client resumes from its last event (watchstream)
        except CompactedError as error:
            yield WatchEvent("ERROR", expired(
                f"too old resource version: {revision} ({error.revision})").to_status())
        except StoreError as error:
            # An event the store cannot serve (a value no configured key decrypts): an ERROR event,
            # as kube-apiserver's watcher sends, rather than a stream cut without a word.
            yield WatchEvent("ERROR", errors_translate.from_store(error, self.resource, "").to_status())

    def _translate(self, event: Any, labels: LabelSelector, fields: FieldSelector,
                   exact: tuple[Callable[[KeyValue], str | None], str] | None = None,
                   decide: Callable[[KeyValue], bool | None] | None = None) -> WatchEvent | None:
        kv = self._view(event.kv)
        if labels.empty() and fields.empty() and not self._needs_decorating(kv):
            if event.type is EventType.DELETE:
                return WatchEvent("DELETED", json=self._event_json(kv))
            return WatchEvent("MODIFIED" if event.prev is not None else "ADDED", json=self._event_json(kv))
        if exact is not None and kv is event.kv and not self._needs_decorating(kv):
            decided, translated = self._translate_by_field(event, exact)
            if decided:
                return translated
        if decide is not None and self._as_stored(event.kv) and (event.prev is None or self._as_stored(event.prev)):
            return self._translate_by_bytes(event, fields, decide)
        obj = self._decode(event.kv)
        now_matches = self.matches(obj, labels, fields)
        was_matching = False
        if event.prev is not None:
            was_matching = self.matches(self._decode(event.prev), labels, fields)
        if event.type is EventType.DELETE:
            return WatchEvent("DELETED", obj) if now_matches else None
        if now_matches:
            return WatchEvent("MODIFIED" if was_matching else "ADDED", obj)
        if was_matching:
            return WatchEvent("DELETED", obj)
        return None

    def _as_stored(self, kv: KeyValue) -> bool:
        """Whether the entry is served as its stored bytes (this version, no decorator)."""
        return self._view(kv) is kv and not self._needs_decorating(kv)

    def _translate_by_bytes(self, event: Any, fields: FieldSelector,
                            decide: Callable[[KeyValue], bool | None]) -> WatchEvent | None:
        """:meth:`_translate` for a field selector :func:`fieldindex.byte_decider` serves: each of the
        entry and the one it replaced is decoded only when its bytes do not settle the match, and
        the event is served from the shared stored bytes (both entries served as stored)."""

        def matching(kv: KeyValue) -> bool:
            decided = decide(kv)
            if decided is not None:
                return decided
            return fields.matches(self.resource.strategy.selectable_fields(decode_stored(kv)))

        now_matches = matching(event.kv)
        if event.type is EventType.DELETE:
            return WatchEvent("DELETED", json=self._event_json(event.kv)) if now_matches else None
        was_matching = event.prev is not None and matching(event.prev)
        if now_matches:
            return WatchEvent("MODIFIED" if was_matching else "ADDED", json=self._event_json(event.kv))
        if was_matching:
            return WatchEvent("DELETED", json=self._event_json(event.kv))
        return None

    def _translate_by_field(self, event: Any, exact: tuple[Callable[[KeyValue], str | None], str],
                            ) -> tuple[bool, WatchEvent | None]:
        """:meth:`_translate` for a selector of one indexed term, from the field's value in the
        entry and the previous one (remembered since the store's fan-out read them) and the shared
        stored bytes: what decoding both objects and matching them would decide. (False, None) when
        a value could not be read (the field absent, an unreadable entry): the caller decodes."""
        read, value = exact
        now = read(event.kv)
        if now is None:
            return False, None
        before = None
        if event.prev is not None:
            before = read(event.prev)
            if before is None or self._needs_decorating(event.prev) or self._view(event.prev) is not event.prev:
                return False, None
        now_matches = now == value
        was_matching = before == value
        kind = None
        if event.type is EventType.DELETE:
            kind = "DELETED" if now_matches else None
        elif now_matches:
            kind = "MODIFIED" if was_matching else "ADDED"
        elif was_matching:
            kind = "DELETED"
        return True, None if kind is None else WatchEvent(kind, json=self._event_json(event.kv))
