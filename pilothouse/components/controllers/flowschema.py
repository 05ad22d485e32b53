"""FlowSchema status: the ``Dangling`` condition kube-apiserver's API priority and fairness
controller keeps (staging/src/k8s.io/apiserver/pkg/util/flowcontrol/apf_controller.go): whether
the PriorityLevelConfiguration a schema names exists. ``kubectl get flowschemas`` shows it as
MISSINGPL. The API server's priority and fairness filter (apiserver/flowcontrol) skips a dangling
schema when it classifies a request, as kube-apiserver does.
"""

from __future__ import annotations

from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["FlowSchemaStatusController", "dangling_condition"]


FLOWSCHEMAS = resource("flowcontrol.apiserver.k8s.io", "v1", "flowschemas")
LEVELS = resource("flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations")


def dangling_condition(level_name: str, exists: bool) -> dict[str, str]:
    if exists:
        return {"type": "Dangling", "status": "False", "reason": "Found",
                "message": f'This FlowSchema references the PriorityLevelConfiguration object named "{level_name}" '
                           "and it exists"}
    return {"type": "Dangling", "status": "True", "reason": "NotFound",
            "message": f'This FlowSchema references the PriorityLevelConfiguration object named "{level_name}" '
                       "but there is no such object"}


class FlowSchemaStatusController(Controller):
    name = "flowschema-status"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.schemas = ctx.informers.informer(FLOWSCHEMAS)
        self.levels = ctx.informers.informer(LEVELS)
        self.schemas.add_handler(EventHandler.on_object(self.enqueue))
        self.levels.add_handler(EventHandler.on_object(self._level_changed, self._level_changed))

    def _level_changed(self, level: Object) -> None:
        for schema in self.schemas.list():
            if ((schema.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name") == \
                    level["metadata"]["name"]:
                self.enqueue(schema)

    async def sync(self, key: str) -> None:
        schema = self.schemas.get(key)
        if schema is None:
            return
        level_name = ((schema.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name", "")
        wanted = dangling_condition(level_name, self.levels.get(level_name) is not None)
        conditions = (schema.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "Dangling"), None)
        if current is not None and all(current.get(k) == v for k, v in wanted.items()):
            return
        updated = meta.clone(schema)
        updated["status"] = {**(schema.get("status") or {}), "conditions": [
            *(c for c in conditions if c.get("type") != "Dangling"),
            {**wanted, "lastTransitionTime": meta.format_time()}]}
        await self.client.update_status(FLOWSCHEMAS, updated)
