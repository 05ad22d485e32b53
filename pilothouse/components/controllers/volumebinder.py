"""The persistent volume binder: claims bound to volumes, as kube-controller-manager's
``persistentvolume-binder`` (pkg/controller/volume/persistentvolume/pv_controller.go) does it for
statically provisioned volumes.

- A new volume (Pending, no claimRef) becomes Available.
- A Pending claim is bound to the smallest Available volume that fits: same storage class and
  volume mode, every requested access mode, enough capacity, matching the claim's selector (or to
  the volume its ``volumeName`` names). The volume is written first (claimRef, then status Bound),
  then the claim (volumeName, then status Bound with the volume's capacity and access modes), so a
  crash in between is finished by the next sync, as in Kubernetes.
- A volume whose claim is gone is Released (reclaim policy Retain or Recycle) or deleted (Delete).

Not done: dynamic provisioning (no provisioner ships with pilothouse), recycling, and the
attach/detach and expansion controllers; CSINode, CSIDriver and VolumeAttachment objects have no
controller.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import meta
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.kinds.vcommon import label_selector_matches
from pilothouse.machinery.meta import Object

__all__ = ["VolumeBinderController", "best_volume"]


VOLUMES = resource("", "v1", "persistentvolumes")
CLAIMS = resource("", "v1", "persistentvolumeclaims")
_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"


def _storage(resources: dict[str, Any] | None) -> Fraction:
    return parse_quantity((resources or {}).get("storage")) or Fraction(0)


def _claim_ref_matches(volume: Object, claim: Object) -> bool:
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    meta_ = claim["metadata"]
    return (ref.get("namespace"), ref.get("name")) == (meta_.get("namespace"), meta_["name"]) and (
        not ref.get("uid") or ref.get("uid") == meta_.get("uid"))


def _fits(volume: Object, claim: Object) -> bool:
    spec, want = volume.get("spec") or {}, claim.get("spec") or {}
    if volume["metadata"].get("deletionTimestamp"):
        return False
    if spec.get("claimRef") and not _claim_ref_matches(volume, claim):
        return False
    if (spec.get("storageClassName") or "") != (want.get("storageClassName") or ""):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (want.get("volumeMode") or "Filesystem"):
        return False
    if not set(want.get("accessModes") or ()) <= set(spec.get("accessModes") or ()):
        return False
    if _storage(spec.get("capacity")) < _storage((want.get("resources") or {}).get("requests")):
        return False
    selector = want.get("selector")
    return selector is None or label_selector_matches(selector, volume["metadata"].get("labels"))


def best_volume(claim: Object, volumes: list[Object]) -> Object | None:
    """findBestMatchForClaim: a volume already reserved for this claim, else the smallest fitting
    Available one (by capacity, then name)."""
    fitting = [v for v in volumes if _fits(v, claim)
               and ((v.get("spec") or {}).get("claimRef") or (v.get("status") or {}).get("phase") == "Available")]
    reserved = [v for v in fitting if (v.get("spec") or {}).get("claimRef")]
    if reserved:
        return reserved[0]
    fitting.sort(key=lambda v: (_storage((v.get("spec") or {}).get("capacity")), v["metadata"]["name"]))
    return fitting[0] if fitting else None


class VolumeBinderController(Controller):
    name = "persistentvolume-binder"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.volumes = ctx.informers.informer(VOLUMES)
        self.claims = ctx.informers.informer(CLAIMS)
        self.volumes.add_handler(EventHandler.on_object(self._volume_changed, self._volume_changed))
        self.claims.add_handler(EventHandler.on_object(self._claim_changed, self._claim_deleted))

    # Keys: "volume:<name>" and "claim:<namespace>/<name>".
    def _volume_changed(self, volume: Object) -> None:
        self.enqueue_key(f"volume:{volume['metadata']['name']}")
        # A volume that became available may be what a waiting claim needs.
        for claim in self.claims.list():
            if (claim.get("status") or {}).get("phase", "Pending") == "Pending":
                self._claim_changed(claim)

    def _claim_changed(self, claim: Object) -> None:
        self.enqueue_key(f"claim:{claim['metadata'].get('namespace', '')}/{claim['metadata']['name']}")

    def _claim_deleted(self, claim: Object) -> None:
        for volume in self.volumes.list():
            if _claim_ref_matches(volume, claim):
                self.enqueue_key(f"volume:{volume['metadata']['name']}")

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "volume":
            await self._sync_volume(name)
        else:
            await self._sync_claim(name)

    async def _set_volume_phase(self, volume: Object, phase: str) -> Object:
        if (volume.get("status") or {}).get("phase") == phase:
            return volume
        updated = meta.clone(volume)
        updated["status"] = {**(volume.get("status") or {}), "phase": phase,
                             "lastPhaseTransitionTime": meta.format_time()}
        updated["status"].pop("message", None)
        return await self.client.update_status(VOLUMES, updated)

    async def _sync_volume(self, name: str) -> None:
        volume = self.volumes.get(name)
        if volume is None or volume["metadata"].get("deletionTimestamp"):
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            await self._set_volume_phase(volume, "Available")
            return
        claim = self.claims.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
        if claim is not None and (not ref.get("uid") or ref["uid"] == claim["metadata"].get("uid")):
            if (claim.get("spec") or {}).get("volumeName") == name:
                await self._set_volume_phase(volume, "Bound")
            return
        if not ref.get("uid"):
            return  # reserved by a user for a claim not created yet: wait for it
        # The claim is gone: reclaim.
        try:
            fresh = await self.client.get(CLAIMS, ref.get("name", ""), ref.get("namespace"))
            if fresh["metadata"].get("uid") == ref["uid"]:
                return  # the cache is behind
        except errors.NotFoundError:
            pass
        if (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
            await self.client.delete(VOLUMES, name)
        else:
            await self._set_volume_phase(volume, "Released")

    async def _sync_claim(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        wanted = (claim.get("spec") or {}).get("volumeName")
        candidates = self.volumes.list()
        if wanted:
            candidates = [v for v in candidates if v["metadata"]["name"] == wanted]
        volume = best_volume(claim, candidates)
        if volume is None:
            return  # stays Pending until a volume fits, as in Kubernetes
        volume = await self._bind_volume(volume, claim)
        await self._bind_claim(claim, volume, by_controller=not wanted)

    async def _bind_volume(self, volume: Object, claim: Object) -> Object:
        meta_ = claim["metadata"]
        ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta_.get("namespace", ""),
               "name": meta_["name"], "uid": meta_.get("uid", ""), "resourceVersion": meta_.get("resourceVersion", "")}
        current_ref = (volume.get("spec") or {}).get("claimRef") or {}
        if current_ref.get("uid") != ref["uid"]:
            updated = meta.clone(volume)
            updated["spec"]["claimRef"] = ref
            updated["metadata"].setdefault("annotations", {})[_BOUND_BY_CONTROLLER] = "yes"
            volume = await self.client.update(VOLUMES, updated)
        return await self._set_volume_phase(volume, "Bound")

    async def _bind_claim(self, claim: Object, volume: Object, by_controller: bool) -> None:
        name = volume["metadata"]["name"]
        if (claim.get("spec") or {}).get("volumeName") != name or _BIND_COMPLETED not in (
                claim["metadata"].get("annotations") or {}):
            updated = meta.clone(claim)
            updated["spec"]["volumeName"] = name
            annotations = updated["metadata"].setdefault("annotations", {})
            annotations[_BIND_COMPLETED] = "yes"
            if by_controller:
                annotations[_BOUND_BY_CONTROLLER] = "yes"
            claim = await self.client.update(CLAIMS, updated)
        bound = meta.clone(claim)
        spec = volume.get("spec") or {}
        bound["status"] = {**(claim.get("status") or {}), "phase": "Bound",
                           "accessModes": list(spec.get("accessModes") or ()),
                           "capacity": dict(spec.get("capacity") or {})}
        await self.client.update_status(CLAIMS, bound)
