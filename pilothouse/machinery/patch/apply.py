"""Server-side apply (``application/apply-patch+yaml``): merge, prune, conflicts, ownership.

Why it exists: ``kubectl apply --server-side`` and controllers using apply configurations send
the fields they care about; the server merges them into the live object and records that the
applier owns exactly those fields. This follows structured-merge-diff's ``Updater.Apply``:

1. merge the configuration into the live object (map-lists by key, sets by value, atomic
   values replaced);
2. the applier's set becomes the configuration's field set; fields it applied last time, omits
   now and nobody else owns are pruned from the object;
3. fields whose value changes and that another manager owns are conflicts: 409 unless
   ``force``, in which case they move to the applier; removed fields leave everyone.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import StatusError, bad_request
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.patch import fieldset
from pilothouse.machinery.patch.fieldset import Path
from pilothouse.machinery.patch.lastapplied import UPGRADING_MANAGER, allowed_conflicts, keep_last_applied
from pilothouse.machinery.patch.managed import (
    ManagerEntry,
    ManagerKey,
    comparison,
    decode_managed_fields,
    encode_managed_fields,
    filter_ignored,
    make_key,
    manager_identifier,
    strip_untracked,
    without_managed_fields,
)
from pilothouse.machinery.patch.schemainfo import node_meta
from pilothouse.machinery.patch.typed import merge, remove_paths, to_field_set
from pilothouse.machinery.schema import Schema

__all__ = ["conflict_error", "server_side_apply"]


def _print_manager(key: ManagerKey) -> str:
    text = f'"{key.manager}"'
    if key.subresource:
        text += f' with subresource "{key.subresource}"'
    if key.operation == "Update":
        text += f" using {key.api_version}"
    return text


def conflict_error(conflicts: dict[ManagerKey, set[Path]]) -> StatusError:
    """``NewConflictError``: 409 Conflict with one FieldManagerConflict cause per field."""
    ordered = sorted(conflicts, key=manager_identifier)
    flat = [(key, path) for key in ordered
            for path in sorted(conflicts[key], key=fieldset.path_sort_key)]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(key)}",
               "field": fieldset.path_string(path)} for key, path in flat]
    if len(flat) == 1:
        key, path = flat[0]
        message = (f"Apply failed with 1 conflict: conflict with {_print_manager(key)}: "
                   f"{fieldset.path_string(path)}")
    else:
        lines: list[str] = []
        for key in ordered:
            lines.append(f"conflicts with {_print_manager(key)}:")
            lines.extend(f"- {fieldset.path_string(path)}"
                         for path in sorted(conflicts[key], key=fieldset.path_sort_key))
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, {"causes": causes})


def _check_config(applied: Any, api_version: str) -> None:
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration is not an object")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    given = applied.get("apiVersion")
    if given is not None and given != api_version:
        raise bad_request(f"Incorrect version specified in apply patch. Specified patch version: "
                          f"{given}, expected: {api_version}")


def server_side_apply(live: Object | None, applied: Object, manager: str, force: bool, api_version: str,
                      now: str, schema: Schema | None, subresource: str = "") -> Object:
    """Apply ``applied`` as ``manager``; return the new object with managedFields updated.

    ``live`` None means the object does not exist yet: the configuration becomes the object
    (the caller then creates it). ``schema`` None (custom resources) treats lists as atomic.
    Raises a 409 StatusError on conflicts unless ``force``. Through ``subresource`` (status), the
    applier owns only what that subresource may change and its entry is marked with it.
    """
    _check_config(applied, api_version)
    root = node_meta(schema)
    live_clean = without_managed_fields(live) if live is not None else {}
    managers = decode_managed_fields(((live or {}).get("metadata") or {}).get("managedFields"))
    key = make_key(manager, "Apply", api_version, subresource)

    merged = merge(live_clean, applied, root)
    applied_set = filter_ignored(strip_untracked(to_field_set(applied, root)), subresource)
    previous = managers.get(key)
    managers[key] = ManagerEntry(applied_set, api_version, previous.time if previous else None)

    if previous and previous.fields:
        owned: set[Path] = set()
        for entry in managers.values():
            owned |= entry.fields
        doomed = fieldset.expand(previous.fields) - fieldset.expand(owned)
        merged = remove_paths(merged, doomed, root)

    diff = comparison(live_clean if live is not None else None, merged, schema, subresource)
    changed = strip_untracked(diff.added | diff.modified)
    removed = strip_untracked(diff.removed)
    conflicts: dict[ManagerKey, set[Path]] = {}
    for other, entry in managers.items():
        if other != key and entry.fields & changed:
            conflicts[other] = entry.fields & changed
    if conflicts and not force and manager == UPGRADING_MANAGER and live is not None:
        allowed = allowed_conflicts(live, api_version, root)
        conflicts = {other: paths - allowed for other, paths in conflicts.items() if paths - allowed}
    if conflicts and not force:
        raise conflict_error(conflicts)
    for other, entry in managers.items():
        if other != key:
            entry.fields -= changed
            entry.fields -= removed

    unchanged = live is not None and merged == live_clean
    if not unchanged or managers[key].time is None:
        managers[key].time = now
    managers[key].api_version = api_version

    result: Object = merged
    if manager == UPGRADING_MANAGER:
        keep_last_applied(result, applied)  # after the bookkeeping: nobody owns the new value
    metadata = result.setdefault("metadata", {})
    encoded = encode_managed_fields(managers)
    if encoded:
        metadata["managedFields"] = encoded
    else:
        metadata.pop("managedFields", None)
    return result
