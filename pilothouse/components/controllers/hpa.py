"""The horizontal pod autoscaler, as far as it can go without a metrics API.

kube-controller-manager's HPA (pkg/controller/podautoscaler/horizontal.go, ``reconcileAutoscaler``)
first reads the target's scale, then keeps the replica count within ``minReplicas``..``maxReplicas``
(that needs no metrics), and only then asks the metrics APIs for a recommendation. pilothouse serves
no metrics API (no metrics-server), so this controller does the first two steps and reports the third
as a stock cluster without metrics-server does: ``ScalingActive=False``, reason
``FailedGetResourceMetric``. Every HPA is looked at again every 15 seconds (the
``--horizontal-pod-autoscaler-sync-period`` default).
"""

from __future__ import annotations

from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.machinery import meta
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType

__all__ = ["HorizontalPodAutoscalerController", "metrics_unavailable"]

Object = dict[str, Any]

HPAS = resource("autoscaling", "v2", "horizontalpodautoscalers")
SYNC_PERIOD = 15.0
_CATALOG = ResourceRegistry(BUILTIN_RESOURCES)


def metrics_unavailable(hpa: Object) -> tuple[str, str]:
    """(reason, message) of ScalingActive=False when the first metric cannot be read."""
    metric = ((hpa.get("spec") or {}).get("metrics") or [{}])[0]
    source = metric.get("resource") or metric.get("containerResource")
    if source is not None:
        name = source.get("name", "")
        how = "utilization" if (source.get("target") or {}).get("type") == "Utilization" else "usage"
        return ("FailedGetResourceMetric",
                f"the HPA was unable to compute the replica count: failed to get {name} {how}: unable to get "
                f"metrics for resource {name}: no metrics returned from resource metrics API")
    kind = metric.get("type", "")
    return (f"FailedGet{kind}Metric",
            f"the HPA was unable to compute the replica count: unable to get {kind.lower()} metrics: "
            "no custom or external metrics API is served")


def _condition(kind: str, status: str, reason: str, message: str, previous: list[Object]) -> Object:
    before = next((c for c in previous if c.get("type") == kind), None)
    since = before.get("lastTransitionTime") if before is not None and before.get("status") == status else None
    return {"type": kind, "status": status, "lastTransitionTime": since or meta.format_time(),
            "reason": reason, "message": message}


def _merged(previous: list[Object], updates: list[Object]) -> list[Object]:
    """setCondition for each update: replace the condition of its type, keep the others in place."""
    by_type = {c["type"]: c for c in updates}
    merged = [by_type.pop(c.get("type"), c) for c in previous]
    return merged + [c for c in updates if c["type"] in by_type]


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.hpas = ctx.informers.informer(HPAS)
        self.hpas.add_handler(EventHandler.on_object(self.enqueue))

    def _target(self, hpa: Object) -> ResourceType | None:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        group, _, version = str(ref.get("apiVersion", "")).rpartition("/")
        found = _CATALOG.by_kind(group, version, ref.get("kind", ""))
        return found if found is not None and found.scale is not None else None

    async def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            return
        self.queue.add_after(key, SYNC_PERIOD)
        namespace, _ = split_key(key)
        spec = hpa.get("spec") or {}
        status = hpa.get("status") or {}
        previous = status.get("conditions") or []
        ref = spec.get("scaleTargetRef") or {}
        target = self._target(hpa)
        scale = None
        try:
            if target is not None:
                scale = await self.client.get(target, ref.get("name", ""), namespace, subresource="scale")
        except errors.NotFoundError:
            scale = None
        if target is None or scale is None:
            message = f"the HPA controller was unable to get the target's current scale: {ref.get('kind', '')}" \
                      f" {ref.get('name', '')} not found or not scalable"
            await self._write(hpa, {**status, "conditions": _merged(previous, [
                _condition("AbleToScale", "False", "FailedGetScale", message, previous)])})
            return
        current = int((scale.get("spec") or {}).get("replicas", 0))
        minimum, maximum = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        conditions = [_condition("AbleToScale", "True", "SucceededGetScale",
                                 "the HPA controller was able to get the target's current scale", previous)]
        desired, why = current, ""
        if current == 0 and minimum != 0:
            conditions.append(_condition("ScalingActive", "False", "ScalingDisabled",
                                         "scaling is disabled since the replica count of the target is zero",
                                         previous))
        elif current > maximum:
            desired, why = maximum, "Current number of replicas above Spec.MaxReplicas"
        elif current < minimum:
            desired, why = minimum, "Current number of replicas below Spec.MinReplicas"
        else:
            conditions.append(_condition("ScalingActive", "False", *metrics_unavailable(hpa), previous))
        new_status: Object = {**status, "currentReplicas": current, "desiredReplicas": desired}
        if desired != current:
            # Get and update the scale, as upstream's scale client: the role grants get/update on */scale.
            scale = await self.client.get(target, ref.get("name", ""), namespace, subresource="scale")
            scale.setdefault("spec", {})["replicas"] = desired
            await self.client.update(target, scale, subresource="scale")
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}")
            conditions[0] = _condition("AbleToScale", "True", "SucceededRescale",
                                       f"the HPA controller was able to update the target scale to {desired}",
                                       previous)
            new_status["lastScaleTime"] = meta.format_time()
        new_status["conditions"] = _merged(previous, conditions)
        await self._write(hpa, new_status)

    async def _write(self, hpa: Object, status: Object) -> None:
        if status == (hpa.get("status") or {}):
            return
        updated = meta.clone(hpa)
        updated["status"] = status
        await self.client.update_status(HPAS, updated)
