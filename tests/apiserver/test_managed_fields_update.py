"""What an update's body says about managedFields (the apiserver's fieldmanager, upstream's
``decodeManagedFields`` and ``skipNonAppliedManager``): a body without the list keeps the stored one,
which is what lets informers strip them (issue 16); an empty list ``[]`` resets them, and an object
nobody manages is not tracked again by later updates (test/integration/apiserver/apply's
TestClearManagedFieldsWithUpdateEmptyList)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery.patch import track_update
from pilothouse.machinery.schema import schema_for_kind
from tests.conftest import ServerProcess

CONFIGMAPS = resource("", "v1", "configmaps")


async def _entries(client: APIClient, name: str) -> dict[str, dict[str, object]]:
    obj = await client.get(CONFIGMAPS, name, "default")
    return {e["manager"]: e["fieldsV1"] for e in obj["metadata"].get("managedFields") or []}


async def test_an_update_without_managed_fields_keeps_the_stored_ones(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        await client.create(CONFIGMAPS, {"metadata": {"name": "keep", "labels": {"a": "1"}}, "data": {"k": "v"}},
                            "default", field_manager="creator")
        stored = await client.get(CONFIGMAPS, "keep", "default")
        body = copy.deepcopy(stored)
        del body["metadata"]["managedFields"]  # as an informer that strips them caches it
        body["data"]["k"] = "w"
        await client.update(CONFIGMAPS, body, field_manager="controller")
        entries = await _entries(client, "keep")
        assert set(entries) == {"creator", "controller"}
        assert entries["controller"] == {"f:data": {"f:k": {}}}
        assert "f:labels" in entries["creator"]["f:metadata"]  # type: ignore[operator]


async def test_an_update_with_an_empty_list_resets_them_for_good(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        await client.create(CONFIGMAPS, {"metadata": {"name": "reset", "labels": {"a": "1"}}, "data": {"k": "v"}},
                            "default", field_manager="creator")
        body = await client.get(CONFIGMAPS, "reset", "default")
        body["metadata"]["managedFields"] = []
        body["data"]["k"] = "w"
        updated = await client.update(CONFIGMAPS, body, field_manager="resetter")
        assert "managedFields" not in updated["metadata"]
        await client.patch(CONFIGMAPS, "reset", {"metadata": {"labels": {"a": "2"}}}, "default",
                           field_manager="patcher")
        after = await client.get(CONFIGMAPS, "reset", "default")
        assert after["metadata"]["labels"] == {"a": "2"} and after["data"] == {"k": "w"}
        assert "managedFields" not in after["metadata"]


def test_track_update_reads_an_empty_list_as_a_reset_and_then_tracks_nothing() -> None:
    schema = schema_for_kind("", "v1", "ConfigMap")
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"},
                            "data": {"a": "1"}}
    track_update(None, live, "creator", "Update", "v1", "2026-12-05T00:00:00Z", schema)
    assert [e["manager"] for e in live["metadata"]["managedFields"]] == ["creator"]

    absent = copy.deepcopy(live)
    del absent["metadata"]["managedFields"]
    absent["data"]["a"] = "2"
    track_update(live, absent, "updater", "Update", "v1", "2026-12-05T00:00:01Z", schema)
    assert [e["manager"] for e in absent["metadata"]["managedFields"]] == ["creator", "updater"]

    resets: list[list[dict[str, Any]]] = [[], [{}]]
    for reset in resets:
        new = copy.deepcopy(live)
        new["metadata"]["managedFields"] = reset
        new["data"]["a"] = "3"
        track_update(live, new, "updater", "Update", "v1", "2026-12-05T00:00:01Z", schema)
        assert "managedFields" not in new["metadata"], reset
        later = copy.deepcopy(new)
        later["data"]["b"] = "4"
        track_update(new, later, "other", "Update", "v1", "2026-12-05T00:00:02Z", schema)
        assert "managedFields" not in later["metadata"], reset


PODS = resource("", "v1", "pods")


async def test_what_admission_adds_to_a_created_pod_is_nobodys(server: ServerProcess) -> None:
    """kube-apiserver's create handler records managedFields before mutating admission: the
    service-account token volume and the default tolerations admission adds, and the account's
    name, appear in the pod but in no manager's fields; what the body set (and defaulting filled)
    is the creator's."""
    async with APIClient(server.url) as client:
        pod = {"metadata": {"name": "admitted"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        for _ in range(100):  # the default ServiceAccount comes from the controller manager
            try:
                await client.create(PODS, pod, "default", field_manager="creator")
                break
            except errors.APIError:
                await asyncio.sleep(0.1)
        stored = await client.get(PODS, "admitted", "default")
    volumes = [v["name"] for v in stored["spec"].get("volumes") or []]
    assert any(name.startswith("kube-api-access-") for name in volumes), stored["spec"]
    assert stored["spec"]["serviceAccountName"] == "default"
    assert stored["spec"]["tolerations"]  # DefaultTolerationSeconds
    [entry] = stored["metadata"]["managedFields"]
    assert entry["manager"] == "creator"
    spec_fields = entry["fieldsV1"]["f:spec"]
    assert "f:volumes" not in spec_fields and "f:serviceAccountName" not in spec_fields
    assert "f:tolerations" not in spec_fields
    assert "f:containers" in spec_fields and "f:restartPolicy" in spec_fields  # the body's, and defaults
