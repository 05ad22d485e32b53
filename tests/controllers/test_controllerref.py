"""ControllerRefManager (controllerref.py) against a real API server: what a claim adopts, releases,
keeps and leaves alone. ConfigMaps stand in for owner and owned objects; no controller runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.controllerref import ControllerRefManager
from pilothouse.components.controllers.podcontrol import controller_ref, new_controller_ref
from pilothouse.machinery.selectors import selector_from_object

CONFIGMAPS = resource("", "v1", "configmaps")
NAMESPACES = resource("", "v1", "namespaces")
SELECTOR = selector_from_object({"matchLabels": {"app": "claimed"}})


@pytest.fixture
async def client(server: Any) -> AsyncIterator[APIClient]:
    c = APIClient(server.url, user_agent="test")
    try:
        yield c
    finally:
        await c.close()


async def make(client: APIClient, ns: str, name: str, labels: dict[str, str],
               owner_refs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner_refs:
        metadata["ownerReferences"] = owner_refs
    return await client.create(CONFIGMAPS, {"metadata": metadata}, ns)


async def setup(client: APIClient, ns: str) -> tuple[dict[str, Any], ControllerRefManager]:
    await client.create(NAMESPACES, {"metadata": {"name": ns}})
    owner = await make(client, ns, "owner", {})
    ref = new_controller_ref(owner, "v1", "ConfigMap")
    return owner, ControllerRefManager(client, CONFIGMAPS, owner, ref, CONFIGMAPS)


async def test_claim_adopts_orphans_releases_strays_and_leaves_others_alone(client: APIClient) -> None:
    ns = "claim-basic"
    owner, manager = await setup(client, ns)
    other = await make(client, ns, "other-owner", {})
    orphan = await make(client, ns, "orphan", {"app": "claimed"})
    stray = await make(client, ns, "stray", {"app": "elsewhere"}, [manager.owner_ref])
    kept = await make(client, ns, "kept", {"app": "claimed"}, [manager.owner_ref])
    foreign = await make(client, ns, "foreign", {"app": "claimed"}, [new_controller_ref(other, "v1", "ConfigMap")])
    unmatched = await make(client, ns, "unmatched", {"app": "elsewhere"})

    claimed = await manager.claim(SELECTOR, [orphan, stray, kept, foreign, unmatched])

    assert sorted(obj["metadata"]["name"] for obj in claimed) == ["kept", "orphan"]
    owner_uid = owner["metadata"]["uid"]
    assert (controller_ref(await client.get(CONFIGMAPS, "orphan", ns)) or {}).get("uid") == owner_uid
    assert "ownerReferences" not in (await client.get(CONFIGMAPS, "stray", ns))["metadata"]
    assert controller_ref(await client.get(CONFIGMAPS, "foreign", ns)) == controller_ref(foreign)
    assert "ownerReferences" not in (await client.get(CONFIGMAPS, "unmatched", ns))["metadata"]


async def test_claim_never_touches_an_object_replaced_under_the_same_name(client: APIClient) -> None:
    ns = "claim-replaced"
    _owner, manager = await setup(client, ns)
    stale = await make(client, ns, "orphan", {"app": "claimed"})
    await client.delete(CONFIGMAPS, "orphan", ns)
    await make(client, ns, "orphan", {"app": "claimed"})

    assert await manager.claim(SELECTOR, [stale]) == []
    assert "ownerReferences" not in (await client.get(CONFIGMAPS, "orphan", ns))["metadata"]
    with pytest.raises(errors.NotFoundError):
        await manager.adopt(stale)


async def test_an_owner_gone_from_the_server_adopts_nothing(client: APIClient) -> None:
    ns = "claim-gone"
    _owner, manager = await setup(client, ns)
    orphan = await make(client, ns, "orphan", {"app": "claimed"})
    # The informer's copy says the owner exists; the server has a new object under its name.
    await client.delete(CONFIGMAPS, "owner", ns)
    await make(client, ns, "owner", {})

    assert await manager.claim(SELECTOR, [orphan]) == []
    assert "ownerReferences" not in (await client.get(CONFIGMAPS, "orphan", ns))["metadata"]
