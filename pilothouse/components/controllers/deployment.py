"""The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.

As ``pkg/controller/deployment/deployment_controller.go`` + ``sync.go`` (Kubernetes 1.32): each
template gets a ReplicaSet named ``<deployment>-<pod-template-hash>`` (see
:func:`podcontrol.compute_hash` for how our hash differs from Kubernetes'); revisions live in the
``deployment.kubernetes.io/revision`` annotation, so ``kubectl rollout history/undo`` work; a paused
Deployment only scales; the strategies and status are in :mod:`rollout`. The controller reads only
caches and writes ReplicaSets; the ReplicaSet controller makes the pods.
"""

from __future__ import annotations

import copy

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers import deployment_util as du
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.controllerref import ControllerRefManager
from pilothouse.components.controllers.podcontrol import (
    PODS,
    compute_hash,
    controller_ref,
    new_controller_ref,
    with_kind,
)
from pilothouse.components.controllers.replicaset import REPLICASETS, by_controller_uid, by_namespace, owned_and_orphans
from pilothouse.components.controllers.rollout import RolloutMixin
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import selector_from_object

__all__ = ["DEPLOYMENTS", "DeploymentController"]


DEPLOYMENTS = resource("apps", "v1", "deployments")
_API_VERSION, _KIND = "apps/v1", "Deployment"


