"""The ReplicaSet controller: keeps ``spec.replicas`` pods matching a ReplicaSet's selector alive.

As ``pkg/controller/replicaset/replica_set.go`` (Kubernetes 1.32): informer handlers map pod events to
their controlling ReplicaSet (or, for orphans, to every ReplicaSet whose selector matches) and count
expected creations/deletions; ``sync`` reads only the caches, adopts orphans and releases pods that no
longer match, creates (slow-start batches, at most 500) or deletes (best candidates first) pods, and
writes status. Expectations keep a stale cache from creating or deleting twice.

The managed kind is a class attribute: Kubernetes runs ReplicationControllers through this same
controller behind a conversion layer (``pkg/controller/replication``), and so does
:mod:`~pilothouse.components.controllers.replication`, by naming another resource. Everything that
differs (URL, ownerReference kind, how ``spec.selector`` reads) comes from that resource's catalog row.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.controllerref import ControllerRefManager
from pilothouse.components.controllers.podcontrol import (
    BURST_REPLICAS,
    PODS,
    PodControl,
    UIDTrackingExpectations,
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    new_controller_ref,
    rank_pods_for_deletion,
    slow_start_batch,
    with_kind,
)
from pilothouse.machinery import meta
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import LabelSelector, selector_from_object

__all__ = ["REPLICASETS", "ReplicaSetController", "by_controller_uid", "by_namespace", "calculate_status",
           "owned_and_orphans"]


REPLICASETS = resource("apps", "v1", "replicasets")


def by_namespace(obj: Object) -> list[str]:
    """Informer index function: the object's namespace."""
    return [obj["metadata"].get("namespace") or ""]


ORPHAN_PREFIX = "orphan/"


def by_controller_uid(obj: Object) -> list[str]:
    """kube's ``PodControllerUIDIndex``: the controller's UID, or ``orphan/<namespace>`` for an object
    without one (``OrphanPodIndexKeyForNamespace``)."""
    ref = controller_ref(obj)
    if ref is not None:
        return [ref["uid"]] if ref.get("uid") else []
    return [ORPHAN_PREFIX + (obj["metadata"].get("namespace") or "")]


def owned_and_orphans(informer: Informer, owner: Object) -> list[Object]:
    """``FilterPodsByOwner``: the objects ``owner`` controls and the namespace's orphans, the only
    ones a claim can keep or adopt. Not the whole namespace: at 10,000 ReplicaSets of 15 pods in one
    namespace, every sync scanned 150,000 pods (most of the controller manager's CPU per pod event).
    Needs the ``controller-uid`` indexer (:func:`by_controller_uid`)."""
    metadata = owner["metadata"]
    return [*informer.by_index("controller-uid", metadata["uid"]),
            *informer.by_index("controller-uid", ORPHAN_PREFIX + (metadata.get("namespace") or ""))]


