"""``kube-system/extension-apiserver-authentication``: how this API server authenticates clients, published.

kube-apiserver's ClusterAuthenticationTrustController (``pkg/controlplane/controller/
clusterauthenticationtrust``) keeps this ConfigMap so that extension API servers and webhooks can trust
the same client certificates (``client-ca-file``) and, when a front proxy is configured, the same
request-header authentication (``requestheader-client-ca-file``, ``requestheader-allowed-names``,
``requestheader-username-headers``, ``-group-headers``, ``-extra-headers-prefix``, as JSON lists).

As upstream, what is already published is *combined* with what this server has, never replaced: CA
bundles are the union of both (duplicates dropped, certificates expired for more than five minutes
dropped), header lists the ordered union. Several API servers (or a rotated CA) therefore add to the
trust rather than flapping it; a rotated-out CA leaves when it expires.

The server re-reads its client CA file every second (a ``stat``; the file is read only when it changed)
and rewrites the ConfigMap at once when the CA changed, and at least every minute (upstream's resync)
so a deleted or edited ConfigMap comes back. pilothouse has no front-proxy authenticator yet, so the
request-header part is written only when a :class:`RequestHeaderTrust` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilothouse.apiserver.registry import ResourceStorage, WriteContext
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.meta import Object

__all__ = ["CONFIGMAP_NAME", "NAMESPACE", "RequestHeaderTrust", "combine_bundles", "configmap_data",
           "keep_current", "sync"]

log = logging.getLogger("pilothouse.apiserver.authtrust")

NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
#: Upstream's resync: the ConfigMap is checked at least this often (seconds).
RESYNC_SECONDS = 60.0
_EXPIRY_SLACK = datetime.timedelta(minutes=5)

StorageOf = Callable[[str, str, str], ResourceStorage]


@dataclass(frozen=True)
class RequestHeaderTrust:
    """kube-apiserver's ``--requestheader-*`` flags (a front proxy's identity and its headers)."""

    client_ca_pem: bytes
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefix: tuple[str, ...] = ("X-Remote-Extra-",)


def combine_bundles(*bundles: str | bytes, now: datetime.datetime | None = None) -> str:
    """``combineCertLists``: the certificates of every bundle in order, once each, unexpired (5 min slack)."""
    cutoff = (now or datetime.datetime.now(datetime.UTC)) - _EXPIRY_SLACK
    seen: set[bytes] = set()
    out: list[bytes] = []
    for bundle in bundles:
        raw = bundle.encode() if isinstance(bundle, str) else bundle
        if not raw.strip():
            continue
        for cert in x509.load_pem_x509_certificates(raw):
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in seen or cert.not_valid_after_utc <= cutoff:
                continue
            seen.add(der)
            out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out).decode()


def _union(existing: str | None, wanted: tuple[str, ...]) -> str:
    """``combineUniqueStringSlices`` of a published JSON list and ours, as a JSON list."""
    values = list(json.loads(existing)) if existing else []
    return json.dumps(list(dict.fromkeys([*values, *wanted])), separators=(",", ":"))


def configmap_data(existing: Mapping[str, str], client_ca_pem: bytes,
                   request_header: RequestHeaderTrust | None = None) -> dict[str, str]:
    """``getConfigMapDataFor(combinedClusterAuthenticationInfo(existing, ours))``."""
    data: dict[str, str] = {}
    client_ca = combine_bundles(existing.get("client-ca-file", ""), client_ca_pem)
    if client_ca:
        data["client-ca-file"] = client_ca
    header_ca = combine_bundles(existing.get("requestheader-client-ca-file", ""),
                                request_header.client_ca_pem if request_header else b"")
    if not header_ca:
        return data
    ours = request_header or RequestHeaderTrust(b"", (), (), (), ())
    data["requestheader-username-headers"] = _union(existing.get("requestheader-username-headers"),
                                                    ours.username_headers)
    data["requestheader-group-headers"] = _union(existing.get("requestheader-group-headers"), ours.group_headers)
    data["requestheader-extra-headers-prefix"] = _union(existing.get("requestheader-extra-headers-prefix"),
                                                        ours.extra_headers_prefix)
    data["requestheader-client-ca-file"] = header_ca
    data["requestheader-allowed-names"] = _union(existing.get("requestheader-allowed-names"), ours.allowed_names)
    return data


async def sync(storage_of: StorageOf, client_ca_pem: bytes, request_header: RequestHeaderTrust | None = None) -> bool:
    """One pass of the controller: write the ConfigMap when its combined data differs. True if written."""
    configmaps = storage_of("", "v1", "configmaps")
    context = WriteContext(field_manager="kube-apiserver")
    try:
        current: Object | None = await configmaps.get(NAMESPACE, CONFIGMAP_NAME)
    except StatusError as error:
        if error.code != 404:
            raise
        current = None
    data = configmap_data((current or {}).get("data") or {}, client_ca_pem, request_header)
    if current is None:
        await configmaps.create(NAMESPACE, {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": CONFIGMAP_NAME, "namespace": NAMESPACE},
                                            "data": data}, context)
        return True
    if current.get("data") == data:
        return False
    updated = meta.clone(current)
    updated["data"] = data
    await configmaps.update(NAMESPACE, CONFIGMAP_NAME, updated, context)
    return True


async def keep_current(storage_of: StorageOf, client_ca_path: Path, request_header: RequestHeaderTrust | None = None,
                       *, poll: float = 1.0, resync: float = RESYNC_SECONDS) -> None:
    """Sync now, then whenever the client CA file changes on disk, and every ``resync`` seconds."""
    last_seen: tuple[float, int] | None = None
    last_sync = 0.0
    while True:
        with contextlib.suppress(OSError):
            stat = client_ca_path.stat()
            seen = (stat.st_mtime, stat.st_size)
            if seen != last_seen or time.monotonic() - last_sync >= resync:
                try:
                    if await sync(storage_of, client_ca_path.read_bytes(), request_header):
                        log.info("wrote %s/%s", NAMESPACE, CONFIGMAP_NAME)
                    last_seen, last_sync = seen, time.monotonic()
                except (StatusError, ValueError) as error:  # a conflict, a half-written file: next poll
                    log.warning("could not update %s/%s: %s", NAMESPACE, CONFIGMAP_NAME, error)
        await asyncio.sleep(poll)
