"""The distributed store: etcd v3, for clusters with several API servers or an existing etcd.

This maps the Store protocol onto etcd without translation, the way kube-apiserver's etcd3 storage
does: keys are stored as given (``/registry/...``), resourceVersion is etcd's revision (``mod_revision``),
and every conditional write is one etcd transaction:

* create  = ``txn(create_revision(key) == 0 → put, else → get)``;
* update  = ``txn(mod_revision(key) == expected → put(prev_kv), else → get)`` (expected 0:
  ``create_revision > 0``, i.e. "exists");
* delete  = the same compare with ``delete_range(prev_kv)``;
* list    = ``range(key, prefix_end, limit, revision)`` (paging at one revision), count with ``count_only``;
* watch   = etcd's own watch with ``prev_kv`` from ``start_revision + 1`` (:mod:`._etcd_watch`), so a
  write through any API server reaches every watcher of every API server;
* ttl     = the put names an etcd lease (:mod:`._etcd_lease`, shared by the writes of about a minute
  as kube-apiserver shares them), so etcd itself deletes the key when the lease expires;
* compact = etcd's compaction, plus a background compactor mirroring kube-apiserver's
  (``storage/etcd3/compact.go``): every ``compact_interval`` it compacts to the revision it saw at the
  previous tick, and a compare on the version of ``compact_rev_key`` makes only one of several API
  servers compact per interval.

One deliberate difference from raw etcd revisions: a fresh etcd is at revision 1 without any write
(its first write gets revision 2), while the protocol says an empty store is at revision 0, so a
header revision of 1 is reported as 0. Revisions never go back, so header revision 1 means exactly
"nothing was ever written"; every other revision is etcd's own.

Client choice: etcd's v3 JSON gateway (grpc-gateway, served by etcd 3.4 on the client port under
``/v3/``) over aiohttp, not gRPC (``aetcd`` 1.0.0 on grpcio). Both were measured in one run of
``bench/store_etcd_raw.py`` (one etcd 3.4.23 member, 1 KB values, a busy 2-core machine):

    ============================  =========  ===========  ==========
    op                            gateway    store (gw)   aetcd gRPC
    ============================  =========  ===========  ==========
    put, sequential (p50)         1.37 ms    1.30 ms      0.45 ms
    get, sequential (p50)         0.87 ms    0.83 ms      0.42 ms
    put, 32 concurrent            3040/s     2289/s       5618/s
    get, 32 concurrent            4259/s     3365/s       5436/s
    range 1000 keys (p50)         21 ms      30 ms        4 ms
    ============================  =========  ===========  ==========

gRPC is faster (~3x per-request latency, ~5x on large ranges, where grpc-gateway's JSON marshalling
dominates). The gateway was kept for now because it needs no new dependency (grpcio and protobuf
native wheels, protobuf version pinning), keeps one HTTP stack, works with ``curl``, and is fully
exercised by the tests here; the store layer adds little on top of it (compare the first two
columns). The Store code talks to etcd only through ``EtcdClient.call(path, body)`` /
``watch_stream`` with gateway-shaped messages, so a gRPC client can replace :mod:`._etcd_client`
later if list latency matters (a watch cache above the store removes most large ranges anyway).
The price of the gateway beyond speed: one HTTP stream per watch (no multiplexing) and no server-side
cancel message (closing the stream cancels).

Compacted revision: etcd does not expose it, so :meth:`compacted_revision` is the newest of what this
client compacted, what the shared compactor recorded in ``compact_rev_key`` and what etcd reported in
a watch's ``compact_revision``; when a read hits a compacted revision with none of those known, a
watch from revision 1 asks etcd for it.

Errors: etcd's ErrCompacted → CompactedError (with the compaction point), ErrFutureRev →
FutureRevisionError, no member answering within ``request_timeout`` (members down, quorum lost,
so etcd cannot commit or serve a linearizable read) → UnavailableError. Nothing hangs: every request
has a deadline and each endpoint is tried in turn.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import ssl
import weakref
from typing import Any

from pilothouse.store._etcd_client import (
    EtcdClient,
    b64,
    kv_from_json,
    prefix_end,
    unb64,
)
from pilothouse.store._etcd_lease import LeaseManager
from pilothouse.store._etcd_watch import EtcdWatch
from pilothouse.store.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListIndex,
    ListResult,
    StoreError,
    UnavailableError,
    WatchTrigger,
)

__all__ = ["EtcdStore", "parse_etcd_endpoint"]

COMPACT_REV_KEY = "compact_rev_key"  # kube-apiserver's key, so both can share one etcd safely
ERR_LEASE_NOT_FOUND = "requested lease not found"  # etcd's ErrLeaseNotFound


def parse_etcd_endpoint(endpoint: str) -> builtins.list[str]:
    """``etcd://h:p,h2:p2`` → ``["http://h:p", "http://h2:p2"]``; ``etcd+https://`` → https URLs."""
    scheme, sep, rest = endpoint.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("etcd", "etcd+http", "etcd+https"):
        raise ValueError(f"not an etcd endpoint: {endpoint!r} (expected etcd://host:port[,host:port])")
    proto = "https" if scheme == "etcd+https" else "http"
    hosts = [h.strip().rstrip("/") for h in rest.split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"etcd endpoint has no host: {endpoint!r}")
    for h in hosts:
        if "/" in h or not h.rpartition(":")[2].isdigit():
            raise ValueError(f"etcd endpoint host must be host:port, got {h!r} in {endpoint!r}")
    return [f"{proto}://{h}" for h in hosts]


