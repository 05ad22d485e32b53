"""The StatefulSet controller: pods with stable names and ordinals, created and removed in order.

As ``pkg/controller/statefulset`` (``defaultStatefulSetControl``) in Kubernetes 1.32: pod ``i`` is
``<set>-<i>`` with hostname ``<set>-<i>``, subdomain ``spec.serviceName`` and the labels
``statefulset.kubernetes.io/pod-name`` / ``apps.kubernetes.io/pod-index``. With ``OrderedReady`` a
pod is created only once every lower ordinal is Running and Ready, and scale-down removes the
highest ordinal first, one at a time; ``Parallel`` does both at once. Template changes become
ControllerRevisions (``controller-revision-hash`` holds the revision name); ``RollingUpdate``
replaces pods from the highest ordinal down to ``partition``, one unhealthy pod at most.
PersistentVolumeClaims (``volumeClaimTemplates``) are not handled yet.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.controllerrevision import (
    CONTROLLER_REVISIONS,
    REVISION_HASH_LABEL,
    RevisionConflict,
    ensure_revision,
    owned_revisions,
    truncate_history,
)
from pilothouse.components.controllers.podcontrol import (
    PODS,
    PodControl,
    controller_ref,
    is_pod_available,
    is_pod_ready,
    new_controller_ref,
    owner_uid_refs,
    pod_from_template,
)
from pilothouse.machinery.meta import Object

__all__ = ["POD_INDEX_LABEL", "POD_NAME_LABEL", "StatefulSetController", "pod_ordinal"]


STATEFULSETS = resource("apps", "v1", "statefulsets")
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def pod_ordinal(set_name: str, pod: Object) -> int | None:
    """The ordinal in ``<set>-<n>``, or None for a pod whose name is not one of the set's."""
    match = _ORDINAL.match(pod["metadata"]["name"])
    if match is None or match.group(1) != set_name:
        return None
    return int(match.group(2))


