"""Pure Deployment arithmetic: fenceposts, revisions, annotations, conditions, status.

Mirrors ``pkg/controller/deployment/util/deployment_util.go`` (Kubernetes 1.32) so the controller in
:mod:`deployment` reads like the Go one and these rules are unit-testable without a server.
ReplicaSets and Deployments are plain JSON dicts.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta
from typing import Any

from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = [
    "ANNOTATIONS_TO_SKIP",
    "AVAILABLE_REASON",
    "DESIRED_REPLICAS_ANNOTATION",
    "FAILED_RS_CREATE_REASON",
    "FOUND_NEW_RS_REASON",
    "HASH_LABEL",
    "MAX_REPLICAS_ANNOTATION",
    "NEW_RS_AVAILABLE_REASON",
    "NEW_RS_REASON",
    "PAUSED_REASON",
    "RESUMED_REASON",
    "REVISION_ANNOTATION",
    "REVISION_HISTORY_ANNOTATION",
    "RS_UPDATED_REASON",
    "TIMED_OUT_REASON",
    "UNAVAILABLE_REASON",
    "available_count",
    "deployment_complete",
    "deployment_progressing",
    "deployment_timed_out",
    "equal_ignore_hash",
    "filter_active",
    "find_active_or_latest",
    "find_new_replicaset",
    "find_old_replicasets",
    "get_condition",
    "has_progress_deadline",
    "is_rolling_update",
    "is_saturated",
    "max_revision",
    "max_surge",
    "max_unavailable",
    "new_condition",
    "new_rs_new_replicas",
    "proportion",
    "remove_condition",
    "replicas",
    "resolve_fenceposts",
    "revision",
    "scaled_value",
    "set_condition",
    "set_new_replicaset_annotations",
    "set_replicas_annotations",
    "spec_replicas_total",
    "status_replicas_total",
]


HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
ANNOTATIONS_TO_SKIP = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, "deprecated.deployment.rollback.to",
})
MAX_REV_HISTORY_CHARS = 2000

RS_UPDATED_REASON = "ReplicaSetUpdated"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
AVAILABLE_REASON = "MinimumReplicasAvailable"
UNAVAILABLE_REASON = "MinimumReplicasUnavailable"
_MAX_INT32 = 2**31 - 1

# -------------------------------------------------------------------------------------------- counts


def replicas(obj: Object) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status(obj: Object | None, name: str) -> int:
    return int(((obj or {}).get("status") or {}).get(name) or 0)


def spec_replicas_total(rss: list[Object | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def status_replicas_total(rss: list[Object | None], name: str = "replicas") -> int:
    return sum(_status(rs, name) for rs in rss if rs is not None)


def available_count(rss: list[Object | None]) -> int:
    return status_replicas_total(rss, "availableReplicas")


def filter_active(rss: list[Object | None]) -> list[Object]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


# --------------------------------------------------------------------------------------- fenceposts


def is_rolling_update(d: Object) -> bool:
    return bool(((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def scaled_value(value: int | str | None, total: int, round_up: bool, default: str = "25%") -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(d: Object) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods; both zero is not allowed, so unavailable becomes 1."""
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: Object) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def max_surge(d: Object) -> int:
    if not is_rolling_update(d):
        return 0
    return resolve_fenceposts(d)[0]


