"""Shared pod plumbing for workload controllers (ReplicaSet, Deployment, DaemonSet, StatefulSet, Job).

Kubernetes keeps these in ``pkg/controller/controller_utils.go`` and ``controller_ref_manager.go``; every
workload controller needs the same answers, so they live here once:

* ownership: :func:`controller_ref` (the ``controller: true`` ownerReference of an object) and
  :func:`new_controller_ref` (the reference a controller stamps on what it creates);
* pods from templates: :func:`pod_from_template` and :class:`PodControl` (create/delete/patch with the
  ``SuccessfulCreate``/``FailedCreate``/``SuccessfulDelete``/``FailedDelete`` events Kubernetes records);
* :func:`slow_start_batch` (create 1, 2, 4, ... at a time so a bad template fails once, not N times)
  and :data:`BURST_REPLICAS` (at most 500 creations/deletions per sync);
* pod state: :func:`is_pod_active`, :func:`is_pod_ready`, :func:`is_pod_available`,
  :func:`pod_ready_since`;
* :func:`rank_pods_for_deletion` (client-go's ``ActivePodsWithRanks`` order: unscheduled, pending,
  not-ready, colocated, recently-ready, restarting, younger pods go first);
* adoption and release (``ControllerRefManager``) live in :mod:`.controllerref`;
* :func:`compute_hash` (``pod-template-hash``) and :func:`safe_encode_string`.

Nothing here reads the server except through the calls it is given: the functions are pure, and
:class:`PodControl` writes through an :class:`APIClient`.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import orjson

from pilothouse.client import errors
from pilothouse.client.events import EventRecorder
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.base import Expectations
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = [
    "BURST_REPLICAS",
    "PODS",
    "SLOW_START_INITIAL_BATCH",
    "PodControl",
    "UIDTrackingExpectations",
    "compute_hash",
    "controller_ref",
    "fnv32a",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "new_controller_ref",
    "owner_uid_refs",
    "pod_from_template",
    "pod_ready_condition",
    "pod_ready_since",
    "rank_pods_for_deletion",
    "safe_encode_string",
    "slow_start_batch",
    "with_kind",
]


PODS = resource("", "v1", "pods")

#: kube-controller-manager's ``BurstReplicas``: creations/deletions one sync may issue.
BURST_REPLICAS = 500
#: ``controller.SlowStartInitialBatchSize``.
SLOW_START_INITIAL_BATCH = 1

# ----------------------------------------------------------------------------------------- ownership


def controller_ref(obj: Object) -> Object | None:
    """The ownerReference with ``controller: true`` (``metav1.GetControllerOf``), or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def new_controller_ref(owner: Object, api_version: str | None = None, kind: str | None = None) -> Object:
    """``metav1.NewControllerRef``: controller and blockOwnerDeletion both true.

    Objects read from an informer cache normally carry ``apiVersion``/``kind``; pass them when not.
    """
    metadata = owner["metadata"]
    return {
        "apiVersion": api_version or owner.get("apiVersion", ""),
        "kind": kind or owner.get("kind", ""),
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_kind(obj: Object, api_version: str, kind: str) -> Object:
    """A shallow copy of ``obj`` with apiVersion/kind set: list items come without them, but events
    (involvedObject) and ownerReferences need them."""
    if obj.get("kind") == kind and obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version, "kind": kind}


class UIDTrackingExpectations(Expectations):
    """``UIDTrackingControllerExpectations``: deletions are expected by pod uid, so a pod seen twice
    going away (deletionTimestamp set, then removed) is counted once.

    Creations stay counted (``expect(key, adds=n)`` / ``observe_add`` / ``lower``).
    """

    def __init__(self, ttl: float = 300.0) -> None:
        super().__init__(ttl)
        self._uids: dict[str, set[str]] = {}

    def expect_deletions(self, key: str, uids: Iterable[str]) -> None:
        pending = set(uids)
        self._uids[key] = pending
        self.expect(key, adds=0, deletes=len(pending))

    def deletion_observed(self, key: str, uid: str) -> None:
        pending = self._uids.get(key)
        if pending is not None and uid in pending:
            pending.discard(uid)
            self.observe_delete(key)

    def forget(self, key: str) -> None:
        super().forget(key)
        self._uids.pop(key, None)