def _is_running_ready(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def _is_terminating(pod: Object) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _is_failed(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def _revision_of(pod: Object) -> str:
    return str((pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) or "")


class StatefulPodControl(PodControl):
    """StatefulPodControl's ``recordPodEvent`` words: "create Pod web-0 in StatefulSet web successful"."""

    def message(self, verb: str, name: str, owner: Object, error: str | None = None) -> str:
        outcome = "successful" if error is None else f"failed error: {error}"
        return f"{verb} Pod {name} in StatefulSet {owner['metadata']['name']} {outcome}"


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pod_control = StatefulPodControl(self.client, self.recorder)
        self.sets = ctx.informers.informer(STATEFULSETS)
        self.pods = ctx.informers.informer(PODS)
        self.revisions = ctx.informers.informer(CONTROLLER_REVISIONS)
        self.pods.add_indexer("owner-uid", owner_uid_refs)
        self.revisions.add_indexer("owner-uid", owner_uid_refs)
        self.sets.add_handler(EventHandler.on_object(self.enqueue, self.enqueue))
        self.pods.add_handler(EventHandler.on_object(self._pod_changed, self._pod_changed))

    def _pod_changed(self, pod: Object) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.enqueue_key(f"{pod['metadata']['namespace']}/{ref['name']}")

    async def _delete_pod(self, sts: Object, pod: Object) -> None:
        """Delete one of the set's pods (by uid: never a newer pod of the same name); gone is fine."""
        try:
            await self.pod_control.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], sts,
                                              uid=pod["metadata"].get("uid"))
        except errors.NotFoundError:
            pass

    async def _revision(self, sts: Object, revisions: list[Object]) -> Object | None:
        try:
            revision, _ = await ensure_revision(self.client, sts, revisions, api_version="apps/v1",
                                                kind="StatefulSet")
        except RevisionConflict:
            count = int((sts.get("status") or {}).get("collisionCount") or 0) + 1
            # UpdateStatus: the statefulset-controller role may update statefulsets/status, not patch it.
            await self.client.update_status(STATEFULSETS, {**sts, "status": {**(sts.get("status") or {}),
                                                                              "collisionCount": count}})
            self.enqueue(sts)
            return None
        return revision

    def _new_pod(self, sts: Object, revision: Object, ordinal: int) -> Object:
        """``newVersionedStatefulSetPod``: the pod of ``ordinal`` from the revision's template."""
        name = f"{sts['metadata']['name']}-{ordinal}"
        template = copy.deepcopy(revision["data"]["spec"]["template"])
        template.pop("$patch", None)
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels[POD_NAME_LABEL] = name
        labels[POD_INDEX_LABEL] = str(ordinal)
        labels[REVISION_HASH_LABEL] = revision["metadata"]["name"]
        pod = pod_from_template(template, new_controller_ref(sts, "apps/v1", "StatefulSet"),
                                sts["metadata"]["namespace"], name=name)
        pod["spec"]["hostname"] = name
        service = (sts.get("spec") or {}).get("serviceName")
        if service:
            pod["spec"]["subdomain"] = service
        return pod

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        sts = {**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"}
        namespace, set_name = split_key(key)
        assert namespace is not None
        spec = sts.get("spec") or {}
        status = sts.get("status") or {}
        revisions = owned_revisions(self.revisions.by_index("owner-uid", sts["metadata"]["uid"]), sts)
        update_revision = await self._revision(sts, revisions)
        if update_revision is None:
            return
        by_name = {r["metadata"]["name"]: r for r in revisions}
        by_name[update_revision["metadata"]["name"]] = update_revision
        current_revision = by_name.get(status.get("currentRevision") or "", update_revision)

        pods = [p for p in self.pods.by_index("owner-uid", sts["metadata"]["uid"])
                if (controller_ref(p) or {}).get("uid") == sts["metadata"]["uid"]]
        replicas_wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        start = int(((spec.get("ordinals") or {}).get("start")) or 0)
        end = start + replicas_wanted
        replicas: dict[int, Object] = {}
        condemned: list[Object] = []
        for pod in pods:
            ordinal = pod_ordinal(set_name, pod)
            if ordinal is None:
                continue
            if start <= ordinal < end:
                replicas[ordinal] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: -(pod_ordinal(set_name, p) or 0))
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)

        def revision_for(ordinal: int) -> Object:
            # ordinals below the partition stay on the current revision
            if rolling and ordinal - start < partition:
                return current_revision
            return update_revision

        await self._reconcile(sts, namespace, replicas, condemned, range(start, end), monotonic, revision_for)
        live_pods = [p for p in self.pods.by_index("owner-uid", sts["metadata"]["uid"])
                     if (controller_ref(p) or {}).get("uid") == sts["metadata"]["uid"]]
        await self._update_status(sts, live_pods, current_revision, update_revision)
        live = {update_revision["metadata"]["name"], current_revision["metadata"]["name"]}
        live |= {_revision_of(p) for p in live_pods}
        await truncate_history(self.client, sts, revisions, live)

    async def _reconcile(self, sts: Object, namespace: str, replicas: dict[int, Object],
                         condemned: list[Object], ordinals: range, monotonic: bool,
                         revision_for: Any) -> None:
        """``updateStatefulSet``: create/replace replicas in order, then delete condemned pods, then
        roll the update."""
        set_name = sts["metadata"]["name"]
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        for ordinal in ordinals:
            pod = replicas.get(ordinal)
            if pod is not None and _is_failed(pod) and not _is_terminating(pod):
                self.recorder.event(sts, "Warning", "RecreatingFailedPod",
                                    f"StatefulSet {namespace}/{set_name} is recreating failed Pod "
                                    f"{pod['metadata']['name']}")
                await self._delete_pod(sts, pod)
                if monotonic:
                    return
                continue
            if pod is None:
                created = self._new_pod(sts, revision_for(ordinal), ordinal)
                try:
                    await self.pod_control.create_pod(created, sts)
                except errors.AlreadyExistsError:
                    pass  # a pod of that name not (yet) in our cache, or someone else's
                if monotonic:
                    return
                continue
            if _is_terminating(pod) and monotonic:
                return  # wait for the old incarnation to go away
            if monotonic and not (_is_running_ready(pod) and is_pod_available(pod, min_ready)):
                if min_ready and _is_running_ready(pod):
                    self.queue.add_after(object_key(sts), float(min_ready))
                return
        # scale down: highest ordinal first
        for pod in condemned:
            if _is_terminating(pod):
                if monotonic:
                    return
                continue
            if monotonic and not all(_is_running_ready(replicas[o]) for o in ordinals if o in replicas):
                return
            await self._delete_pod(sts, pod)
            if monotonic:
                return
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        if condemned or len(replicas) < len(ordinals):
            return
        update_name = revision_for(ordinals.stop - 1)["metadata"]["name"] if ordinals else ""
        for ordinal in reversed(ordinals):
            pod = replicas[ordinal]
            wanted = revision_for(ordinal)["metadata"]["name"]
            if wanted != update_name:
                break  # below the partition
            if _revision_of(pod) != wanted and not _is_terminating(pod):
                await self._delete_pod(sts, pod)
                return
            if not _is_running_ready(pod):
                return

    async def _update_status(self, sts: Object, pods: list[Object], current_revision: Object,
                             update_revision: Object) -> None:
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        current_name = current_revision["metadata"]["name"]
        update_name = update_revision["metadata"]["name"]
        counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0,
                  "updatedReplicas": 0}
        for pod in pods:
            if pod_ordinal(sts["metadata"]["name"], pod) is None:
                continue
            counts["replicas"] += 1
            if _is_running_ready(pod) and not _is_terminating(pod):
                counts["readyReplicas"] += 1
                if is_pod_available(pod, min_ready):
                    counts["availableReplicas"] += 1
            if not _is_terminating(pod):
                revision = _revision_of(pod)
                if revision == current_name:
                    counts["currentReplicas"] += 1
                if revision == update_name:
                    counts["updatedReplicas"] += 1
        spec = sts.get("spec") or {}
        wanted_replicas = int(spec.get("replicas", 1) or 0)
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if rolling and counts["updatedReplicas"] == wanted_replicas == counts["readyReplicas"] \
                and counts["replicas"] == wanted_replicas:
            # completeRollingUpdate
            current_name = update_name
            counts["currentReplicas"] = counts["updatedReplicas"]
        old = dict(sts.get("status") or {})
        new = {**old, **counts, "currentRevision": current_name, "updateRevision": update_name,
               "observedGeneration": sts["metadata"].get("generation") or 1}
        new.setdefault("collisionCount", 0)
        for optional in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not new[optional]:
                new.pop(optional)
        if new != old:
            try:
                await self.client.update_status(STATEFULSETS, {**sts, "status": new})
            except errors.NotFoundError:
                return
