"""The ClusterRole aggregation controller (``pkg/controller/clusterroleaggregation``).

A ClusterRole with an ``aggregationRule`` holds the union of the rules of every other ClusterRole
its selectors match: that is how ``admin``, ``edit`` and ``view`` grow when a new kind's
``aggregate-to-*`` role appears. As in Kubernetes, any ClusterRole event enqueues every aggregated
role (a change anywhere can change any union); ``sync`` walks the selectors in order, the matching
roles sorted by name, keeps the first copy of each rule, and writes the rules with a forced
server-side apply under the controller's own field manager when they differ.
"""

from __future__ import annotations

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery.kinds.vcommon import label_selector_matches
from pilothouse.machinery.meta import Object

__all__ = ["CLUSTERROLES", "ClusterRoleAggregationController", "aggregated_rules"]


CLUSTERROLES = resource("rbac.authorization.k8s.io", "v1", "clusterroles")
FIELD_MANAGER = "clusterrole-aggregation-controller"


def aggregated_rules(role: Object, all_roles: list[Object]) -> list[Object]:
    """The rules ``role``'s aggregationRule selects, in Kubernetes' order, without duplicates."""
    name = role["metadata"]["name"]
    rules: list[Object] = []
    selectors = ((role.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
    by_name = sorted(all_roles, key=lambda r: str(r["metadata"]["name"]))
    for selector in selectors:
        for other in by_name:
            if other["metadata"]["name"] == name or \
                    not label_selector_matches(selector, other["metadata"].get("labels")):
                continue
            for rule in other.get("rules") or []:
                if rule not in rules:
                    rules.append(rule)
    return rules


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.roles: Informer = ctx.informers.informer(CLUSTERROLES)
        self.roles.add_handler(EventHandler(
            on_add=lambda _obj: self._enqueue_aggregated(),
            on_update=lambda _old, _new: self._enqueue_aggregated(),
            on_delete=lambda _obj: self._enqueue_aggregated(),
        ))

    def _enqueue_aggregated(self) -> None:
        for role in self.roles.list():
            if role.get("aggregationRule") is not None:
                self.enqueue(role)

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or role.get("aggregationRule") is None:
            return
        rules = aggregated_rules(role, self.roles.list())
        # Kubernetes compares semantically: a missing rules list equals an empty one.
        if rules == (role.get("rules") or []):
            return
        apply = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": key}, "rules": rules}
        await self.client.patch(CLUSTERROLES, key, apply, patch_type="apply", field_manager=FIELD_MANAGER,
                                force=True)