def owner_uid_refs(obj: Object) -> list[str]:
    """The uids of every owner of ``obj`` (for an informer index)."""
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or () if ref.get("uid")]


# -------------------------------------------------------------------------------------------- pod state


def is_pod_active(pod: Object) -> bool:
    """``controller.IsPodActive``: not Succeeded/Failed and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def pod_ready_condition(pod: Object) -> Object | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def is_pod_ready(pod: Object) -> bool:
    """``podutil.IsPodReady``: the Ready condition is True."""
    condition = pod_ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def pod_ready_since(pod: Object) -> datetime | None:
    """When the pod last became Ready (the condition's lastTransitionTime), if it is Ready."""
    condition = pod_ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return None
    return meta.parse_time(condition.get("lastTransitionTime"))


def is_pod_available(pod: Object, min_ready_seconds: int = 0, now: datetime | None = None) -> bool:
    """``podutil.IsPodAvailable``: Ready for at least ``min_ready_seconds``."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = pod_ready_since(pod)
    if since is None:
        return False
    elapsed = ((now or meta.now()) - since).total_seconds()
    return elapsed >= min_ready_seconds


# ------------------------------------------------------------------------------------------- ranking

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _restarts(pod: Object) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def _deletion_cost(pod: Object) -> int:
    value = ((pod["metadata"].get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost"))
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _log_bucket(moment: datetime | None, now: datetime) -> int:
    """LogarithmicScaleDown: ages compare on a log2 scale, so pods of similar age count as equal."""
    if moment is None:
        return -1
    age = max((now - moment).total_seconds(), 0.0)
    return math.floor(math.log2(age)) if age >= 1 else 0


def rank_pods_for_deletion(pods: Iterable[Object], related: Iterable[Object] | None = None,
                           now: datetime | None = None) -> list[Object]:
    """``pods`` sorted so the first ones are the best to delete (``ActivePodsWithRanks``).

    ``related`` are the active pods of the controller and its siblings (a Deployment's other
    ReplicaSets); a pod on a node crowded with related pods goes before a lone one. Order:
    unassigned < assigned; Pending < Unknown < Running; not ready < ready; lower
    ``controller.kubernetes.io/pod-deletion-cost``; more related pods on the node; ready for a
    shorter time (log scale); more restarts; created later.
    """
    pods = list(pods)
    moment = now or meta.now()
    on_node: dict[str, int] = {}
    for pod in related if related is not None else pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and is_pod_active(pod):
            on_node[node] = on_node.get(node, 0) + 1

    def key(pod: Object) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName")
        ready = is_pod_ready(pod)
        created = meta.parse_time(pod["metadata"].get("creationTimestamp"))
        return (
            1 if node else 0,
            _PHASE_RANK.get((pod.get("status") or {}).get("phase", "Pending"), 0),
            1 if ready else 0,
            _deletion_cost(pod),
            -(on_node.get(node, 0) if node else 0),
            -_log_bucket(pod_ready_since(pod), moment) if ready else 0,
            -_restarts(pod),
            -(created.timestamp() if created else 0.0),
        )

    return sorted(pods, key=key)


# ---------------------------------------------------------------------------------------- templates


def pod_from_template(template: Object, owner_ref: Object | None, namespace: str, *,
                      generate_name: str | None = None, name: str | None = None) -> Object:
    """A Pod from a PodTemplateSpec (``controller.GetPodFromTemplate``).

    Labels, annotations and finalizers come from the template; the owner reference (if any) is the
    only ownerReference. Give ``name`` for fixed names (StatefulSet), else ``generate_name``
    (``<owner>-`` for ReplicaSets).
    """
    template_meta = template.get("metadata") or {}
    metadata: Object = {"namespace": namespace}
    if name:
        metadata["name"] = name
    elif generate_name:
        metadata["generateName"] = generate_name
    for field_name in ("labels", "annotations", "finalizers"):
        if template_meta.get(field_name):
            metadata[field_name] = copy.deepcopy(template_meta[field_name])
    if owner_ref is not None:
        metadata["ownerReferences"] = [dict(owner_ref)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": copy.deepcopy(template.get("spec") or {})}


class PodControl:
    """Creates, deletes and patches pods on behalf of a controller, recording the events Kubernetes does
    (on the controller object: ``Created pod: NAME`` / ``Deleted pod: NAME``)."""

    def __init__(self, client: APIClient, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def create_pod(self, pod: Object, owner: Object) -> Object:
        """Create ``pod`` (already built), event on ``owner``. Raises the API error on failure."""
        namespace = pod["metadata"]["namespace"]
        try:
            created = await self.client.create(PODS, pod, namespace)
        except errors.APIError as error:
            # A namespace being terminated refuses creations: not worth a warning event.
            if not errors.has_cause(error, errors.NAMESPACE_TERMINATING):
                self.recorder.event(owner, "Warning", "FailedCreate",
                                    self.message("create", pod["metadata"].get("name", ""), owner, error.message))
            raise
        name = created["metadata"]["name"]
        self.recorder.event(owner, "Normal", "SuccessfulCreate", self.message("create", name, owner))
        return created

    def message(self, verb: str, name: str, owner: Object, error: str | None = None) -> str:
        """The event's words (controller.RealPodControl's); a StatefulSet's pod control has its own."""
        if error is not None:
            return f"Error {verb.rstrip('e')}ing: {error}"
        return f"{verb.capitalize()}d pod: {name}"

    async def create_from_template(self, namespace: str, template: Object, owner: Object,
                                   owner_ref: Object, *, generate_name: str | None = None) -> Object:
        """``CreatePods``: a pod named ``<owner>-xxxxx`` from the template, owned by ``owner_ref``."""
        prefix = generate_name or f"{owner['metadata']['name']}-"
        return await self.create_pod(pod_from_template(template, owner_ref, namespace, generate_name=prefix),
                                     owner)

    async def delete_pod(self, namespace: str, name: str, owner: Object, *,
                         uid: str | None = None) -> None:
        """Delete a pod. NotFound is raised without an event (callers treat it as done, as Kubernetes
        does). ``uid`` adds a precondition, so a pod recreated under the same name is never hit."""
        try:
            await self.client.delete(PODS, name, namespace, preconditions={"uid": uid} if uid else None)
        except errors.NotFoundError:
            raise
        except errors.APIError as error:
            self.recorder.event(owner, "Warning", "FailedDelete", self.message("delete", name, owner, error.message))
            raise
        self.recorder.event(owner, "Normal", "SuccessfulDelete", self.message("delete", name, owner))

    async def patch_pod(self, namespace: str, name: str, patch: Object) -> Object:
        return await self.client.patch(PODS, name, patch, namespace, patch_type="merge")


