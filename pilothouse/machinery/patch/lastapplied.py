"""Moving from client-side to server-side apply without conflicts (``lastAppliedManager``).

Why it exists: an object made with plain ``kubectl apply`` is owned by the Update manager
``kubectl-client-side-apply``; the first ``kubectl apply --server-side`` of the same file would
conflict on every field that manager set and the configuration changes (an atomic list whose
items the server defaulted, an image bumped in the file). Kubernetes lets the ``kubectl`` applier
take over the fields the ``last-applied-configuration`` annotation still describes truthfully:
those whose value in the annotation is the live one. Other conflicts stand (a field someone
changed with ``kubectl scale`` or ``edit`` since). kubectl then moves the remaining client-side
ownership over itself (csaupgrade), with a JSON patch on managedFields. From then on the server
keeps the annotation in step with what ``kubectl`` applies, so that going back to client-side apply
diffs against the right configuration (``lastAppliedUpdater``).
"""

from __future__ import annotations

from typing import Any

import orjson

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.patch.fieldset import Path, go_json
from pilothouse.machinery.patch.managed import without_managed_fields
from pilothouse.machinery.patch.schemainfo import FieldMeta
from pilothouse.machinery.patch.typed import compare, to_field_set

__all__ = ["LAST_APPLIED_ANNOTATION", "UPGRADING_MANAGER", "allowed_conflicts", "keep_last_applied"]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

#: Only kubectl's own applier upgrades; another field manager opts out, as upstream.
UPGRADING_MANAGER = "kubectl"


def allowed_conflicts(live: Object, api_version: str, root: FieldMeta) -> set[Path]:
    """``allowedConflictsFromLastApplied``: the fields of the annotation whose value is the live one."""
    text = _annotation(live)
    if not text:
        return set()
    try:
        last_applied: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return set()
    # Written in another version, the annotation's paths do not name this version's fields.
    if not isinstance(last_applied, dict) or last_applied.get("apiVersion") != api_version:
        return set()
    differ = compare(last_applied, without_managed_fields(live), root)
    return to_field_set(last_applied, root) - differ.added - differ.modified - differ.removed


def _annotation(obj: Object) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations")
    text = annotations.get(LAST_APPLIED_ANNOTATION) if isinstance(annotations, dict) else None
    return text if isinstance(text, str) else None


def keep_last_applied(result: Object, applied: Object) -> None:
    """``lastAppliedUpdater``: an annotation the applied object still has becomes the applied
    configuration (without the annotation itself), as ``runtime.Encode`` writes it: Go's JSON and
    a newline."""
    if _annotation(result) is None:
        return
    config: Any = {**applied}
    metadata = config.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("annotations"), dict):
        config["metadata"] = {**metadata, "annotations": {k: v for k, v in metadata["annotations"].items()
                                                          if k != LAST_APPLIED_ANNOTATION}}
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[LAST_APPLIED_ANNOTATION] = go_json(config) + "\n"
