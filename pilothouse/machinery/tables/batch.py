"""Printers for ``batch/v1``: jobs (STATUS COMPLETIONS DURATION, as of 1.31+) and cron jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.duration import human_duration, parse_time, since, translate_since
from pilothouse.machinery.tables.formatting import format_label_selector, layout_containers

__all__ = ["job_status"]

_CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")
_SELECTOR = Column("Selector", priority=1, description=Doc("batch.v1.JobSpec", "selector"))


def _has_condition(conditions: list[dict[str, Any]], kind: str) -> bool:
    # hasJobCondition looks at the first condition of the type only.
    for condition in conditions:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def job_status(job: Object) -> str:
    conditions = (job.get("status") or {}).get("conditions") or []
    if _has_condition(conditions, "Complete"):
        return "Complete"
    if _has_condition(conditions, "Failed"):
        return "Failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if _has_condition(conditions, "Suspended"):
        return "Suspended"
    if _has_condition(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


@printer(
    ("batch", "Job"),
    [
        NAME,
        Column("Status", description="Status of the job."),
        Column("Completions", description=Doc("batch.v1.JobStatus", "succeeded")),
        Column("Duration", description="Time required to complete the job."),
        AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ],
)
def job_cells(job: Object, now: datetime) -> list[Any]:
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    start = parse_time(status["startTime"]) if status.get("startTime") else None
    if start is not None:
        end = parse_time(status["completionTime"]) if status.get("completionTime") else None
        if end is None:
            duration = human_duration(since(status["startTime"], now) or 0.0)
        else:
            duration = human_duration((end - start).total_seconds())
    names, images = layout_containers(((spec.get("template") or {}).get("spec") or {}).get("containers"))
    return [
        (job.get("metadata") or {}).get("name", ""),
        job_status(job),
        completions,
        duration,
        age(job, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _bool_ptr(value: Any) -> str:
    """``printBoolPtr``."""
    if value is None:
        return "<unset>"
    return "True" if value else "False"


@printer(
    ("batch", "CronJob"),
    [
        NAME,
        Column("Schedule", description=Doc("batch.v1.CronJobSpec", "schedule")),
        Column("Timezone", description=Doc("batch.v1.CronJobSpec", "timeZone")),
        Column("Suspend", type="boolean", description=Doc("batch.v1.CronJobSpec", "suspend")),
        Column("Active", type="integer", description=Doc("batch.v1.CronJobStatus", "active")),
        Column("Last Schedule", description=Doc("batch.v1.CronJobStatus", "lastScheduleTime")),
        AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ],
)
def cronjob_cells(cron: Object, now: datetime) -> list[Any]:
    spec = cron.get("spec") or {}
    status = cron.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = layout_containers(((job_spec.get("template") or {}).get("spec") or {}).get("containers"))
    last = status.get("lastScheduleTime")
    return [
        (cron.get("metadata") or {}).get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") if spec.get("timeZone") is not None else "<none>",
        _bool_ptr(spec.get("suspend")),
        len(status.get("active") or []),
        translate_since(last, now) if last else "<none>",
        age(cron, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]
