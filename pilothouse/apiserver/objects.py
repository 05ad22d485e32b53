"""Between stored bytes and API objects: ``resourceVersion`` lives in the store, not in the value.

As in kube-apiserver's etcd3 store, the value saved carries no resourceVersion; it is set from the
key's mod_revision whenever the object is read. That keeps the revision authoritative and lets an
unchanged value be compared byte for byte.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from pilothouse.machinery.errors import bad_request
from pilothouse.machinery.query import INITIAL_EVENTS_END
from pilothouse.store.interface import KeyValue

__all__ = ["bookmark_object", "decode_continue", "decode_stored", "encode_continue", "encode_for_store",
           "encode_for_store_cut", "stored_json", "stored_json_list", "written_json"]


_METADATA = b'"metadata":{'


_HEAD = ("apiVersion", "kind", "metadata")


def encode_for_store(obj: dict[str, Any]) -> bytes:
    """JSON with ``apiVersion``, ``kind``, ``metadata`` first (so :func:`stored_json` can find the
    top-level metadata by position) and no resourceVersion."""
    return encode_for_store_cut(obj)[0]


def encode_for_store_cut(obj: dict[str, Any]) -> tuple[bytes, int]:
    """:func:`encode_for_store`'s bytes, and the index of the ``}`` that closes their metadata: where
    :func:`written_json` puts the resourceVersion. The head (``apiVersion``, ``kind``, ``metadata``)
    and the rest are encoded apart and joined, which is the same bytes as encoding them as one
    object; the join is also the copy that makes them bytes of their own size (``dumps_kept``)."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    head = orjson.dumps({"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": metadata})
    cut = len(head) - 2  # head ends with the metadata's "}" and its own
    rest = {key: value for key, value in obj.items() if key not in _HEAD}
    if not rest:
        return bytes(memoryview(head)), cut
    tail = orjson.dumps(rest)
    # Kept by the store's ring of recent events and by watch events: a copy of its own size.
    return b"".join((memoryview(head)[:-1], b",", memoryview(tail)[1:])), cut


def written_json(value: bytes, cut: int, revision: int) -> bytes:
    """The answer to the write that stored ``value`` (from :func:`encode_for_store_cut`, ``cut``
    with it) at ``revision``, without decoding it and encoding it again: the bytes with the
    resourceVersion spliced in last in the metadata, which is where :func:`decode_stored` adds it
    (so this is byte for byte ``orjson.dumps(decode_stored(kv))``; orjson writes what it read back
    as it wrote it). :func:`stored_json` puts it first instead, since it cannot know the cut."""
    view = memoryview(value)
    version = b'"resourceVersion":"%d"' % revision
    return b"".join((view[:cut], version if value[cut - 1] == 0x7B else b"," + version, view[cut:]))


def decode_stored(kv: KeyValue) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


def stored_json(kv: KeyValue) -> bytes:
    """The object's JSON with its resourceVersion, without decoding it: the stored bytes with the
    version spliced into the top-level metadata. Serving lists, gets and watches this way avoids a
    decode and an encode per object, which is most of their cost (and memory) in Python."""
    value = kv.value
    index = value.find(_METADATA)
    if index < 0 or index > 200:  # not written by encode_for_store: take the slow, certain path
        return orjson.dumps(decode_stored(kv))
    cut = index + len(_METADATA)
    separator = b"" if value[cut:cut + 1] == b"}" else b","
    return b"".join((value[:cut], b'"resourceVersion":"', str(kv.mod_revision).encode(), b'"', separator,
                     value[cut:]))


def stored_json_list(entries: list[tuple[KeyValue, dict[str, Any] | None]]) -> bytes:
    """A list page's items, comma-separated: each entry's object when given (it was decoded and
    decorated), else :func:`stored_json` of its stored bytes. One copy of the bytes instead of
    three (slices are views, joined once): a page of a 150,000-pod list costs mostly copying."""
    parts: list[bytes | memoryview] = []
    add = parts.append
    for kv, obj in entries:
        value = kv.value
        index = value.find(_METADATA, 0, 200) if obj is None else -1
        if index < 0:
            add(stored_json(kv) if obj is None else orjson.dumps(obj))
        else:
            cut = index + len(_METADATA)
            view = memoryview(value)
            add(view[:cut])
            add(b'"resourceVersion":"' + str(kv.mod_revision).encode()
                + (b'"' if value[cut:cut + 1] == b"}" else b'",'))
            add(view[cut:])
        add(b",")
    if parts:
        parts.pop()
    return b"".join(parts)


def encode_continue(revision: int, last_key: str) -> str:
    # Same shape as Kubernetes' token (base64 of {"v":"meta.k8s.io/v1","rv":N,"start":K}), so it is
    # opaque to clients and carries the revision that keeps every page consistent.
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key + "\x00"})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        revision = int(data["rv"])
        start = str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise bad_request("continue key is not valid: the continue token is malformed") from None
    if data.get("v") != "meta.k8s.io/v1":
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                          "(version meta.k8s.io/v1 required)")
    if not start.startswith(prefix):
        raise bad_request("continue key is not valid: the continue token does not belong to this list")
    return revision, start.rstrip("\x00")


def bookmark_object(kind: str, api_version: str, revision: str | int,
                    initial_events_end: bool = False) -> dict[str, Any]:
    """The object of a BOOKMARK watch event: only the kind and a resourceVersion, plus the
    ``k8s.io/initial-events-end`` annotation on the one that ends a watch's initial events."""
    metadata: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": kind, "apiVersion": api_version, "metadata": metadata}
