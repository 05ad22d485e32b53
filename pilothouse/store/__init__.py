"""The revisioned key-value store layer, and :func:`open_store` to pick a backend from an endpoint.

The API server is configured with one endpoint string (like kube-apiserver's ``--etcd-servers``);
this module turns it into a backend so nothing above the store layer names a concrete class.
"""

from __future__ import annotations

from typing import Any

from pilothouse.store.interface import (
    CompactedError,
    ConflictError,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    NoSpaceError,
    Store,
    StoreError,
    UnavailableError,
    WatchEvent,
    WatchTrigger,
)

__all__ = [
    "CompactedError",
    "ConflictError",
    "EventType",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "ListResult",
    "NoSpaceError",
    "Store",
    "StoreError",
    "UnavailableError",
    "WatchEvent",
    "WatchTrigger",
    "etcd_endpoint_from_servers",
    "open_store",
    "sqlite_path",
]


def sqlite_path(endpoint: str) -> str:
    """The file path of a ``sqlite:`` endpoint.

    ``sqlite:///abs/path/state.db`` → ``/abs/path/state.db``; ``sqlite://rel/state.db`` and
    ``sqlite:rel/state.db`` → ``rel/state.db`` (relative to the working directory).
    """
    if not endpoint.startswith("sqlite:"):
        raise ValueError(f"not a sqlite endpoint: {endpoint!r}")
    rest = endpoint[len("sqlite:"):]
    if rest.startswith("//"):
        rest = rest[2:]  # "sqlite:///abs" leaves "/abs"; "sqlite://rel" leaves "rel"
    if not rest or rest == ":memory:":
        # Several connections (writer, readers) must see the same database, so it has to be a file.
        raise ValueError(f"sqlite endpoint needs a file path: {endpoint!r}")
    return rest


def etcd_endpoint_from_servers(servers: str) -> str:
    """A kube-apiserver style ``--etcd-servers`` list as a store endpoint.

    ``http://h:2379,http://h2:2379`` → ``etcd://h:2379,h2:2379``; all-https → ``etcd+https://...``.
    Mixing http and https (etcd serves one or the other on a port) is rejected.
    """
    schemes: set[str] = set()
    hosts: list[str] = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest = "http", item
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"etcd server must be http:// or https://, got {item!r}")
        host = rest.rstrip("/")
        if not host or "/" in host:
            raise ValueError(f"etcd server must be scheme://host:port, got {item!r}")
        if ":" not in host.rsplit("]", 1)[-1]:
            host += ":2379"  # etcd's client port, as etcd's clients default it
        schemes.add(scheme)
        hosts.append(host)
    if not hosts:
        raise ValueError("no etcd servers given")
    if len(schemes) > 1:
        raise ValueError(f"etcd servers mix http and https: {servers!r}")
    return ("etcd+https://" if schemes == {"https"} else "etcd://") + ",".join(hosts)


def open_store(endpoint: str, **options: Any) -> Store:
    """A backend for ``endpoint``, not yet started (``await store.start()`` before use).

    ``options`` go to the backend's constructor (e.g. ``compact_interval``; for etcd also
    ``request_timeout``, ``ca_file``, ``cert_file``, ``key_file``).
    """
    scheme = endpoint.split(":", 1)[0].lower() if ":" in endpoint else ""
    if scheme == "sqlite":
        from pilothouse.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(endpoint), **options)
    if scheme in ("etcd", "etcd+http", "etcd+https"):
        from pilothouse.store.etcd import EtcdStore

        return EtcdStore(endpoint, **options)  # options: request_timeout, ca_file, cert_file, key_file, ...
    if scheme in ("http", "https"):
        # A bare --etcd-servers list (http://h:2379,http://h2:2379).
        from pilothouse.store.etcd import EtcdStore

        return EtcdStore(etcd_endpoint_from_servers(endpoint), **options)
    raise ValueError(
        f"unknown store endpoint {endpoint!r}: expected sqlite:///path/to/state.db, "
        "etcd://host:port[,host:port] or etcd+https://host:port[,...]"
    )