def new_rs_new_replicas(d: Object, all_rss: list[Object | None], new_rs: Object) -> int:
    """How many replicas the new ReplicaSet may have now (``NewRSNewReplicas``)."""
    if not is_rolling_update(d):
        return replicas(d)
    current = spec_replicas_total(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def _int_annotation(rs: Object, name: str) -> int | None:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def is_saturated(d: Object, rs: Object | None) -> bool:
    if rs is None:
        return False
    return (replicas(rs) == replicas(d) and _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == replicas(d)
            and _status(rs, "availableReplicas") == replicas(d))


def proportion(rs: Object | None, d: Object, to_add: int, added: int) -> int:
    """``GetProportion``: this ReplicaSet's share of a scaling of the whole Deployment."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if replicas(d) == 0:
        fraction = -replicas(rs)
    else:
        deployment_replicas = replicas(d) + max_surge(d)
        annotated = _int_annotation(rs, MAX_REPLICAS_ANNOTATION)
        if annotated is None:
            annotated = _status(d, "replicas")
        if annotated == 0:
            return 0
        size = replicas(rs) * deployment_replicas / annotated
        fraction = math.floor(size + 0.5) - replicas(rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# ---------------------------------------------------------------------------------------- revisions


def revision(obj: Object | None) -> int:
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def max_revision(rss: list[Object]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def _normalized(value: Any) -> Any:
    """Go compares templates as structs: null, missing and empty are all the zero value (kubectl
    rollout undo sends ``creationTimestamp: null``, for one)."""
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _without_hash(template: Object | None) -> Object:
    template = _normalized(copy.deepcopy(template or {}))
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
        if not labels:
            del template["metadata"]["labels"]
    if "metadata" in template and not template["metadata"]:
        del template["metadata"]
    return template


def equal_ignore_hash(a: Object | None, b: Object | None) -> bool:
    return _without_hash(a) == _without_hash(b)


def _by_creation(rss: list[Object]) -> list[Object]:
    return sorted(rss, key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]))


def find_new_replicaset(d: Object, rss: list[Object]) -> Object | None:
    """The oldest ReplicaSet whose template equals the Deployment's, ignoring the hash label."""
    template = (d.get("spec") or {}).get("template")
    for rs in _by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_replicasets(d: Object, rss: list[Object]) -> list[Object]:
    new_rs = find_new_replicaset(d, rss)
    new_uid = new_rs["metadata"]["uid"] if new_rs is not None else None
    return [rs for rs in rss if rs["metadata"].get("uid") != new_uid]


def find_active_or_latest(new_rs: Object | None, old_rss: list[Object]) -> Object | None:
    if new_rs is None and not old_rss:
        return None
    old_sorted = list(reversed(_by_creation(old_rss)))
    active = filter_active([*old_sorted, new_rs])
    if not active:
        return new_rs if new_rs is not None else old_sorted[0]
    if len(active) == 1:
        return active[0]
    return None


def set_replicas_annotations(rs: Object, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS_ANNOTATION, desired), (MAX_REPLICAS_ANNOTATION, max_replicas)):
        if annotations.get(name) != str(value):
            annotations[name] = str(value)
            changed = True
    return changed


def set_new_replicaset_annotations(d: Object, rs: Object, new_revision: int, exists: bool) -> bool:
    """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, raise the revision (keeping
    the revisions it had before in ``revision-history``: a rollback), and on creation the replica
    annotations. Mutates ``rs``; returns whether anything changed."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for name, value in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if name in ANNOTATIONS_TO_SKIP or annotations.get(name) == value:
            continue
        annotations[name] = value
        changed = True
    old_text = annotations.get(REVISION_ANNOTATION)
    try:
        old = int(old_text) if old_text else 0
    except ValueError:
        return changed
    if old < new_revision:
        annotations[REVISION_ANNOTATION] = str(new_revision)
        changed = True
        if old_text:
            history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
            revisions = history.split(",") if history else []
            total = len(history) + len(old_text) + 1
            start = 0
            while total > MAX_REV_HISTORY_CHARS and start < len(revisions):
                total -= len(revisions[start]) + 1
                start += 1
            if total <= MAX_REV_HISTORY_CHARS:
                annotations[REVISION_HISTORY_ANNOTATION] = ",".join([*revisions[start:], old_text])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


# ---------------------------------------------------------------------------------------- conditions


def get_condition(status: Object, kind: str) -> Object | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def new_condition(kind: str, status: str, reason: str, message: str, at: datetime | None = None) -> Object:
    stamp = meta.format_time(at)
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def set_condition(status: Object, condition: Object) -> None:
    """``SetDeploymentCondition``: same status and reason is no change; same status keeps the
    transition time."""
    current = get_condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"] and \
            current.get("reason") == condition["reason"]:
        return
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    others = [c for c in status.get("conditions") or () if c.get("type") != condition["type"]]
    status["conditions"] = [*others, condition]


def remove_condition(status: Object, kind: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != kind]
    if not status["conditions"]:
        del status["conditions"]


# ------------------------------------------------------------------------------------------ progress


def has_progress_deadline(d: Object) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) != _MAX_INT32


def deployment_complete(d: Object, status: Object) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0))


def deployment_progressing(d: Object, new: Object) -> bool:
    old = d.get("status") or {}

    def get(s: Object, name: str) -> int:
        return int(s.get(name) or 0)

    new_old_replicas = get(new, "replicas") - get(new, "updatedReplicas")
    old_old_replicas = get(old, "replicas") - get(old, "updatedReplicas")
    return (get(new, "updatedReplicas") > get(old, "updatedReplicas") or new_old_replicas < old_old_replicas
            or get(new, "readyReplicas") > get(old, "readyReplicas")
            or get(new, "availableReplicas") > get(old, "availableReplicas"))


def deployment_timed_out(d: Object, status: Object, now: datetime | None = None) -> bool:
    if not has_progress_deadline(d):
        return False
    condition = get_condition(status, "Progressing")
    if condition is None:
        return False
    if condition.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if condition.get("reason") == TIMED_OUT_REASON:
        return True
    since = meta.parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = since + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))
    return deadline < (now or meta.now())
