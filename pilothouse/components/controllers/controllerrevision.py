"""ControllerRevisions: the template history of DaemonSets and StatefulSets.

Both controllers snapshot their pod template as an ``apps/v1`` ControllerRevision named
``<owner>-<hash>`` (``controller.history`` in Kubernetes), so that pods can be told apart by the
``controller-revision-hash`` label and a rollback finds the old template. A revision identical to
the wanted one is reused (and renumbered if it is not the newest, as a rollback does); a name clash
with different data bumps the owner's ``collisionCount``; old revisions beyond
``revisionHistoryLimit`` that no pod uses are deleted.
"""

from __future__ import annotations

import copy

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.podcontrol import compute_hash, controller_ref, new_controller_ref
from pilothouse.machinery.meta import Object

__all__ = [
    "CONTROLLER_REVISIONS",
    "REVISION_HASH_LABEL",
    "RevisionConflict",
    "ensure_revision",
    "owned_revisions",
    "revision_number",
    "template_patch",
    "truncate_history",
]


CONTROLLER_REVISIONS = resource("apps", "v1", "controllerrevisions")
#: ``apps.ControllerRevisionHashLabelKey``.
REVISION_HASH_LABEL = "controller-revision-hash"


class RevisionConflict(Exception):
    """A revision of that name exists with other data: bump collisionCount and retry."""


def template_patch(owner: Object) -> Object:
    """What a revision stores (``getPatch`` of both controllers): the pod template, marked replace."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_number(revision: Object) -> int:
    return int(revision.get("revision") or 0)


def owned_revisions(revisions: list[Object], owner: Object) -> list[Object]:
    """The owner's revisions, oldest first."""
    uid = owner["metadata"]["uid"]
    mine = [r for r in revisions if (controller_ref(r) or {}).get("uid") == uid]
    return sorted(mine, key=lambda r: (revision_number(r), r["metadata"]["name"]))


async def ensure_revision(client: APIClient, owner: Object, revisions: list[Object], *, api_version: str,
                          kind: str, hash_value: str | None = None) -> tuple[Object, str]:
    """The revision for the owner's current template, created if missing. Returns (revision, hash).

    ``revisions`` are the owner's revisions (:func:`owned_revisions`).
    """
    metadata = owner["metadata"]
    collision = int((owner.get("status") or {}).get("collisionCount") or 0)
    data = template_patch(owner)
    hash_value = hash_value or compute_hash((owner.get("spec") or {}).get("template") or {}, collision or None)
    latest = max((revision_number(r) for r in revisions), default=0)
    for revision in revisions:
        if revision.get("data") == data:
            if revision_number(revision) != latest or latest == 0:
                # a rollback to an old template: the old revision becomes the newest
                revision = await client.patch(CONTROLLER_REVISIONS, revision["metadata"]["name"],
                                              {"revision": latest + 1}, metadata["namespace"])
            found_hash = (revision["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL, hash_value)
            return revision, found_hash
    template_meta: Object = ((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    labels[REVISION_HASH_LABEL] = hash_value
    name = f"{metadata['name']}-{hash_value}"
    body: Object = {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": name, "namespace": metadata["namespace"],
                     "labels": labels,
                     "ownerReferences": [new_controller_ref(owner, api_version, kind)]},
        "data": data,
        "revision": latest + 1,
    }
    try:
        created = await client.create(CONTROLLER_REVISIONS, body, metadata["namespace"])
    except errors.AlreadyExistsError:
        existing = await client.get(CONTROLLER_REVISIONS, name, metadata["namespace"])
        if existing.get("data") == data and (controller_ref(existing) or {}).get("uid") == metadata["uid"]:
            return existing, hash_value
        raise RevisionConflict(name) from None
    return created, hash_value


async def truncate_history(client: APIClient, owner: Object, revisions: list[Object],
                           live: set[str]) -> None:
    """Delete the oldest revisions beyond ``spec.revisionHistoryLimit`` (default 10) whose name is not in
    ``live`` (the revisions pods or the status still use)."""
    limit = (owner.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    excess = len(history) - limit
    for revision in history[:max(excess, 0)]:
        try:
            await client.delete(CONTROLLER_REVISIONS, revision["metadata"]["name"],
                                owner["metadata"]["namespace"])
        except errors.NotFoundError:
            pass
