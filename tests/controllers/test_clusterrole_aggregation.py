"""The ClusterRole aggregation controller against a real server (its embedded controllers off)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient
from pilothouse.components.controllers.clusterroleaggregation import (
    CLUSTERROLES,
    ClusterRoleAggregationController,
)
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import run_controllers

Object = dict[str, Any]

WIDGETS = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}
GADGETS = {"apiGroups": ["example.com"], "resources": ["gadgets"], "verbs": ["*"]}


def _role(name: str, rules: list[Object], labels: dict[str, str] | None = None,
          selector: dict[str, str] | None = None) -> Object:
    role: Object = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if selector is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": selector}]}
    return role


async def _until(check: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0) -> None:
    """Poll ``check`` until it returns ``expected`` (the controller is asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected!r}, last saw {last!r}")


async def _rules(client: APIClient, name: str) -> list[Object]:
    return list((await client.get(CLUSTERROLES, name)).get("rules") or [])


async def test_aggregated_role_follows_labelled_roles(server: ServerProcess) -> None:
    client = APIClient(server.url)
    try:
        await client.create(CLUSTERROLES, _role("monitoring", [], selector={"example.com/aggregate-to-mon": "true"}))
        await client.create(CLUSTERROLES, _role("mon-widgets", [WIDGETS], {"example.com/aggregate-to-mon": "true"}))
        await client.create(CLUSTERROLES, _role("unrelated", [GADGETS], {"other": "true"}))
        async with run_controllers(server.url, ClusterRoleAggregationController):
            await _until(lambda: _rules(client, "monitoring"), [WIDGETS])

            # A new labelled role adds its rules (name order: mon-gadgets before mon-widgets).
            await client.create(CLUSTERROLES, _role("mon-gadgets", [GADGETS, WIDGETS],
                                                    {"example.com/aggregate-to-mon": "true"}))
            await _until(lambda: _rules(client, "monitoring"), [GADGETS, WIDGETS])

            # Rules written by hand into an aggregated role are replaced by the union.
            role = await client.get(CLUSTERROLES, "monitoring")
            role["rules"] = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
            await client.update(CLUSTERROLES, role)
            await _until(lambda: _rules(client, "monitoring"), [GADGETS, WIDGETS])

            # Its rules go when it goes; a label removed is a role gone from the union.
            await client.delete(CLUSTERROLES, "mon-gadgets")
            await _until(lambda: _rules(client, "monitoring"), [WIDGETS])
            await client.patch(CLUSTERROLES, "mon-widgets", {"metadata": {"labels": None}})
            await _until(lambda: _rules(client, "monitoring"), [])
            managers = {m["manager"] for m in (await client.get(CLUSTERROLES, "monitoring"))["metadata"]
                        .get("managedFields") or []}
            assert "clusterrole-aggregation-controller" in managers
    finally:
        for name in ("monitoring", "mon-widgets", "mon-gadgets", "unrelated"):
            try:
                await client.delete(CLUSTERROLES, name)
            except errors.NotFoundError:
                pass
        await client.close()


async def test_bootstrap_admin_edit_view_are_aggregated(server: ServerProcess) -> None:
    client = APIClient(server.url)
    try:
        view = await client.get(CLUSTERROLES, "view")
        assert view["aggregationRule"] == {"clusterRoleSelectors": [
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
        async with run_controllers(server.url, ClusterRoleAggregationController):
            aggregate_to_view = await _rules(client, "system:aggregate-to-view")
            aggregate_to_edit = await _rules(client, "system:aggregate-to-edit")
            aggregate_to_admin = await _rules(client, "system:aggregate-to-admin")
            await _until(lambda: _rules(client, "view"), aggregate_to_view)
            # edit is labelled aggregate-to-admin and selects aggregate-to-edit, which view carries.
            # Matching roles are taken in name order, rules de-duplicated: edit is
            # system:aggregate-to-edit + view, admin is edit + system:aggregate-to-admin.
            edit = [*aggregate_to_edit, *[r for r in aggregate_to_view if r not in aggregate_to_edit]]
            await _until(lambda: _rules(client, "edit"), edit)
            admin = [*edit, *[r for r in aggregate_to_admin if r not in edit]]
            await _until(lambda: _rules(client, "admin"), admin)

            # A custom kind's role labelled aggregate-to-view reaches view, edit and admin.
            crontabs = {"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
                        "verbs": ["get", "list", "watch"]}
            await client.create(CLUSTERROLES, _role("crontab-view", [crontabs],
                                                    {"rbac.authorization.k8s.io/aggregate-to-view": "true"}))
            for name in ("view", "edit", "admin"):
                await _until(lambda name=name: _contains(client, name, crontabs), True)
            await client.delete(CLUSTERROLES, "crontab-view")
            for name in ("view", "edit", "admin"):
                await _until(lambda name=name: _contains(client, name, crontabs), False)
    finally:
        await client.close()


async def _contains(client: APIClient, name: str, rule: Object) -> bool:
    return rule in await _rules(client, name)