def _public(raw: int) -> int:
    """etcd's header revision as a store revision (see the module docstring: 1 means "empty")."""
    return 0 if raw <= 1 else raw


class EtcdStore:
    """A :class:`~pilothouse.store.interface.Store` on an etcd v3 cluster."""

    def __init__(self, endpoints: str | builtins.list[str], *, request_timeout: float = 5.0,
                 compact_interval: float | None = 300.0, watch_queue_size: int = 10000,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 compact_rev_key: str = COMPACT_REV_KEY) -> None:
        urls = parse_etcd_endpoint(endpoints) if isinstance(endpoints, str) else builtins.list(endpoints)
        ctx: ssl.SSLContext | None = None
        if key_file and not cert_file:
            # load_cert_chain takes the key from the cert file; a lone key would silently mean "no client cert".
            raise ValueError("etcd client key file given without a client certificate file")
        if any(u.startswith("https://") for u in urls):
            ctx = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
        self._client = EtcdClient(urls, request_timeout=request_timeout, ssl_context=ctx)
        self.compact_interval = compact_interval
        self.watch_queue_size = watch_queue_size
        self.compact_rev_key = compact_rev_key
        self._compacted = 0
        self.leases = LeaseManager(lambda path, body: self._call(path, body, write=True))
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self._compactor: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def endpoints(self) -> builtins.list[str]:
        return builtins.list(self._client.urls)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("EtcdStore.start() called twice")
        self._started = True
        await self._client.start()
        if self.compact_interval and self.compact_interval > 0:
            self._compactor = asyncio.get_running_loop().create_task(self._compact_loop(self.compact_interval))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in builtins.list(self._watches):
            w.end()
        self._watches.clear()
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        await self._client.close()

    async def __aenter__(self) -> EtcdStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, path: str, body: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        if self._closed or not self._started:
            raise UnavailableError("store is closed" if self._closed else "store not started")
        return await self._client.call(path, body, write=write)

    async def snapshot(self, destination: str) -> int:
        """etcd's Maintenance.Snapshot (what ``etcdctl snapshot save`` writes: the backend database
        with its sha256 appended) streamed into ``destination``; returns the revision it holds at least
        (read just before the snapshot began, so every write acknowledged before that is in it)."""
        revision = _public(await self._raw_revision())
        with open(destination, "wb") as out:
            async for message in await self._client.stream("/v3/maintenance/snapshot", {}):
                out.write(unb64(message.get("blob")))
            out.flush()
            os.fsync(out.fileno())
        return revision

    # --- reads --------------------------------------------------------------------------------

    async def _raw_revision(self) -> int:
        # Any linearizable range answers with the cluster's current revision in its header.
        resp = await self._call("/v3/kv/range", {"key": b64(self.compact_rev_key), "count_only": True})
        return int(resp["header"]["revision"])

    async def current_revision(self) -> int:
        return _public(await self._raw_revision())

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._call("/v3/kv/range", {"key": b64(key)})
        kvs = resp.get("kvs")
        return kv_from_json(kvs[0]) if kvs else None

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "",
                   revision: int = 0, index: ListIndex | None = None) -> ListResult:
        # ``index`` is ignored: etcd ranges by key only (kube-apiserver serves node-filtered lists
        # from its watch cache, which pilothouse does not keep over etcd).
        res, _ = await self._list(prefix, limit=limit, start_after=start_after, revision=revision)
        return res

    async def _list(self, prefix: str, *, limit: int = 0, start_after: str = "",
                    revision: int = 0) -> tuple[ListResult, int]:
        """The list, and the raw etcd revision it was read at (a watch continues from there)."""
        if limit < 0 or revision < 0:
            raise ValueError("limit and revision must be >= 0")
        pfx = prefix.encode()
        end = prefix_end(pfx)
        start = start_after.encode() + b"\0" if start_after >= prefix else pfx
        body: dict[str, Any] = {"key": b64(start or b"\0"), "range_end": b64(end)}
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        try:
            resp = await self._call("/v3/kv/range", body)
        except CompactedError as exc:
            raise await self._compacted_error(revision) from exc
        except FutureRevisionError as exc:
            current = await self.current_revision()
            raise FutureRevisionError(f"required revision {revision} is a future revision "
                                      f"(current {current})", revision=current) from exc
        items = [kv_from_json(d) for d in resp.get("kvs", ())]
        raw = revision or int(resp["header"]["revision"])
        return ListResult(items, _public(raw), bool(resp.get("more"))), raw

    async def count(self, prefix: str) -> int:
        pfx = prefix.encode()
        resp = await self._call("/v3/kv/range", {"key": b64(pfx or b"\0"), "range_end": b64(prefix_end(pfx)),
                                                 "count_only": True})
        return int(resp.get("count", 0))

    # --- writes -------------------------------------------------------------------------------

    async def _txn(self, compare: dict[str, Any], success: dict[str, Any], key: str) -> dict[str, Any]:
        return await self._call("/v3/kv/txn", {
            "compare": [compare], "success": [success],
            "failure": [{"request_range": {"key": b64(key)}}],
        }, write=True)

    @staticmethod
    def _failed_kv(resp: dict[str, Any]) -> KeyValue | None:
        kvs = resp["responses"][0]["response_range"].get("kvs")
        return kv_from_json(kvs[0]) if kvs else None

    async def _put_txn(self, compare: dict[str, Any], key: str, value: bytes, ttl: int,
                       **extra: Any) -> dict[str, Any]:
        """``_txn`` with a put of ``key``, under a lease when it has a ``ttl`` (a put without one
        detaches the key from any lease, as every write sets the key's expiry anew)."""
        for retry in (False, True):
            put: dict[str, Any] = {"key": b64(key), "value": b64(value), **extra}
            if ttl > 0:
                put["lease"] = await self.leases.lease_for(ttl)
            try:
                return await self._txn(compare, {"request_put": put}, key)
            except StoreError as error:
                # The shared lease is gone under us (revoked, etcd restored from a snapshot): once
                # more with a new one; etcd refused the whole txn, so nothing was written.
                if retry or ttl <= 0 or ERR_LEASE_NOT_FOUND not in str(error):
                    raise
                self.leases.forget(put["lease"])
        raise AssertionError("unreachable")

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        resp = await self._put_txn(
            {"target": "CREATE", "key": b64(key), "create_revision": "0", "result": "EQUAL"}, key, value, ttl)
        if not resp.get("succeeded"):
            cur = self._failed_kv(resp)
            raise KeyExistsError(f"key exists: {key}", key=key, revision=cur.mod_revision if cur else 0)
        rev = int(resp["header"]["revision"])
        return KeyValue(key, value, rev, rev)

    def _precondition(self, key: str, expected: int) -> dict[str, Any]:
        if expected:
            return {"target": "MOD", "key": b64(key), "mod_revision": str(expected), "result": "EQUAL"}
        return {"target": "CREATE", "key": b64(key), "create_revision": "0", "result": "GREATER"}

    def _refused(self, resp: dict[str, Any], key: str, expected: int) -> StoreError:
        cur = self._failed_kv(resp)
        if cur is None:
            return KeyNotFoundError(f"key not found: {key}", key=key)
        return ConflictError(f"{key}: mod_revision is {cur.mod_revision}, expected {expected}",
                             key=key, revision=cur.mod_revision)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, ttl: int = 0) -> KeyValue:
        resp = await self._put_txn(self._precondition(key, expected_mod_revision), key, value, ttl, prev_kv=True)
        if not resp.get("succeeded"):
            raise self._refused(resp, key, expected_mod_revision)
        rev = int(resp["header"]["revision"])
        prev = resp["responses"][0]["response_put"].get("prev_kv")
        return KeyValue(key, value, int(prev["create_revision"]) if prev else rev, rev)

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> KeyValue:
        resp = await self._txn(self._precondition(key, expected_mod_revision),
                               {"request_delete_range": {"key": b64(key), "prev_kv": True}}, key)
        if not resp.get("succeeded"):
            raise self._refused(resp, key, expected_mod_revision)
        rev = int(resp["header"]["revision"])
        prevs = resp["responses"][0]["response_delete_range"].get("prev_kvs") or [{}]
        prev = kv_from_json({"key": b64(key), **prevs[0]})
        return KeyValue(key, prev.value, prev.create_revision, rev)

    # --- watch --------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, trigger: WatchTrigger | None = None) -> EtcdWatch:
        """See the Store protocol; one etcd watch stream per call (:mod:`._etcd_watch`). ``trigger``
        is not used: etcd filters by key only, and the caller filters the rest."""
        w = EtcdWatch(self._client, prefix, start_revision, snapshot=self._watch_snapshot,
                      on_compacted=self._saw_compacted, queue_size=self.watch_queue_size,
                      unavailable_after=max(2 * self._client.request_timeout, 1.0), on_end=self._watches.discard)
        if self._closed:
            w.end()
        else:
            self._watches.add(w)
        return w

    async def _watch_snapshot(self, prefix: str) -> tuple[ListResult, int]:
        return await self._list(prefix)

    # --- compaction ---------------------------------------------------------------------------

    def _saw_compacted(self, revision: int) -> None:
        self._compacted = max(self._compacted, revision)

    async def compact(self, revision: int) -> None:
        if revision <= 0:
            return
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision)}, write=True)
        except CompactedError:
            pass  # someone compacted at or past this point already
        self._saw_compacted(revision)

    async def compacted_revision(self) -> int:
        kv = await self.get(self.compact_rev_key)
        if kv is not None and kv.value.isdigit():
            self._saw_compacted(int(kv.value))
        return self._compacted

    async def _compacted_error(self, revision: int) -> CompactedError:
        compacted = await self.compacted_revision()
        if compacted < revision:
            compacted = max(compacted, await self._probe_compacted())
        return CompactedError(
            f"required revision {revision} has been compacted (oldest available: {compacted})",
            revision=compacted)

    async def _probe_compacted(self) -> int:
        """Ask etcd for its compaction point: a watch from revision 1 is answered with it."""
        body = {"create_request": {"key": b64(self.compact_rev_key), "start_revision": "1"}}
        with contextlib.suppress(StoreError, OSError, TimeoutError):
            async with asyncio.timeout(self._client.request_timeout):
                stream = await self._client.watch_stream(body)
                async with contextlib.aclosing(stream):
                    async for msg in stream:
                        rev = int(msg.get("compact_revision", 0) or 0)
                        if rev:
                            self._saw_compacted(rev)
                            return rev
        return self._compacted

    async def compact_tick(self, seen_version: int, revision: int) -> tuple[int, int]:
        """One step of kube-apiserver's compactor (``compact.go``): if ``compact_rev_key`` still has
        version ``seen_version`` (nobody else compacted since our last tick), record ``revision`` in
        it and compact to ``revision``. Returns ``(version of compact_rev_key, current revision)``
        for the next tick."""
        key = b64(self.compact_rev_key)
        resp = await self._call("/v3/kv/txn", {
            "compare": [{"target": "VERSION", "key": key, "version": str(seen_version), "result": "EQUAL"}],
            "success": [{"request_put": {"key": key, "value": b64(str(revision))}}],
            "failure": [{"request_range": {"key": key}}],
        }, write=True)
        current = int(resp["header"]["revision"])
        if not resp.get("succeeded"):
            kvs = resp["responses"][0]["response_range"].get("kvs") or [{}]
            return int(kvs[0].get("version", 0)), current
        if revision > 0:  # no compaction on the first tick: there is no "previous" revision yet
            await self.compact(revision)
        return seen_version + 1, current

    async def _compact_loop(self, interval: float) -> None:
        version, revision = 0, 0
        while True:
            await asyncio.sleep(interval)
            try:
                version, revision = await self.compact_tick(version, revision)
            except StoreError:
                continue  # etcd unreachable or quorum lost: try again next tick
