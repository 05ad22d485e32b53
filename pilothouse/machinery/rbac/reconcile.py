"""What the bootstrap policy asks of a stored role or binding (``pkg/registry/rbac/reconciliation``).

Pure decisions, no I/O: given the stored object (or None) and the expected one, say whether to
create, update (with the object to write), recreate (a binding whose roleRef changed, which is
immutable) or leave it. Reconciliation is a union: labels, annotations, rules, aggregation
selectors and subjects are added, never removed. An object annotated
``rbac.authorization.kubernetes.io/autoupdate: "false"`` is protected and left alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from pilothouse.machinery.meta import Object
from pilothouse.machinery.rbac.bootstrappolicy import AUTOUPDATE_ANNOTATION
from pilothouse.machinery.rbac.covers import covers

__all__ = ["Reconciled", "reconcile_binding", "reconcile_role"]

Operation = Literal["create", "update", "recreate", "none"]


@dataclass(frozen=True)
class Reconciled:
    operation: Operation
    #: What to write (the expected object for create/recreate, the merged one for update).
    obj: Object
    protected: bool = False


def _protected(existing: Object) -> bool:
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(AUTOUPDATE_ANNOTATION) == "false")


def _merge_metadata(result: Object, expected: Object) -> bool:
    """Expected labels and annotations under the stored ones (stored values win); True if changed."""
    changed = False
    meta = result["metadata"]
    for key in ("annotations", "labels"):
        wanted = (expected.get("metadata") or {}).get(key)
        if not wanted:
            continue
        merged = {**wanted, **(meta.get(key) or {})}
        if merged != meta.get(key):
            meta[key] = merged
            changed = True
    return changed


def reconcile_role(existing: Object | None, expected: Object) -> Reconciled:
    """``computeReconciledRole`` in the union mode the post-start hook uses."""
    if existing is None:
        return Reconciled("create", copy.deepcopy(expected))
    result = copy.deepcopy(existing)
    changed = _merge_metadata(result, expected)
    _, missing = covers(existing.get("rules") or [], expected.get("rules") or [])
    if missing:
        result["rules"] = [*(result.get("rules") or []), *missing]
        changed = True
    want_rule = expected.get("aggregationRule")
    have_rule = existing.get("aggregationRule")
    if want_rule is None and have_rule is not None:
        # Not an aggregated role by policy: drop the aggregation (its rules stay).
        result.pop("aggregationRule", None)
        changed = True
    elif want_rule is not None:
        have = list((have_rule or {}).get("clusterRoleSelectors") or [])
        absent = [s for s in want_rule.get("clusterRoleSelectors") or [] if s not in have]
        if absent:
            result["aggregationRule"] = {"clusterRoleSelectors": have + absent}
            changed = True
    return Reconciled("update" if changed else "none", result, _protected(existing))


def _subject_key(subject: Object) -> tuple[str, str, str, str]:
    return (subject.get("kind", ""), subject.get("apiGroup", ""), subject.get("name", ""),
            subject.get("namespace", ""))


def reconcile_binding(existing: Object | None, expected: Object) -> Reconciled:
    """``computeReconciledRoleBinding`` in union mode."""
    if existing is None:
        return Reconciled("create", copy.deepcopy(expected))
    if existing.get("roleRef") != expected.get("roleRef"):
        return Reconciled("recreate", copy.deepcopy(expected), _protected(existing))
    result = copy.deepcopy(existing)
    changed = _merge_metadata(result, expected)
    have = {_subject_key(s) for s in existing.get("subjects") or []}
    missing = [s for s in expected.get("subjects") or [] if _subject_key(s) not in have]
    if missing:
        result["subjects"] = [*(result.get("subjects") or []), *missing]
        changed = True
    return Reconciled("update" if changed else "none", result, _protected(existing))
