"""``metadata.managedFields``: decoding, encoding and the bookkeeping of non-apply writes.

Why it exists: every create/update/patch the API server performs is recorded as an ``Update``
operation of some field manager (``?fieldManager=`` or the User-Agent's program name), and
server-side apply needs those records to detect conflicts. This mirrors the apiserver
``managedfields`` stack: ``decodeManagedFields`` (a client may replace the list or reset it with
``[]`` or ``[{}]``; a body without the list keeps the stored one, so a client that drops it, such as
an informer that strips it, loses nothing), ``skipNonAppliedManager`` (an update of an object nobody
manages records nothing), ``stripMeta`` (identity and bookkeeping fields are never owned), reset fields (``status``
for the main resource, ``spec`` for ``/status``), structured-merge-diff's ``Updater.Update``
(changed fields move to the writer; removed fields leave everyone) and
``managedFieldsUpdater`` (the writer's entry is unioned and re-timestamped only when it took
fields), then sorted encoding (``sortEncodedManagedFields``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pilothouse.machinery import meta
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.patch import fieldset, owned
from pilothouse.machinery.patch.created import created_fields_v1
from pilothouse.machinery.patch.fieldset import Path
from pilothouse.machinery.patch.schemainfo import field_meta, node_meta
from pilothouse.machinery.patch.typed import MISSING, Comparison, compare
from pilothouse.machinery.schema import Schema

__all__ = [
    "ManagerEntry",
    "ManagerKey",
    "decode_managed_fields",
    "encode_managed_fields",
    "manager_from_user_agent",
    "manager_identifier",
    "strip_untracked",
    "track_update",
]

#: Paths the apiserver's stripMetaManager never records (exact paths, not subtrees).
_STRIPPED: frozenset[Path] = frozenset(
    tuple(fieldset.field(part) for part in dotted.split("."))
    for dotted in ("apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
                   "metadata.creationTimestamp", "metadata.selfLink", "metadata.uid",
                   "metadata.clusterName", "metadata.generation", "metadata.managedFields",
                   "metadata.resourceVersion")
)


@dataclass(frozen=True, order=True)
class ManagerKey:
    """What identifies a manager (BuildManagerIdentifier): Apply entries ignore apiVersion."""

    manager: str
    operation: str
    api_version: str = ""
    subresource: str = ""


@dataclass
class ManagerEntry:
    fields: set[Path]
    api_version: str
    time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_key(manager: str, operation: str, api_version: str, subresource: str = "") -> ManagerKey:
    return ManagerKey(manager, operation, api_version if operation == "Update" else "", subresource)


def manager_identifier(key: ManagerKey) -> str:
    """The JSON identifier Kubernetes sorts conflicts by."""
    data: dict[str, Any] = {"manager": key.manager, "operation": key.operation}
    if key.api_version:
        data["apiVersion"] = key.api_version
    if key.subresource:
        data["subresource"] = key.subresource
    return json.dumps(data, separators=(",", ":"))


def manager_from_user_agent(user_agent: str) -> str:
    """``managerOrUserAgent``: the program name before the first ``/``, at most 128 characters."""
    head = user_agent.split("/", 1)[0] if user_agent else ""
    return "".join(ch for ch in head if ch.isprintable())[:128]


def decode_managed_fields(entries: Any) -> dict[ManagerKey, ManagerEntry]:
    """Managers and their sets from ``metadata.managedFields``; undecodable input gives {}."""
    managers: dict[ManagerKey, ManagerEntry] = {}
    if not isinstance(entries, list):
        return managers
    try:
        for entry in entries:
            key = make_key(str(entry.get("manager", "")), str(entry.get("operation", "")),
                           str(entry.get("apiVersion", "")), str(entry.get("subresource", "")))
            paths = fieldset.decode_fields_v1(entry.get("fieldsV1") or {})
            if key in managers:
                managers[key].fields |= paths
            else:
                managers[key] = ManagerEntry(paths, str(entry.get("apiVersion", "")), entry.get("time"))
    except (AttributeError, TypeError, ValueError):
        return {}
    return managers


def encode_managed_fields(managers: dict[ManagerKey, ManagerEntry]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for key, entry in managers.items():
        if not entry.fields:
            continue
        encoded: dict[str, Any] = {
            "manager": key.manager,
            "operation": key.operation,
            "apiVersion": entry.api_version,
        }
        if entry.time:
            encoded["time"] = entry.time
        encoded["fieldsType"] = "FieldsV1"
        encoded["fieldsV1"] = fieldset.encode_fields_v1(entry.fields)
        if key.subresource:
            encoded["subresource"] = key.subresource
        entries.append(encoded)
    entries.sort(key=lambda e: (e["operation"], e.get("time") or "", e["manager"], e["apiVersion"],
                                e.get("subresource", "")))
    return entries


#: At most this many Update entries (capmanagers.go's DefaultMaxUpdateManagers); Apply entries are not capped.
MAX_UPDATE_MANAGERS = 10
#: The entry the oldest Update managers are merged into, one per apiVersion.
ANCIENT_CHANGES = "ancient-changes"


def _seconds(time: str | None) -> int:
    moment = meta.parse_time(time)
    return int(moment.timestamp()) if moment is not None else 0


def cap_update_managers(managers: dict[ManagerKey, ManagerEntry], limit: int = MAX_UPDATE_MANAGERS) -> None:
    """capManagersManager.capUpdateManagers: when more than ``limit`` Update managers own fields,
    merge the oldest (by time in seconds, then identifier) into ``ancient-changes`` buckets, one per
    apiVersion, until ``limit`` remain. The first manager seen of a version becomes its bucket when
    a second one of that version is merged. Kubernetes' algorithm step for step, so that the entries
    kubectl shows match."""
    updaters = [key for key in managers if key.operation != "Apply"]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda key: (_seconds(managers[key].time), manager_identifier(key)))
    first_of_version: dict[str, ManagerKey] = {}
    length = len(updaters)
    for manager in updaters:
        if length <= limit:
            break
        entry = managers.get(manager)
        if entry is None:
            continue
        version = entry.api_version
        first = first_of_version.get(version)
        if first is None:
            first_of_version[version] = manager
            continue
        bucket = make_key(ANCIENT_CHANGES, "Update", version)
        if bucket not in managers:
            managers[bucket] = managers.pop(first)
        # the merged update is newer than what the bucket held: its time becomes the bucket's
        managers[bucket] = ManagerEntry(entry.fields | managers[bucket].fields, version, entry.time)
        del managers[manager]
        length -= 1


def strip_untracked(paths: set[Path]) -> set[Path]:
    return {p for p in paths if p not in _STRIPPED}


def _ignored_prefixes(subresource: str) -> tuple[Path, ...]:
    # The reset fields of the common strategies: the main resource never owns status, the status
    # subresource never owns spec.
    if subresource == "status":
        return ((fieldset.field("spec"),),)
    if subresource:
        return ()
    return ((fieldset.field("status"),),)


def filter_ignored(paths: set[Path], subresource: str) -> set[Path]:
    prefixes = _ignored_prefixes(subresource)
    return {p for p in paths if not any(p[:len(pre)] == pre for pre in prefixes)}


def without_managed_fields(obj: Object) -> Object:
    """A view of ``obj`` without managedFields. Shallow on purpose: the comparison only reads it,
    and copying whole objects on every write was the largest cost of a create."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    clean = dict(obj)
    clean["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return clean


def creation_skeleton(new: Any, schema: Schema | None) -> Any:
    """The typed zero value Kubernetes compares a created object against.

    A new Go object already has its non-pointer structs (``metadata``, ``spec``, ``template``...)
    and its required (non-omitempty) fields as nulls, so they are not "added" and do not get the
    ``.`` membership marker; we approximate that from the schema's ``required`` lists.
    """
    if not isinstance(new, dict) or not schema:
        return {}
    required = set(schema.get("required") or ())
    out: dict[str, Any] = {}
    for name, child in new.items():
        meta = field_meta(schema, name)
        is_struct = bool(meta.schema and meta.schema.get("properties"))
        if name in _ALWAYS_PRESENT and isinstance(child, dict) and is_struct:
            out[name] = creation_skeleton(child, meta.schema)
        elif name in required:
            nested = isinstance(child, dict) and is_struct
            out[name] = creation_skeleton(child, meta.schema) if nested else None
    return out


_ALWAYS_PRESENT = frozenset({"metadata", "spec", "status", "template", "strategy", "updateStrategy"})


def comparison(live: Object | None, new: Object, schema: Schema | None, subresource: str) -> Comparison:
    root = node_meta(schema)
    before = without_managed_fields(live) if live is not None else creation_skeleton(new, root.schema)
    result = compare(before if before is not None else MISSING, without_managed_fields(new), root)
    result.added = filter_ignored(result.added, subresource)
    result.modified = filter_ignored(result.modified, subresource)
    result.removed = filter_ignored(result.removed, subresource)
    return result


def _decode_live_or_new(live: Object | None, new: Object, subresource: str) -> dict[ManagerKey, ManagerEntry]:
    live_entries = (live or {}).get("metadata", {}).get("managedFields") if live else None
    if subresource:
        return decode_managed_fields(live_entries)
    new_entries = (new.get("metadata") or {}).get("managedFields")
    if _is_reset(new_entries):
        return {}
    managers = decode_managed_fields(new_entries)
    if not managers:
        managers = decode_managed_fields(live_entries)
    return managers


def track_update(live: Object | None, new: Object, manager: str, operation: str, api_version: str,
                 now: str, schema: Schema | None, subresource: str = "") -> None:
    """Record a create/update/patch by ``manager`` in ``new["metadata"]["managedFields"]``.

    ``live`` is the stored object (None on create), ``new`` the object about to be stored; ``now``
    an RFC 3339 timestamp. Fields that changed become ``manager``'s and leave every other
    manager; removed fields leave everyone. ``operation`` is normally "Update".
    """
    metadata = new.get("metadata")
    if not isinstance(metadata, dict):
        return
    raw = _raw_entries(live, new, subresource)
    if raw is not None:
        if live is None and not subresource and not raw:
            # A plain create: the writer takes every field and nobody else owns any (see .created).
            _track_create(new, metadata, make_key(manager, operation, api_version), api_version, now, schema)
        elif live is not None and not raw:
            _skip_untracked(metadata)
        else:
            _track_owned(live, new, raw, make_key(manager, operation, api_version, subresource), api_version,
                         now, schema, subresource)
        return
    managers = _decode_live_or_new(live, new, subresource)
    _track_general(live, new, managers, manager, operation, api_version, now, schema, subresource)


def _is_reset(entries: Any) -> bool:
    """isResetManagedFields: a list that is there but empty, or one empty entry, resets the
    managers; a list that is not there at all keeps the stored one."""
    return isinstance(entries, list) and (not entries or (len(entries) == 1 and entries[0] == {}))


def _skip_untracked(metadata: dict[str, Any]) -> None:
    """skipNonAppliedManager (apimachinery's managedfields/internal/skipnonapplied.go): an update
    (the object exists) that finds no manager -- none stored and none in the body, or the body reset
    them -- records nothing, and the object is tracked again from its next apply. A create (no stored
    object) is always tracked: upstream's probability of tracking a create is 1."""
    metadata.pop("managedFields", None)


_RawEntry = tuple[ManagerKey, dict[str, Any], str, Any]  # key, FieldsV1, apiVersion, time


def _raw_entries(live: Object | None, new: Object, subresource: str) -> list[_RawEntry] | None:
    """The entries _decode_live_or_new would decode, kept as FieldsV1 dicts; None unless every one
    is canonical with a distinct key (then only the set-based path gives the exact answer)."""
    live_entries = (live or {}).get("metadata", {}).get("managedFields") if live else None
    chosen = live_entries
    if not subresource:
        new_entries = (new.get("metadata") or {}).get("managedFields")
        if _is_reset(new_entries):
            return []
        if isinstance(new_entries, list) and new_entries:
            chosen = new_entries
    if not isinstance(chosen, list):
        return []
    out: list[_RawEntry] = []
    seen: set[ManagerKey] = set()
    for entry in chosen:
        if not isinstance(entry, dict):
            return None
        key = make_key(str(entry.get("manager", "")), str(entry.get("operation", "")),
                       str(entry.get("apiVersion", "")), str(entry.get("subresource", "")))
        fields_v1 = entry.get("fieldsV1") or {}
        if key in seen or not owned.is_canonical_root(fields_v1):
            return None
        seen.add(key)
        out.append((key, fields_v1, str(entry.get("apiVersion", "")), entry.get("time")))
    return out


def _track_owned(live: Object | None, new: Object, entries: list[_RawEntry], key: ManagerKey, api_version: str,
                 now: str, schema: Schema | None, subresource: str) -> None:
    """track_update on the FieldsV1 dicts themselves (see .owned): same result as _track_general."""
    diff = comparison(live, new, schema, subresource)
    taken = strip_untracked(diff.added | diff.modified)
    drop = owned.trie(taken | strip_untracked(diff.removed))
    if drop.children:
        entries = [(k, owned.remove_paths(f, drop), v, t) for k, f, v, t in entries]
    if taken:
        gained = owned.trie(taken)
        for position, (other, fields_v1, _, _) in enumerate(entries):
            if other == key:
                entries[position] = (key, owned.union_paths(fields_v1, gained), api_version, now)
                break
        else:
            entries.append((key, owned.emit(gained), api_version, now))
    encoded: list[dict[str, Any]] = []
    for entry_key, fields_v1, entry_version, time in entries:
        if not fields_v1:
            continue
        item: dict[str, Any] = {"manager": entry_key.manager, "operation": entry_key.operation,
                                "apiVersion": entry_version}
        if time:
            item["time"] = time
        item["fieldsType"] = "FieldsV1"
        item["fieldsV1"] = fields_v1
        if entry_key.subresource:
            item["subresource"] = entry_key.subresource
        encoded.append(item)
    encoded.sort(key=lambda e: (e["operation"], e.get("time") or "", e["manager"], e["apiVersion"],
                                e.get("subresource", "")))
    if sum(1 for e in encoded if e["operation"] != "Apply") > MAX_UPDATE_MANAGERS:
        # rare: merge the oldest on the decoded sets, as the general path does
        managers = decode_managed_fields(encoded)
        cap_update_managers(managers)
        encoded = encode_managed_fields(managers)
    metadata = new["metadata"]
    if encoded:
        metadata["managedFields"] = encoded
    else:
        metadata.pop("managedFields", None)


def _track_create(new: Object, metadata: dict[str, Any], key: ManagerKey, api_version: str, now: str,
                  schema: Schema | None) -> None:
    root = node_meta(schema)
    fields_v1 = created_fields_v1(creation_skeleton(new, root.schema), without_managed_fields(new), root)
    if not fields_v1:
        metadata.pop("managedFields", None)
        return
    # encode_managed_fields' layout for a single entry.
    encoded: dict[str, Any] = {"manager": key.manager, "operation": key.operation, "apiVersion": api_version}
    if now:
        encoded["time"] = now
    encoded["fieldsType"] = "FieldsV1"
    encoded["fieldsV1"] = fields_v1
    metadata["managedFields"] = [encoded]


def _track_general(live: Object | None, new: Object, managers: dict[ManagerKey, ManagerEntry], manager: str,
                   operation: str, api_version: str, now: str, schema: Schema | None,
                   subresource: str) -> None:
    """track_update by comparison and path sets: any write (the reference for the create path)."""
    metadata = new["metadata"]
    if live is not None and not managers:
        _skip_untracked(metadata)
        return
    diff = comparison(live, new, schema, subresource)
    taken = strip_untracked(diff.added | diff.modified)
    removed = strip_untracked(diff.removed)
    for entry in managers.values():
        entry.fields -= taken
        entry.fields -= removed
    key = make_key(manager, operation, api_version, subresource)
    if taken:
        previous = managers.get(key)
        fields = taken | (previous.fields if previous else set())
        managers[key] = ManagerEntry(fields, api_version, now)
    for emptied in [k for k, v in managers.items() if not v.fields]:
        del managers[emptied]  # as the merge's updater drops them, before the cap counts managers
    cap_update_managers(managers)
    encoded = encode_managed_fields(managers)
    if encoded:
        metadata["managedFields"] = encoded
    else:
        metadata.pop("managedFields", None)