def calculate_status(rs: Object, pods: list[Object], manage_error: BaseException | None) -> Object:
    """``calculateStatus``: counts over the active pods the ReplicaSet controls."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    fully = ready = available = 0
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready):
                available += 1
    status: Object = dict(rs.get("status") or {})
    status.update({"replicas": len(pods), "fullyLabeledReplicas": fully, "readyReplicas": ready,
                   "availableReplicas": available,
                   "observedGeneration": rs["metadata"].get("generation", 1)})
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "ReplicaFailure"]
    if manage_error is not None:
        old = next((c for c in status.get("conditions") or () if c.get("type") == "ReplicaFailure"), None)
        reason = "FailedDelete" if getattr(manage_error, "delete", False) else "FailedCreate"
        message = str(getattr(manage_error, "message", "") or manage_error)
        conditions.append({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": message,
                           "lastTransitionTime": (old or {}).get("lastTransitionTime") or _now()})
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)
    # Kubernetes omits zero counters (omitempty), except replicas.
    for field_name in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if not status[field_name]:
            del status[field_name]
    return status


def _now() -> str:
    return meta.format_time()


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 5
    #: The kind whose replicas this controller keeps, and the event source it records as.
    managed: ClassVar[ResourceType] = REPLICASETS
    component: ClassVar[str] = "replicaset-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.recorder = ctx.recorder(self.component)
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = UIDTrackingExpectations()
        self.rs_informer: Informer = ctx.informers.informer(self.managed)
        self.pod_informer: Informer = ctx.informers.informer(PODS)
        for informer in (self.rs_informer, self.pod_informer):
            informer.add_indexer("namespace", by_namespace)
        self.pod_informer.add_indexer("controller-uid", by_controller_uid)
        self.rs_informer.add_handler(EventHandler(self.enqueue, self._rs_updated, self._rs_deleted))
        self.pod_informer.add_handler(EventHandler(self._pod_added, self._pod_updated, self._pod_deleted))

    # ------------------------------------------------------------------------------ event handlers

    def _rs_updated(self, old: Object, new: Object) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Object) -> None:
        key = object_key(rs)
        self.expectations.forget(key)
        self.enqueue_key(key)

    def selector(self, rs: Object) -> LabelSelector:
        """The owner's ``spec.selector``, read as its kind declares (a LabelSelector, or an RC's map)."""
        scale = self.managed.scale
        parse = scale.parse_selector if scale is not None else selector_from_object
        return parse((rs.get("spec") or {}).get("selector"))

    def _resolve(self, namespace: str, ref: Object) -> Object | None:
        if ref.get("kind") != self.managed.kind:
            return None
        rs = self.rs_informer.get(f"{namespace}/{ref.get('name')}")
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_replicasets(self, pod: Object) -> list[Object]:
        labels = pod["metadata"].get("labels") or {}
        if not labels:
            return []
        return [rs for rs in self.rs_informer.by_index("namespace", pod["metadata"].get("namespace", ""))
                if self.selector(rs).matches(labels)]

    def _pod_added(self, pod: Object) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        namespace = pod["metadata"].get("namespace", "")
        ref = controller_ref(pod)
        if ref is not None:
            rs = self._resolve(namespace, ref)
            if rs is not None:
                key = object_key(rs)
                self.expectations.observe_add(key)
                self.enqueue_key(key)
            return
        for rs in self._matching_replicasets(pod):
            self.enqueue(rs)

    def _pod_updated(self, old: Object, new: Object) -> None:
        namespace = new["metadata"].get("namespace", "")
        if new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            # Graceful deletion started: the pod no longer counts, expect no further event.
            self._pod_deleted(new)
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            rs = self._resolve(namespace, old_ref)
            if rs is not None:
                self.enqueue(rs)
        if new_ref is not None:
            rs = self._resolve(namespace, new_ref)
            if rs is None:
                return
            self.enqueue(rs)
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready and not is_pod_ready(old) and is_pod_ready(new):
                # Available only minReadySeconds after Ready: look again then.
                self.queue.add_after(object_key(rs), min_ready + 1)
            return
        if labels_changed or old_ref is not None:
            for rs in self._matching_replicasets(new):
                self.enqueue(rs)

    def _pod_deleted(self, pod: Object) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        rs = self._resolve(pod["metadata"].get("namespace", ""), ref)
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self.enqueue_key(key)

    # ----------------------------------------------------------------------------------------- sync

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        rs = with_kind(rs, self.managed.api_version, self.managed.kind)
        needs_sync = self.expectations.satisfied(key)
        spec = rs.get("spec") or {}
        selector = self.selector(rs)
        candidates = [p for p in owned_and_orphans(self.pod_informer, rs) if is_pod_active(p)]
        pods = await self._claim_pods(rs, selector, candidates)

        manage_error: BaseException | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, pods, rs)
            except errors.APIError as error:
                manage_error = error
        await self._update_status(rs, calculate_status(rs, pods, manage_error))
        if manage_error is not None:
            raise manage_error
        min_ready = int(spec.get("minReadySeconds") or 0)
        replicas = int(spec.get("replicas", 1))
        if min_ready and sum(1 for p in pods if is_pod_ready(p)) == replicas and \
                sum(1 for p in pods if is_pod_available(p, min_ready)) != replicas:
            self.queue.add_after(key, min_ready)

    async def _claim_pods(self, rs: Object, selector: Any, candidates: list[Object]) -> list[Object]:
        owner_ref = new_controller_ref(rs, self.managed.api_version, self.managed.kind)
        refs = ControllerRefManager(self.client, self.managed, rs, owner_ref, PODS)
        return await refs.claim(selector, candidates)

    async def _manage_replicas(self, key: str, pods: list[Object], rs: Object) -> None:
        spec = rs.get("spec") or {}
        diff = len(pods) - int(spec.get("replicas", 1))
        namespace = rs["metadata"]["namespace"]
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect(key, adds=count)
            owner_ref = new_controller_ref(rs, self.managed.api_version, self.managed.kind)
            template = spec.get("template") or {}

            async def create() -> None:
                try:
                    await self.pod_control.create_from_template(namespace, template, rs, owner_ref)
                except errors.APIError as error:
                    if errors.has_cause(error, errors.NAMESPACE_TERMINATING):
                        return  # the namespace goes away: nothing to do
                    raise

            successes, error = await slow_start_batch(count, create)
            if successes < count:
                self.expectations.lower(key, adds=count - successes)
            if error is not None:
                raise error
        elif diff > 0:
            count = min(diff, BURST_REPLICAS)
            related = self._related_pods(rs)
            victims = rank_pods_for_deletion(pods, related)[:count]
            self.expectations.expect_deletions(key, [p["metadata"]["uid"] for p in victims])

            async def delete(pod: Object) -> None:
                metadata = pod["metadata"]
                try:
                    await self.pod_control.delete_pod(namespace, metadata["name"], rs, uid=metadata["uid"])
                except (errors.APIError, errors.ConnectionFailed) as error:
                    # Any failure, an unanswered one too (its fate unknown): upstream lowers the
                    # expectation, else the next sync waits for a deletion that may never come.
                    self.expectations.deletion_observed(key, metadata["uid"])
                    if not isinstance(error, errors.NotFoundError | errors.ConflictError):
                        error.delete = True  # type: ignore[union-attr]
                        raise

            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    def _related_pods(self, rs: Object) -> list[Object]:
        """Active pods of this ReplicaSet and of its siblings (same controlling owner)."""
        namespace = rs["metadata"]["namespace"]
        ref = controller_ref(rs)
        owners = [rs]
        if ref is not None:
            owners = [r for r in self.rs_informer.by_index("namespace", namespace)
                      if (controller_ref(r) or {}).get("uid") == ref.get("uid")] or [rs]
        related: list[Object] = []
        for owner in owners:
            related.extend(p for p in self.pod_informer.by_index("controller-uid", owner["metadata"]["uid"])
                           if is_pod_active(p))
        return related

    async def _update_status(self, rs: Object, status: Object) -> None:
        if status == (rs.get("status") or {}) and rs.get("status"):
            return
        body = {**rs, "status": status}
        try:
            await self.client.update_status(self.managed, body)
        except errors.ConflictError:
            fresh = await self.client.get(self.managed, rs["metadata"]["name"], rs["metadata"]["namespace"])
            if fresh["metadata"].get("uid") != rs["metadata"].get("uid"):
                return
            status = {**status, "observedGeneration": rs["metadata"].get("generation", 1)}
            await self.client.update_status(self.managed, {**fresh, "status": status})
        except errors.NotFoundError:
            return
