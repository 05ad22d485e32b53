"""The CronJob controller: Jobs on a cron schedule.

As ``pkg/controller/cronjob`` (``ControllerV2``) in Kubernetes 1.32: each sync reconciles
``status.active`` with the Jobs the CronJob owns (finished ones leave it; a success sets
``lastSuccessfulTime``), finds the most recent unmet schedule time since ``lastScheduleTime`` (or
creation), skips it when it is older than ``startingDeadlineSeconds`` or when ``concurrencyPolicy:
Forbid`` and a Job still runs, deletes the running Jobs first with ``Replace``, creates the Job
``<cronjob>-<scheduled time in minutes since the epoch>``, trims finished Jobs to the history limits,
and requeues itself for the next schedule time.

The clock is injectable: ``ControllerContext.options["clock"]`` (a callable returning an aware
``datetime``) replaces the wall clock, so tests need not wait for real minutes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.podcontrol import controller_ref, new_controller_ref, owner_uid_refs
from pilothouse.machinery import meta
from pilothouse.machinery.kinds.cron import CronError, CronSchedule, parse_schedule
from pilothouse.machinery.meta import Object

__all__ = ["SCHEDULED_TIMESTAMP_ANNOTATION", "CronJobController", "job_name_for", "most_recent_schedule_time"]


CRONJOBS = resource("batch", "v1", "cronjobs")
JOBS = resource("batch", "v1", "jobs")
#: ``batchv1.CronJobScheduledTimestampAnnotation``.
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
_NEXT_SCHEDULE_DELTA = 0.1  # seconds added to the requeue so the schedule time has surely passed


def job_name_for(cronjob: Object, scheduled: datetime) -> str:
    """``getJobName``: ``<cronjob>-<minutes since the epoch>``."""
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def most_recent_schedule_time(cronjob: Object, now: datetime, schedule: CronSchedule,
                              include_deadline: bool = True) -> tuple[datetime | None, int]:
    """``mostRecentScheduleTime``: the latest activation in (earliest, now] and how many were missed."""
    status = cronjob.get("status") or {}
    earliest = meta.parse_time(status.get("lastScheduleTime")) or \
        meta.parse_time(cronjob["metadata"].get("creationTimestamp")) or now
    deadline = (cronjob.get("spec") or {}).get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        scheduling_deadline = now - timedelta(seconds=int(deadline))
        earliest = max(earliest, scheduling_deadline)
    first = schedule.next(earliest)
    if now < first:
        return None, 0
    missed = 1
    latest = first
    while True:
        following = schedule.next(latest)
        if following > now:
            return latest, missed
        latest = following
        missed += 1
        if missed > 1000:  # a very old cronjob: jump near now instead of walking every minute
            latest = _latest_before(schedule, now, latest)
            return latest, missed


def _latest_before(schedule: CronSchedule, now: datetime, floor: datetime) -> datetime:
    probe = max(floor, now - timedelta(days=1))
    latest = floor
    while True:
        following = schedule.next(probe)
        if following > now:
            return latest
        latest = probe = following


def _finished(job: Object) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _later(a: str, b: str) -> bool:
    first, second = meta.parse_time(a), meta.parse_time(b)
    return first is not None and (second is None or first > second)


def _job_ref(job: Object) -> Object:
    metadata = job["metadata"]
    return {"kind": "Job", "namespace": metadata["namespace"], "name": metadata["name"], "uid": metadata["uid"],
            "apiVersion": "batch/v1", "resourceVersion": metadata.get("resourceVersion")}


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        clock: Callable[[], datetime] | None = ctx.options.get("clock")
        self.clock: Callable[[], datetime] = clock or meta.now
        self.cronjobs = ctx.informers.informer(CRONJOBS)
        self.jobs = ctx.informers.informer(JOBS)
        self.jobs.add_indexer("owner-uid", owner_uid_refs)
        self.cronjobs.add_handler(EventHandler.on_object(self.enqueue))
        self.jobs.add_handler(EventHandler.on_object(self._job_changed, self._job_changed))

    def _job_changed(self, job: Object) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.enqueue_key(f"{job['metadata']['namespace']}/{ref['name']}")

    async def sync(self, key: str) -> None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return
        cronjob = copy.deepcopy({**cached, "apiVersion": "batch/v1", "kind": "CronJob"})
        namespace, _ = split_key(key)
        assert namespace is not None
        jobs = [j for j in self.jobs.by_index("owner-uid", cronjob["metadata"]["uid"])
                if (controller_ref(j) or {}).get("uid") == cronjob["metadata"]["uid"]]
        now = self.clock()
        changed = self._reconcile_active(cronjob, jobs)
        requeue, created = await self._schedule(cronjob, namespace, now)
        changed = changed or created
        if changed:
            status = cronjob.get("status") or {}
            if not status.get("active"):
                status.pop("active", None)
            try:
                await self.client.update_status(CRONJOBS, cronjob)
            except errors.NotFoundError:
                return
        await self._cleanup(cronjob, jobs)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    def _reconcile_active(self, cronjob: Object, jobs: list[Object]) -> bool:
        status = cronjob.setdefault("status", {})
        active = list(status.get("active") or [])
        active_uids = {ref.get("uid") for ref in active}
        changed = False
        for job in jobs:
            uid = job["metadata"]["uid"]
            finished = _finished(job)
            if uid not in active_uids and not finished:
                self.recorder.event(cronjob, "Warning", "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: "
                                    f"{job['metadata']['name']}")
            elif uid in active_uids and finished:
                active = [ref for ref in active if ref.get("uid") != uid]
                self.recorder.event(cronjob, "Normal", "SawCompletedJob",
                                    f"Saw completed job: {job['metadata']['name']}, condition: {finished}")
                changed = True
            if finished == "Complete":
                completion = (job.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if completion and (last is None or _later(completion, last)):
                    status["lastSuccessfulTime"] = completion
                    changed = True
        # refs to Jobs that no longer exist
        known = {j["metadata"]["uid"] for j in jobs}
        kept = [ref for ref in active if ref.get("uid") in known]
        if len(kept) != len(active):
            active = kept
            changed = True
        status["active"] = active
        return changed

    async def _schedule(self, cronjob: Object, namespace: str, now: datetime) -> tuple[float | None, bool]:
        """Start the Job for the due schedule time. Returns (requeue delay, status changed)."""
        spec = cronjob.get("spec") or {}
        if cronjob["metadata"].get("deletionTimestamp") or spec.get("suspend"):
            return None, False
        try:
            schedule = parse_schedule(spec.get("schedule", ""), spec.get("timeZone"))
        except CronError as error:
            self.recorder.event(cronjob, "Warning", "UnparseableSchedule",
                                f"unparseable schedule: {spec.get('schedule')!r} : {error}")
            return None, False
        status = cronjob["status"]
        scheduled, missed = most_recent_schedule_time(cronjob, now, schedule)
        if missed > 100:
            self.recorder.event(cronjob, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew")

        def until_next() -> float:
            return max((schedule.next(now) - now).total_seconds(), 0.0) + _NEXT_SCHEDULE_DELTA

        if scheduled is None:
            return until_next(), False
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < now:
            when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            self.recorder.event(cronjob, "Warning", "MissSchedule", f"Missed scheduled time to start a job: {when}")
            return until_next(), False
        name = job_name_for(cronjob, scheduled)
        if any(ref.get("name") == name for ref in status.get("active") or ()) or \
                status.get("lastScheduleTime") == meta.format_time(scheduled):
            return until_next(), False
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self.recorder.event(cronjob, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy "
                                "is Forbid")
            return until_next(), False
        changed = False
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                try:
                    await self.client.delete(JOBS, ref["name"], namespace, propagation_policy="Background")
                except errors.NotFoundError:
                    pass
                self.recorder.event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {ref['name']}")
                status["active"] = [r for r in status["active"] if r.get("uid") != ref.get("uid")]
                changed = True
        template = copy.deepcopy(spec.get("jobTemplate") or {})
        template_meta = template.get("metadata") or {}
        annotations = dict(template_meta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = scheduled.astimezone(schedule.zone).isoformat()
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": namespace, "labels": dict(template_meta.get("labels") or {}),
                            "annotations": annotations,
                            "ownerReferences": [new_controller_ref(cronjob, "batch/v1", "CronJob")]},
               "spec": template.get("spec") or {}}
        try:
            created = await self.client.create(JOBS, job, namespace)
        except errors.AlreadyExistsError:
            return until_next(), changed  # someone (an earlier us) made it and updates the status
        except errors.APIError as error:
            self.recorder.event(cronjob, "Warning", "FailedCreate", f"Error creating job: {error.message}")
            raise
        self.recorder.event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name}")
        status["active"] = [*(status.get("active") or []), _job_ref(created)]
        status["lastScheduleTime"] = meta.format_time(scheduled)
        return until_next(), True

    async def _cleanup(self, cronjob: Object, jobs: list[Object]) -> None:
        """``cleanupFinishedJobs``: keep the newest successful/failed Jobs within the history limits."""
        spec = cronjob.get("spec") or {}
        for condition, limit_field in (("Complete", "successfulJobsHistoryLimit"),
                                       ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(limit_field)
            if limit is None:
                continue
            finished = [j for j in jobs if _finished(j) == condition and not j["metadata"].get("deletionTimestamp")]
            finished.sort(key=lambda j: ((j.get("status") or {}).get("startTime") or
                                         j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]))
            for job in finished[:max(len(finished) - int(limit), 0)]:
                try:
                    await self.client.delete(JOBS, job["metadata"]["name"], job["metadata"]["namespace"],
                                             propagation_policy="Background")
                except errors.NotFoundError:
                    continue
                self.recorder.event(cronjob, "Normal", "SuccessfulDelete",
                                    f"Deleted job {job['metadata']['name']}")

