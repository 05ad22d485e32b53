"""Adoption and release of owned objects: client-go's ``ControllerRefManager`` in one place.

A ReplicaSet claims pods, a Deployment claims ReplicaSets, and the garbage collector drops an owner's
reference when it orphans dependents. All three write the same uid-guarded JSON patch of
``metadata.ownerReferences`` and read "the object was replaced" the same way, so the patch and the
claim loop are built here once (``controller_ref_manager.go``: ``ClaimObject``, ``AdoptPod``,
``ReleasePod`` and ``RecheckDeletionTimestamp``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pilothouse.client import errors
from pilothouse.client.rest import APIClient
from pilothouse.components.controllers.podcontrol import controller_ref
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import LabelSelector

__all__ = ["ControllerRefManager", "owner_refs_patch", "patch_owner_refs", "release_owner"]



def owner_refs_patch(obj: Object, refs: list[Object]) -> list[Object]:
    """The JSON patch that adoption, release and orphaning write: ``obj``'s ownerReferences become
    ``refs``, guarded by its uid (a test op), so an object deleted and re-created under the same
    name is never changed by mistake (the server answers 422; callers treat it as gone)."""
    return [{"op": "test", "path": "/metadata/uid", "value": obj["metadata"]["uid"]},
            {"op": "add", "path": "/metadata/ownerReferences", "value": refs} if refs
            else {"op": "remove", "path": "/metadata/ownerReferences"}]


async def patch_owner_refs(client: APIClient, r: ResourceType, obj: Object, refs: list[Object]) -> Object:
    """Write ``refs`` as ``obj``'s ownerReferences. An object replaced under the same name fails the
    uid test (422): it is reported as NotFound, since the object this patch was meant for is gone."""
    metadata = obj["metadata"]
    try:
        return await client.patch(r, metadata["name"], owner_refs_patch(obj, refs), metadata.get("namespace"),
                                  patch_type="json")
    except errors.InvalidError:
        raise errors.NotFoundError(404, "NotFound", f"{r.kind} was replaced") from None


async def release_owner(client: APIClient, r: ResourceType, obj: Object, owner_uid: str) -> Object:
    """Drop the owner ``owner_uid``'s reference from ``obj`` (a release, or the garbage collector
    orphaning a dependent)."""
    refs = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") != owner_uid]
    return await patch_owner_refs(client, r, obj, refs)


@dataclass
class ControllerRefManager:
    """One owner claiming objects of one resource (``owned``): adopt matching orphans, release owned
    objects that no longer match. ``owner_resource`` is where the owner is re-read before the first
    adoption."""

    client: APIClient
    owner_resource: ResourceType
    owner: Object
    owner_ref: Object
    owned: ResourceType

    @property
    def uid(self) -> str:
        return str(self.owner_ref["uid"])

    async def can_adopt(self) -> bool:
        """``RecheckDeletionTimestamp``: the informer's copy of the owner may be stale, so the server
        is asked whether this very owner (same uid) still exists and is not being deleted."""
        metadata = self.owner["metadata"]
        fresh = await self.client.get(self.owner_resource, metadata["name"], metadata.get("namespace"))
        return bool(fresh["metadata"].get("uid") == self.uid and not fresh["metadata"].get("deletionTimestamp"))

    async def adopt(self, obj: Object) -> Object:
        refs = [*(obj["metadata"].get("ownerReferences") or []), self.owner_ref]
        return await patch_owner_refs(self.client, self.owned, obj, refs)

    async def release(self, obj: Object) -> Object:
        return await release_owner(self.client, self.owned, obj, self.uid)

    async def claim(self, selector: LabelSelector, candidates: Iterable[Object]) -> list[Object]:
        """``ClaimObjects``: the candidates this owner controls after adopting orphans that match
        ``selector`` and releasing owned ones that do not. An object that vanished meanwhile
        (NotFound) is skipped. ``can_adopt`` is asked once, before the first adoption; an owner being
        deleted neither adopts nor releases (the garbage collector takes care)."""
        being_deleted = bool(self.owner["metadata"].get("deletionTimestamp"))
        claimed: list[Object] = []
        adoption_allowed: bool | None = None
        for obj in candidates:
            metadata = obj["metadata"]
            ref = controller_ref(obj)
            matches = selector.matches(metadata.get("labels") or {})
            if ref is not None:
                if ref.get("uid") != self.uid:
                    continue  # someone else's
                if matches:
                    claimed.append(obj)
                elif not being_deleted:
                    try:
                        await self.release(obj)
                    except errors.NotFoundError:
                        pass
                continue
            # an orphan
            if not matches or being_deleted or metadata.get("deletionTimestamp"):
                continue
            if adoption_allowed is None:
                adoption_allowed = await self.can_adopt()
            if not adoption_allowed:
                continue
            try:
                adopted = await self.adopt(obj)
            except errors.NotFoundError:
                continue
            claimed.append(adopted if isinstance(adopted, dict) and adopted.get("metadata") else obj)
        return claimed
