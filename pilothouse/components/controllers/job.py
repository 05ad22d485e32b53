"""The Job controller: run pods to a number of completions, retrying failures up to a limit.

As ``pkg/controller/job`` in Kubernetes 1.32:

* pods carry the ``batch.kubernetes.io/job-tracking`` finalizer from creation, so a pod is counted
  before it can vanish: a finished pod's uid goes to ``status.uncountedTerminatedPods`` (written
  first), then its finalizer is removed, then it moves into ``succeeded``/``failed``; a pod whose
  finalizer could not be removed stays uncounted, the next sync removes it again, and the Job does not
  finish before that;
* ``parallelism`` bounds the running pods, ``completions`` the successes (``Indexed`` mode: one
  success per index ``0..completions-1``, index in the ``batch.kubernetes.io/job-completion-index``
  annotation and label, hostname ``<job>-<index>``);
* failures beyond ``backoffLimit`` or a run beyond ``activeDeadlineSeconds`` add ``FailureTarget``,
  delete the running pods, and once none is left add ``Failed``; reaching the completions adds
  ``SuccessCriteriaMet`` then ``Complete`` (with ``completionTime``). 1.32 delays terminal
  conditions until pods are gone, exactly so;
* replacement pods after failures wait an exponential backoff (10 s doubling up to 10 min, from
  ``ControllerContext.options["job_backoff_base"]``/``["job_backoff_max"]`` when set).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.jobutil import (
    COMPLETION_INDEX_ANNOTATION,
    TRACKING_FINALIZER,
    condition_true,
    format_indexes,
    job_finished,
    new_condition,
    parse_indexes,
    pod_index,
    set_condition,
)
from pilothouse.components.controllers.podcontrol import (
    PODS,
    PodControl,
    UIDTrackingExpectations,
    controller_ref,
    is_pod_ready,
    new_controller_ref,
    owner_uid_refs,
    pod_from_template,
)
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["JobController"]


JOBS = resource("batch", "v1", "jobs")


@dataclass
class _Backoff:
    failures: int = 0
    last_failure: float = 0.0


def _phase(pod: Object) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _has_finalizer(pod: Object) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ())


class JobController(Controller):
    name = "job"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pod_control = PodControl(self.client, self.recorder)
        self.jobs = ctx.informers.informer(JOBS)
        self.pods = ctx.informers.informer(PODS)
        self.pods.add_indexer("owner-uid", owner_uid_refs)
        self.expectations = UIDTrackingExpectations()
        #: per Job, the pods counted whose finalizer this controller removed and whose update without
        #: it the pod informer has not shown yet (the job controller's ``finalizerExpectations``):
        #: until then the cache still shows them finished and tracked, and counting them again would
        #: count a pod twice (a watch event some milliseconds late was enough).
        self._finalizers_removing: dict[str, set[str]] = {}
        self.jobs.add_handler(EventHandler.on_object(self.enqueue, self._job_deleted))
        self.pods.add_handler(EventHandler(self._pod_added, lambda _o, n: self._pod_changed(n),
                                           self._pod_deleted))
        self.backoff_base = float(ctx.options.get("job_backoff_base", 10.0))
        self.backoff_max = float(ctx.options.get("job_backoff_max", 600.0))
        self._backoff: dict[str, _Backoff] = {}

    def _job_deleted(self, job: Object) -> None:
        self._backoff.pop(object_key(job), None)
        self.expectations.forget(object_key(job))
        self._finalizers_removing.pop(object_key(job), None)
        self.enqueue(job)  # its pods' finalizers must still go

    def _job_key(self, pod: Object) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        return f"{pod['metadata']['namespace']}/{ref['name']}"

    def _pod_added(self, pod: Object) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.expectations.observe_add(key)
            self._pod_changed(pod)

    def _pod_changed(self, pod: Object) -> None:
        """Updates and deletions; a pod seen with a deletionTimestamp counts as deleted."""
        key = self._job_key(pod)
        if key is None:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        if not _has_finalizer(pod):
            self._finalizer_removal_observed(key, pod["metadata"].get("uid", ""))
        self.enqueue_key(key)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
            self._finalizer_removal_observed(key, pod["metadata"].get("uid", ""))
            self.enqueue_key(key)

    def _finalizer_removal_observed(self, key: str, uid: str) -> None:
        removing = self._finalizers_removing.get(key)
        if removing is not None:
            removing.discard(uid)
            if not removing:
                del self._finalizers_removing[key]

    def _owned_pods(self, uid: str) -> list[Object]:
        return [p for p in self.pods.by_index("owner-uid", uid) if (controller_ref(p) or {}).get("uid") == uid]

    async def _remove_finalizer(self, pod: Object) -> None:
        # removeTrackingFinalizerPatch: a strategic delete of the one entry, without a resourceVersion,
        # so that the kubelet's status writes racing it cannot make it fail and other finalizers stay
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], patch, pod["metadata"]["namespace"],
                                    patch_type="strategic")
        except errors.NotFoundError:
            pass

    async def _orphan_cleanup(self, key: str) -> None:
        """The Job is gone: its pods must not stay blocked by our finalizer."""
        for pod in self.pods.list():
            ref = controller_ref(pod)
            if ref is None or ref.get("kind") != "Job" or not _has_finalizer(pod):
                continue
            if f"{pod['metadata']['namespace']}/{ref['name']}" == key:
                await self._remove_finalizer(pod)

    async def sync(self, key: str) -> None:
        cached = self.jobs.get(key)
        if cached is None:
            await self._orphan_cleanup(key)
            return
        job = copy.deepcopy({**cached, "apiVersion": "batch/v1", "kind": "Job"})
        namespace, _ = split_key(key)
        assert namespace is not None
        spec = job.get("spec") or {}
        status: Object = job.setdefault("status", {})
        pods = self._owned_pods(job["metadata"]["uid"])
        if job_finished(job):
            # finished: only release pods still holding our finalizer
            for pod in pods:
                if _has_finalizer(pod):
                    await self._remove_finalizer(pod)
            return
        indexed = spec.get("completionMode") == "Indexed"
        now = meta.now()
        old_status = copy.deepcopy(status)
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = meta.format_time(now)

        uncounted = status.get("uncountedTerminatedPods") or {}
        uncounted_succeeded = set(uncounted.get("succeeded") or ())
        uncounted_failed = set(uncounted.get("failed") or ())
        failed_by_deletion = spec.get("podReplacementPolicy", "TerminatingOrFailed") != "Failed"

        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")
                       and p["metadata"].get("deletionTimestamp")]
        succeeded_indexes = parse_indexes(status.get("completedIndexes"))
        new_succeeded: list[Object] = []
        new_failed: list[Object] = []
        removing = self._finalizers_removing.get(key, set())
        #: pods recorded in uncountedTerminatedPods by an earlier sync that still hold the finalizer,
        #: because removing it failed there: released again now, as trackJobStatusAndRemoveFinalizers does
        recorded_unreleased: list[Object] = []
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if not _has_finalizer(pod) or uid in removing:
                continue  # not tracked, or its finalizer's removal (after counting) not seen yet
            if uid in uncounted_succeeded or uid in uncounted_failed:
                recorded_unreleased.append(pod)
                continue
            if _phase(pod) == "Succeeded":
                new_succeeded.append(pod)
            elif _phase(pod) == "Failed" or (failed_by_deletion and pod["metadata"].get("deletionTimestamp")):
                new_failed.append(pod)
        for pod in new_succeeded:
            index = pod_index(pod)
            if indexed and index is not None:
                succeeded_indexes.add(index)
        backoff = self._backoff.setdefault(key, _Backoff())
        if new_failed:
            backoff.failures += len(new_failed)
            backoff.last_failure = time.monotonic()
        elif new_succeeded:
            backoff.failures = 0

        succeeded = int(status.get("succeeded") or 0) + len(uncounted_succeeded) + len(new_succeeded)
        failed = int(status.get("failed") or 0) + len(uncounted_failed) + len(new_failed)
        if indexed:
            completions = int(spec.get("completions") or 0)
            succeeded_indexes = {i for i in succeeded_indexes if i < completions}
            if succeeded_indexes:
                status["completedIndexes"] = format_indexes(succeeded_indexes)

        conditions = status.setdefault("conditions", [])
        already_target = condition_true(job, "FailureTarget") or condition_true(job, "SuccessCriteriaMet")
        if not already_target:
            backoff_limit = int(spec.get("backoffLimit", 6) or 0)
            deadline = spec.get("activeDeadlineSeconds")
            started = meta.parse_time(status.get("startTime"))
            if failed > backoff_limit:
                set_condition(conditions, new_condition("FailureTarget", "BackoffLimitExceeded",
                                                        "Job has reached the specified backoff limit"))
            elif deadline is not None and started is not None and not suspended and \
                    (now - started).total_seconds() >= int(deadline):
                set_condition(conditions, new_condition("FailureTarget", "DeadlineExceeded",
                                                        "Job was active longer than specified deadline"))
            elif self._complete(spec, succeeded, succeeded_indexes, len(active)):
                set_condition(conditions, new_condition("SuccessCriteriaMet", "CompletionsReached",
                                                        "Reached expected number of succeeded pods"))
            elif deadline is not None and started is not None and not suspended:
                remaining = int(deadline) - (now - started).total_seconds()
                self.queue.add_after(key, max(remaining, 0.0) + 0.05)

        failing = condition_true(job, "FailureTarget")
        if failing or condition_true(job, "SuccessCriteriaMet"):
            # the job is over: remove what still runs (a success leaves no needed pod either)
            for pod in active:
                try:
                    await self.pod_control.delete_pod(namespace, pod["metadata"]["name"], job,
                                                      uid=pod["metadata"]["uid"])
                except errors.NotFoundError:
                    pass
            terminating += active
            active = []
        elif self.expectations.satisfied(key):
            active = await self._manage(job, namespace, active, succeeded, succeeded_indexes, backoff, key)
            self._suspend_condition(job, suspended)

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {
            "succeeded": sorted(uncounted_succeeded | {p["metadata"]["uid"] for p in new_succeeded}),
            "failed": sorted(uncounted_failed | {p["metadata"]["uid"] for p in new_failed}),
        }
        await self._write_status(job, old_status)
        # the uids are recorded: now the pods may go
        unreleased, failure = await self._release(key, recorded_unreleased + new_succeeded + new_failed)
        # move the recorded uids of released pods into the counters; a pod that still holds the
        # finalizer stays recorded (uncounted) for the next sync to release, and the job cannot finish
        old_status = copy.deepcopy(status)
        recorded = status["uncountedTerminatedPods"]
        kept = {kind: [uid for uid in recorded[kind] if uid in unreleased] for kind in ("succeeded", "failed")}
        status["succeeded"] = int(status.get("succeeded") or 0) + len(recorded["succeeded"]) - len(kept["succeeded"])
        status["failed"] = int(status.get("failed") or 0) + len(recorded["failed"]) - len(kept["failed"])
        status["uncountedTerminatedPods"] = kept if unreleased else {}
        if not active and not terminating and not unreleased:
            self._finish(job)
        await self._write_status(job, old_status)
        if failure is not None:
            raise failure  # retried with backoff by the worker, as syncJob returns the removal error

    async def _release(self, key: str, pods: list[Object]) -> tuple[set[str], Exception | None]:
        """Remove the tracking finalizer from counted pods; the uids that still hold it, and why.

        A removal in flight is expected (``_finalizers_removing``) until the informer shows it; one that
        failed is not, so the pod is not skipped as "being released" by the next sync.
        """
        if pods:
            self._finalizers_removing.setdefault(key, set()).update(p["metadata"]["uid"] for p in pods)
        unreleased: set[str] = set()
        failure: Exception | None = None
        for pod in pods:
            uid = pod["metadata"]["uid"]
            try:
                await self._remove_finalizer(pod)
            except (errors.APIError, errors.ConnectionFailed) as error:
                self._finalizer_removal_observed(key, uid)
                unreleased.add(uid)
                failure = failure or error
        return unreleased, failure

    @staticmethod
    def _complete(spec: Object, succeeded: int, indexes: set[int], active: int) -> bool:
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            return completions is not None and len(indexes) >= int(completions)
        if completions is None:
            return succeeded > 0 and active == 0
        return succeeded >= int(completions)

    def _finish(self, job: Object) -> None:
        conditions = job["status"]["conditions"]
        for target, final in (("FailureTarget", "Failed"), ("SuccessCriteriaMet", "Complete")):
            for condition in conditions:
                if condition.get("type") == target and condition.get("status") == "True":
                    set_condition(conditions, new_condition(final, condition.get("reason", ""),
                                                            condition.get("message", "")))
                    if final == "Complete":
                        job["status"]["completionTime"] = meta.format_time()
                        self.recorder.event(job, "Normal", "Completed", "Job completed")
                    else:
                        self.recorder.event(job, "Warning", condition.get("reason", "Failed"),
                                            condition.get("message", ""))
                    return

    def _suspend_condition(self, job: Object, suspended: bool) -> None:
        conditions = job["status"]["conditions"]
        present = any(c.get("type") == "Suspended" for c in conditions)
        if suspended and not condition_true(job, "Suspended"):
            set_condition(conditions, new_condition("Suspended", "JobSuspended", "Job suspended"))
            self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        elif not suspended and present and condition_true(job, "Suspended"):
            set_condition(conditions, new_condition("Suspended", "JobResumed", "Job resumed", status="False"))
            job["status"]["startTime"] = meta.format_time()
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")

    async def _manage(self, job: Object, namespace: str, active: list[Object], succeeded: int,
                      succeeded_indexes: set[int], backoff: _Backoff, key: str) -> list[Object]:
        """``manageJob``: create or delete pods so that the wanted number runs. Returns the active pods."""
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism", 1) or 0)
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        if spec.get("suspend"):
            want = 0
        elif indexed:
            missing = int(completions or 0) - len(succeeded_indexes)
            want = min(parallelism, max(missing, 0))
        elif completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - succeeded, parallelism), 0)
        if len(active) > want:
            excess = sorted(active, key=lambda p: (is_pod_ready(p), p["metadata"].get("creationTimestamp") or ""))
            key_uids = [p["metadata"]["uid"] for p in excess[:len(active) - want]]
            self.expectations.expect_deletions(key, key_uids)
            for pod in excess[:len(active) - want]:
                try:
                    await self.pod_control.delete_pod(namespace, pod["metadata"]["name"], job,
                                                      uid=pod["metadata"]["uid"])
                except errors.NotFoundError:
                    pass
            return excess[len(active) - want:]
        if len(active) == want:
            return active
        if backoff.failures:
            delay = min(self.backoff_base * 2 ** (backoff.failures - 1), self.backoff_max)
            remaining = backoff.last_failure + delay - time.monotonic()
            if remaining > 0:
                self.queue.add_after(key, remaining)
                return active
        indexes: list[int | None] = [None] * (want - len(active))
        if indexed:
            busy = {pod_index(p) for p in active} | succeeded_indexes
            free = [i for i in range(int(completions or 0)) if i not in busy]
            indexes = list(free[:want - len(active)])
        self.expectations.expect(key, adds=len(indexes))
        for created, index in enumerate(indexes):
            try:
                await self.pod_control.create_pod(self._new_pod(job, namespace, index), job)
            except (errors.APIError, errors.ConnectionFailed):  # unanswered too: never observed otherwise
                self.expectations.lower(key, adds=len(indexes) - created)
                raise
        return active

    def _new_pod(self, job: Object, namespace: str, index: int | None) -> Object:
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        metadata = template.setdefault("metadata", {})
        metadata["finalizers"] = [*(metadata.get("finalizers") or []), TRACKING_FINALIZER]
        name = job["metadata"]["name"]
        prefix = f"{name}-"
        if index is not None:
            metadata.setdefault("annotations", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
            metadata.setdefault("labels", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
            prefix = f"{name}-{index}-"
            pod_spec = template.setdefault("spec", {})
            pod_spec["hostname"] = f"{name}-{index}"
            env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}}
            for container in [*(pod_spec.get("initContainers") or ()), *(pod_spec.get("containers") or ())]:
                container["env"] = [*(container.get("env") or []), env]
        return pod_from_template(template, new_controller_ref(job, "batch/v1", "Job"), namespace,
                                 generate_name=prefix)

    async def _write_status(self, job: Object, old_status: Object) -> None:
        status = job["status"]
        for optional in ("active", "succeeded", "failed"):
            if not status.get(optional):
                status.pop(optional, None)
        if not status.get("conditions"):
            status.pop("conditions", None)
        try:
            if status != old_status:
                updated = await self.client.update_status(JOBS, job)
                job["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
        finally:
            status.setdefault("conditions", [])