class DeploymentController(RolloutMixin, Controller):
    name = "deployment"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.recorder = ctx.recorder("deployment-controller")
        self.d_informer: Informer = ctx.informers.informer(DEPLOYMENTS)
        self.rs_informer: Informer = ctx.informers.informer(REPLICASETS)
        self.pod_informer: Informer = ctx.informers.informer(PODS)
        for informer in (self.d_informer, self.rs_informer, self.pod_informer):
            informer.add_indexer("namespace", by_namespace)
        self.pod_informer.add_indexer("controller-uid", by_controller_uid)
        self.rs_informer.add_indexer("controller-uid", by_controller_uid)
        self.d_informer.add_handler(EventHandler.on_object(self.enqueue, self.enqueue))
        self.rs_informer.add_handler(EventHandler(self._rs_added, self._rs_updated, self._rs_deleted))
        self.pod_informer.add_handler(EventHandler(on_delete=self._pod_deleted))

    # ------------------------------------------------------------------------------ event handlers

    def _resolve(self, namespace: str, ref: Object | None) -> Object | None:
        if ref is None or ref.get("kind") != _KIND:
            return None
        d = self.d_informer.get(f"{namespace}/{ref.get('name')}")
        if d is None or d["metadata"].get("uid") != ref.get("uid"):
            return None
        return d

    def _enqueue_for_rs(self, rs: Object) -> None:
        namespace = rs["metadata"].get("namespace", "")
        ref = controller_ref(rs)
        if ref is not None:
            d = self._resolve(namespace, ref)
            if d is not None:
                self.enqueue(d)
            return
        labels = rs["metadata"].get("labels") or {}
        for d in self.d_informer.by_index("namespace", namespace):
            if selector_from_object((d.get("spec") or {}).get("selector")).matches(labels):
                self.enqueue(d)

    def _rs_added(self, rs: Object) -> None:
        self._enqueue_for_rs(rs)

    def _rs_updated(self, old: Object, new: Object) -> None:
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            d = self._resolve(old["metadata"].get("namespace", ""), old_ref)
            if d is not None:
                self.enqueue(d)
        self._enqueue_for_rs(new)

    def _rs_deleted(self, rs: Object) -> None:
        d = self._resolve(rs["metadata"].get("namespace", ""), controller_ref(rs))
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Object) -> None:
        # Recreate waits for every old pod to be gone before it scales up.
        namespace = pod["metadata"].get("namespace", "")
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{namespace}/{ref.get('name')}")
        if rs is None:
            return
        d = self._resolve(namespace, controller_ref(rs))
        if d is not None and not du.is_rolling_update(d):
            self.enqueue(d)

    def requeue_after(self, d: Object, seconds: float) -> None:
        self.queue.add_after(object_key(d), seconds)

    # ----------------------------------------------------------------------------------------- sync

    async def sync(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None:
            return
        d = with_kind(copy.deepcopy(cached), _API_VERSION, _KIND)
        spec = d.get("spec") or {}
        if spec.get("selector") == {}:
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if int(d["metadata"].get("generation") or 0) > int((d.get("status") or {}).get("observedGeneration")
                                                               or 0):
                await self.write_status(d, {**(d.get("status") or {}),
                                            "observedGeneration": d["metadata"].get("generation")})
            return
        rss = await self._claim_replicasets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self.get_all_replicasets(d, rss, False)
            await self.sync_status([*old_rss, new_rs], new_rs, d)
            return
        await self._check_paused_conditions(d)
        if spec.get("paused"):
            await self.sync_scale(d, rss, paused=True)
            return
        if await self._is_scaling_event(d, rss):
            await self.sync_scale(d, rss, paused=False)
            return
        if du.is_rolling_update(d):
            await self.rollout_rolling(d, rss)
        else:
            await self.rollout_recreate(d, rss)

    async def _claim_replicasets(self, d: Object) -> list[Object]:
        owner_ref = new_controller_ref(d, _API_VERSION, _KIND)
        selector = selector_from_object((d.get("spec") or {}).get("selector"))
        candidates = owned_and_orphans(self.rs_informer, d)
        refs = ControllerRefManager(self.client, DEPLOYMENTS, d, owner_ref, REPLICASETS)
        claimed = await refs.claim(selector, candidates)
        return [with_kind(rs, "apps/v1", "ReplicaSet") for rs in claimed]

    def pods_by_rs(self, d: Object, rss: list[Object]) -> dict[str, list[Object]]:
        return {rs["metadata"]["uid"]: self.pod_informer.by_index("controller-uid", rs["metadata"]["uid"])
                for rs in rss}

    async def _check_paused_conditions(self, d: Object) -> None:
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        current = du.get_condition(status, "Progressing")
        if current is not None and current.get("reason") == du.TIMED_OUT_REASON:
            return
        paused_condition = current is not None and current.get("reason") == du.PAUSED_REASON
        if d["spec"].get("paused") and not paused_condition:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED_REASON,
                                                      "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_condition:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED_REASON,
                                                      "Deployment is resumed"))
        else:
            return
        await self.write_status(d, status)

    async def _is_scaling_event(self, d: Object, rss: list[Object]) -> bool:
        new_rs, old_rss = await self.get_all_replicasets(d, rss, False)
        for rs in du.filter_active([*old_rss, new_rs]):
            desired = (rs["metadata"].get("annotations") or {}).get(du.DESIRED_REPLICAS_ANNOTATION)
            if desired is None:
                continue
            if desired != str(du.replicas(d)):
                return True
        return False

    # -------------------------------------------------------------------------- replica sets

    async def get_all_replicasets(self, d: Object, rss: list[Object], create: bool,
                                  ) -> tuple[Object | None, list[Object]]:
        old_rss = du.find_old_replicasets(d, rss)
        new_rs = await self._get_new_replicaset(d, rss, old_rss, create)
        return new_rs, old_rss

    async def _get_new_replicaset(self, d: Object, rss: list[Object], old_rss: list[Object],
                                  create: bool) -> Object | None:
        existing = du.find_new_replicaset(d, rss)
        new_revision = du.max_revision(old_rss) + 1
        status = d.setdefault("status", {})
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_replicaset_annotations(d, rs, new_revision, True)
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                updated = await self.client.update(REPLICASETS, rs)
                return with_kind(updated, "apps/v1", "ReplicaSet")
            await self._set_deployment_revision(d, (rs["metadata"].get("annotations") or {})
                                                .get(du.REVISION_ANNOTATION, ""))
            if du.has_progress_deadline(d) and du.get_condition(status, "Progressing") is None:
                du.set_condition(status, du.new_condition("Progressing", "True", du.FOUND_NEW_RS_REASON,
                                                          f'Found new replica set "{rs["metadata"]["name"]}"'))
                await self.write_status(d, status)
            return rs
        if not create:
            return None
        return await self._create_new_replicaset(d, old_rss, new_revision)

    async def _create_new_replicaset(self, d: Object, old_rss: list[Object], new_revision: int) -> Object | None:
        spec = d["spec"]
        status = d["status"]
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = compute_hash(template, status.get("collisionCount"))
        template.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[du.HASH_LABEL] = pod_hash
        namespace, name = d["metadata"]["namespace"], f"{d['metadata']['name']}-{pod_hash}"
        rs: Object = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace,
                         "ownerReferences": [new_controller_ref(d, _API_VERSION, _KIND)],
                         "labels": dict(template["metadata"]["labels"])},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds") or 0,
                     "selector": selector, "template": template},
        }
        count = du.new_rs_new_replicas(d, [*old_rss, rs], rs)
        rs["spec"]["replicas"] = count
        du.set_new_replicaset_annotations(d, rs, new_revision, False)
        already_exists = False
        try:
            created = await self.client.create(REPLICASETS, rs, namespace)
        except errors.AlreadyExistsError:
            current = self.rs_informer.get(f"{namespace}/{name}")
            if current is None:
                current = await self.client.get(REPLICASETS, name, namespace)
            ref = controller_ref(current)
            if ref is not None and ref.get("uid") == d["metadata"]["uid"] and \
                    du.equal_ignore_hash(d["spec"].get("template"), (current.get("spec") or {}).get("template")):
                created, already_exists = current, True
            else:
                # A hash collision: bump collisionCount so the next sync computes another name.
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                await self.write_status(d, status)
                raise
        except errors.APIError as error:
            if du.has_progress_deadline(d):
                du.set_condition(status, du.new_condition("Progressing", "False", du.FAILED_RS_CREATE_REASON,
                                                          f'Failed to create new replica set "{name}": '
                                                          f"{error.message}"))
                await self.write_status(d, status)
            self.recorder.event(d, "Warning", "FailedCreate",
                                f'Failed to create new replica set "{name}": {error.message}')
            raise
        if not already_exists and count > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {name} from 0 to {count}")
        await self._set_deployment_revision(d, str(new_revision))
        if not already_exists and du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_REASON,
                                                      f'Created new replica set "{name}"'))
            await self.write_status(d, status)
        return with_kind(created, "apps/v1", "ReplicaSet")

    async def _set_deployment_revision(self, d: Object, revision: str) -> None:
        """The Deployment carries its current revision too (``SetDeploymentRevision``). Written, as
        Kubernetes does, through /status: a change of the main resource's annotations would bump
        its generation."""
        annotations = d["metadata"].setdefault("annotations", {})
        if not revision or annotations.get(du.REVISION_ANNOTATION) == revision:
            return
        annotations[du.REVISION_ANNOTATION] = revision
        # UpdateStatus, as upstream: the deployment-controller role may update deployments/status, not patch it.
        updated = await self.client.update_status(DEPLOYMENTS, d)
        d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    async def scale_replicaset(self, rs: Object, new_scale: int, d: Object) -> tuple[bool, Object]:
        """``scaleReplicaSetAndRecordEvent``: replicas and the desired/max annotations."""
        size_changed = du.replicas(rs) != new_scale
        updated = copy.deepcopy(rs)
        annotations_changed = du.set_replicas_annotations(updated, du.replicas(d), du.replicas(d) + du.max_surge(d))
        if not size_changed and not annotations_changed:
            return False, rs
        old_scale = du.replicas(rs)
        updated["spec"]["replicas"] = new_scale
        result = with_kind(await self.client.update(REPLICASETS, updated), "apps/v1", "ReplicaSet")
        if size_changed:
            direction = "up" if old_scale < new_scale else "down"
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {rs['metadata']['name']} from {old_scale} "
                                f"to {new_scale}")
        return size_changed, result

    async def delete_replicaset(self, rs: Object) -> None:
        await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"],
                                 preconditions={"uid": rs["metadata"]["uid"]})

    async def write_status(self, d: Object, status: Object) -> Object:
        body = {**d, "status": status}
        try:
            result = await self.client.update_status(DEPLOYMENTS, body)
        except errors.ConflictError:
            fresh = await self.client.get(DEPLOYMENTS, d["metadata"]["name"], d["metadata"]["namespace"])
            if fresh["metadata"].get("uid") != d["metadata"].get("uid"):
                raise
            if fresh["metadata"].get("generation") != d["metadata"].get("generation"):
                raise  # the spec moved on: this status is stale, sync again
            result = await self.client.update_status(DEPLOYMENTS, {**fresh, "status": status})
        d["status"] = status
        d["metadata"]["resourceVersion"] = result["metadata"]["resourceVersion"]
        return result
