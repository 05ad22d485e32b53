"""Small pieces of the Job API shared by the Job, CronJob and TTL-after-finished controllers.

Condition handling (``FailureTarget``/``SuccessCriteriaMet`` before ``Failed``/``Complete``), the
pod tracking finalizer, and the compact index sets of Indexed Jobs (``status.completedIndexes`` is
``"0-3,7"``).
"""

from __future__ import annotations

from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = [
    "COMPLETION_INDEX_ANNOTATION",
    "TRACKING_FINALIZER",
    "condition_true",
    "finish_time",
    "format_indexes",
    "job_finished",
    "new_condition",
    "parse_indexes",
    "pod_index",
    "set_condition",
]


#: ``batchv1.JobTrackingFinalizer``.
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
#: ``batchv1.JobCompletionIndexAnnotation`` (also the label of the same name).
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def condition_true(job: Object, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def job_finished(job: Object) -> str | None:
    """``Complete`` or ``Failed`` when the job has that terminal condition, else None."""
    for kind in ("Complete", "Failed"):
        if condition_true(job, kind):
            return kind
    return None


def finish_time(job: Object) -> str | None:
    """When the terminal condition was set (``lastTransitionTime``)."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition.get("lastTransitionTime") or "") or None
    return None


def new_condition(kind: str, reason: str, message: str, status: str = "True") -> Object:
    now = meta.format_time()
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastProbeTime": now, "lastTransitionTime": now}


def set_condition(conditions: list[Object], condition: Object) -> None:
    """Replace the condition of the same type (keeping its transition time when the status holds)."""
    for i, existing in enumerate(conditions):
        if existing.get("type") == condition["type"]:
            if existing.get("status") == condition["status"]:
                condition = {**condition, "lastTransitionTime": existing.get("lastTransitionTime")}
            conditions[i] = condition
            return
    conditions.append(condition)


def pod_index(pod: Object) -> int | None:
    text = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    if text is None:
        text = (pod["metadata"].get("labels") or {}).get(COMPLETION_INDEX_ANNOTATION)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_indexes(text: str | None) -> set[int]:
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            found.update(range(int(first), int(last or first) + 1))
        except ValueError:
            continue
    return found


def format_indexes(indexes: set[int]) -> str:
    ordered = sorted(indexes)
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