async def slow_start_batch(count: int, fn: Callable[[], Awaitable[Any]],
                           initial_batch_size: int = SLOW_START_INITIAL_BATCH,
                           ) -> tuple[int, BaseException | None]:
    """Call ``fn`` ``count`` times in batches of 1, 2, 4, ... (``controller.slowStartBatch``).

    A batch runs concurrently; the first batch with a failure ends the run. Returns (successes,
    first error). Callers lower their expectations by ``count - successes``.
    """
    remaining = count
    successes = 0
    batch = min(remaining, initial_batch_size)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(failures)
        if failures:
            for failure in failures:
                if isinstance(failure, asyncio.CancelledError):
                    raise failure
            return successes, failures[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# ---------------------------------------------------------------------------------------------- hashing

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode_string(text: str) -> str:
    """``rand.SafeEncodeString``: each byte mapped into an alphabet with no vowels (no words) and no
    look-alike characters."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def fnv32a(data: bytes, value: int = 0x811C9DC5) -> int:
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def compute_hash(template: Object, collision_count: int | None = None) -> str:
    """``controller.ComputeHash`` (the ``pod-template-hash`` label value).

    Kubernetes hashes the Go ``%#v``-printed template with FNV-32a; that printing cannot be reproduced
    outside Go, so this hashes the canonical JSON (sorted keys) of the template instead, then the
    collision count as 4 little-endian bytes, and renders the decimal sum with
    :func:`safe_encode_string` exactly as Kubernetes does. Values are stable across processes but
    differ from a real cluster's.
    """
    value = fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        value = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little"), value)
    return safe_encode_string(str(value))
