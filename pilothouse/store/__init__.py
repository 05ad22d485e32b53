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
    Store,
    StoreError,
    UnavailableError,
    WatchEvent,
)

__all__ = [
    "CompactedError",
    "ConflictError",
    "EventType",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "ListResult",
    "Store",
    "StoreError",
    "UnavailableError",
    "WatchEvent",
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


def open_store(endpoint: str, **options: Any) -> Store:
    """A backend for ``endpoint``, not yet started (``await store.start()`` before use).

    ``options`` go to the backend's constructor (e.g. ``compact_interval`` for SQLite).
    """
    scheme = endpoint.split(":", 1)[0].lower() if ":" in endpoint else ""
    if scheme == "sqlite":
        from pilothouse.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(endpoint), **options)
    # Future: "etcd" / "etcd+https" → pilothouse.store.etcd.EtcdStore(endpoints, ...) plugs in here.
    raise ValueError(
        f"unknown store endpoint {endpoint!r}: expected sqlite:///path/to/state.db"
    )
