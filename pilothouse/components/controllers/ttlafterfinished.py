"""The TTL-after-finished controller: delete finished Jobs ``ttlSecondsAfterFinished`` after they end.

As ``pkg/controller/ttlafterfinished``: the finish time is the terminal condition's transition time;
a Job not yet due is requeued for its expiry; deletion uses foreground propagation so that its pods
go first. A Job whose TTL was raised meanwhile is re-read before deletion (the cache may be stale).
"""

from __future__ import annotations

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.jobutil import finish_time, job_finished
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["TTLAfterFinishedController", "seconds_until_expiry"]


JOBS = resource("batch", "v1", "jobs")


def seconds_until_expiry(job: Object) -> float | None:
    """None when the Job has no TTL or has not finished; else the seconds left (<= 0: due)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or job["metadata"].get("deletionTimestamp") or not job_finished(job):
        return None
    finished = meta.parse_time(finish_time(job))
    if finished is None:
        return 0.0
    return float(int(ttl)) - (meta.now() - finished).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer(JOBS)
        self.jobs.add_handler(EventHandler.on_object(self.enqueue))

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        left = seconds_until_expiry(job)
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        namespace, name = split_key(key)
        try:
            fresh = await self.client.get(JOBS, name, namespace)
        except errors.NotFoundError:
            return
        left = seconds_until_expiry(fresh)
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            await self.client.delete(JOBS, name, namespace, propagation_policy="Foreground",
                                     preconditions={"uid": fresh["metadata"]["uid"]})
        except errors.NotFoundError:
            return
