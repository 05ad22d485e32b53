"""The horizontal pod autoscaler (autoscaling/v2), as kube-controller-manager's
(pkg/controller/podautoscaler/horizontal.go, ``reconcileAutoscaler``): read the target's scale, keep
it within ``minReplicas``..``maxReplicas``, and otherwise recommend a replica count from each metric
(Resource and ContainerResource metrics from ``metrics.k8s.io`` PodMetrics, hpa_replicas.py), take the
largest, stabilise and rate-limit it (hpa_behavior.py) and write it through the target's scale
subresource, with upstream's status, conditions and events. Custom, object and external metrics need
APIs pilothouse does not serve and are reported as upstream reports an unreachable metrics API. Every
HPA is looked at again every ``--horizontal-pod-autoscaler-sync-period`` (15 s by default).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from pilothouse.client import errors
from pilothouse.client.discovery import ServerResources
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.hpa_behavior import DOWNSCALE_STABILIZATION, History, normalize
from pilothouse.components.controllers.hpa_replicas import (
    TOLERANCE,
    MetricsError,
    PodSample,
    Recommendation,
    milli,
    raw_replicas,
    utilization_replicas,
)
from pilothouse.components.controllers.replicaset import by_namespace
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType
from pilothouse.machinery.kinds.quantity import format_quantity
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import parse_label_selector

__all__ = ["HorizontalPodAutoscalerController", "pod_samples"]


HPAS = resource("autoscaling", "v2", "horizontalpodautoscalers")
PODS = resource("", "v1", "pods")
POD_METRICS = resource("metrics.k8s.io", "v1beta1", "pods")
SYNC_PERIOD = 15.0
_CATALOG = ResourceRegistry(BUILTIN_RESOURCES)
_NO_METRICS = "no metrics returned from resource metrics API"


def _source(metric: Object) -> Object | None:
    return metric.get("resource") or metric.get("containerResource")


def _failure(metric: Object, detail: str) -> tuple[str, str, str]:
    """A metric that gave no recommendation: (reason, the error as the condition and the event say
    it, the error as FailedComputeMetricsReplicas wraps it), as upstream's computeStatusFor*Metric."""
    source = _source(metric)
    if source is not None:
        return "FailedGetResourceMetric", detail, f"failed to get {source.get('name', '')} utilization: {detail}"
    kind = str(metric.get("type", ""))
    detail = f"unable to get {kind.lower()} metric: no custom or external metrics API is served"
    return f"FailedGet{kind}Metric", detail, f"failed to get {kind.lower()} metric value: {detail}"


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


class _Invalid(Exception):
    """No metric gave a recommendation: the FailedComputeMetricsReplicas message and the
    ScalingActive=False (reason, message)."""

    def __init__(self, message: str, condition: tuple[str, str]) -> None:
        super().__init__(message)
        self.message, self.condition = message, condition


def _seconds(window: Any) -> float:
    try:
        return float(str(window).removesuffix("s"))
    except ValueError:
        return 0.0


def pod_samples(items: list[Object], resource_name: str, container: str | None = None) -> dict[str, PodSample]:
    """PodMetrics items as the metrics client reads them: the pod's usage summed over its containers
    (one container for a ContainerResource metric), milli-units."""
    samples: dict[str, PodSample] = {}
    for item in items:
        containers = [c for c in item.get("containers") or [] if container is None or c.get("name") == container]
        if not containers or any(resource_name not in (c.get("usage") or {}) for c in containers):
            continue  # upstream drops a pod missing the resource in any container
        stamp = datetime.fromisoformat(str(item.get("timestamp")).replace("Z", "+00:00"))
        samples[item["metadata"]["name"]] = PodSample(
            sum(milli(c["usage"][resource_name]) for c in containers), stamp,
            timedelta(seconds=_seconds(item.get("window"))))
    return samples


def _milli_quantity(value: int) -> str:
    return format_quantity(Fraction(value, 1000))


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.hpas = ctx.informers.informer(HPAS)
        # Status writes (ours) do not wake an HPA: it is looked at once per sync period, as upstream's
        # queue rate-limits every HPA to the period; a new HPA or a changed spec is looked at at once.
        self.hpas.add_handler(EventHandler(self.enqueue, self._updated))
        # The pods from the shared cache, as upstream's pod lister: no list request per HPA and sync.
        self.pods = ctx.informers.informer(PODS)
        self.pods.add_indexer("namespace", by_namespace)
        options = ctx.options
        self.period = float(options.get("horizontal_pod_autoscaler_sync_period", SYNC_PERIOD))
        self.tolerance = float(options.get("horizontal_pod_autoscaler_tolerance", TOLERANCE))
        self.downscale_stabilization = float(options.get("horizontal_pod_autoscaler_downscale_stabilization",
                                                         DOWNSCALE_STABILIZATION))
        self.discovery = ServerResources(self.client)
        #: Recent recommendations and rescales per HPA key, for stabilisation and scaling policies.
        self.history: dict[str, History] = {}

    def _updated(self, old: Object, new: Object) -> None:
        if old["metadata"].get("generation") != new["metadata"].get("generation"):
            self.enqueue(new)

    async def _target(self, hpa: Object) -> ResourceType | None:
        """The resource of ``scaleTargetRef``: a built-in one with a scale subresource, or any other
        the server serves (a custom resource's scale subresource answers 404 if it has none), found
        through discovery as upstream's RESTMapper finds it."""
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        group, _, version = str(ref.get("apiVersion", "")).rpartition("/")
        found = _CATALOG.by_kind(group, version, ref.get("kind", ""))
        if found is not None:
            return found if found.scale is not None else None
        await self.discovery.all()
        if self.discovery.by_kind(group, version, ref.get("kind", "")) is None:
            await self.discovery.all(max_age=5.0)  # a kind defined since the last look
        return self.discovery.by_kind(group, version, ref.get("kind", ""))

    async def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.history.pop(key, None)
            return
        self.queue.add_after(key, self.period)
        namespace, _ = split_key(key)
        spec = hpa.get("spec") or {}
        status = hpa.get("status") or {}
        previous = status.get("conditions") or []
        ref = spec.get("scaleTargetRef") or {}
        target = await self._target(hpa)
        scale = None
        try:
            if target is not None:
                scale = await self.client.get(target, ref.get("name", ""), namespace, subresource="scale")
        except errors.NotFoundError:
            scale = None
        if target is None or scale is None:
            message = f"the HPA controller was unable to get the target's current scale: {ref.get('kind', '')}" \
                      f" {ref.get('name', '')} not found or not scalable"
            self.recorder.event(hpa, "Warning", "FailedGetScale", message)
            await self._write(hpa, {**status, "conditions": _merged(previous, [
                _condition("AbleToScale", "False", "FailedGetScale", message, previous)])})
            return
        current = int((scale.get("spec") or {}).get("replicas", 0))
        history = self.history.setdefault(key, History())
        history.record_initial(time.monotonic(), current)
        minimum, maximum = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        conditions = [_condition("AbleToScale", "True", "SucceededGetScale",
                                 "the HPA controller was able to get the target's current scale", previous)]
        new_status: Object = {**status, "currentReplicas": current}
        desired, why = current, ""
        if current == 0 and minimum != 0:
            desired = 0
            conditions.append(_condition("ScalingActive", "False", "ScalingDisabled",
                                         "scaling is disabled since the replica count of the target is zero",
                                         previous))
        elif current > maximum:
            desired, why = maximum, "Current number of replicas above Spec.MaxReplicas"
        elif current < minimum:
            desired, why = minimum, "Current number of replicas below Spec.MinReplicas"
        else:
            try:
                proposal, metric_name, statuses = await self._from_metrics(hpa, scale, namespace, current)
            except _Invalid as invalid:
                # Upstream keeps the last desired count and metric statuses, and says why.
                self.recorder.event(hpa, "Warning", "FailedComputeMetricsReplicas", invalid.message)
                conditions.append(_condition("ScalingActive", "False", *invalid.condition, previous))
                new_status["conditions"] = _merged(previous, conditions)
                await self._write(hpa, new_status)
                return
            new_status["currentMetrics"] = statuses
            conditions.append(_condition(
                "ScalingActive", "True", "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {metric_name}", previous))
            limited = normalize(spec, current, proposal, history, time.monotonic(), self.downscale_stabilization)
            conditions[0] = _condition("AbleToScale", "True", limited.able_reason, limited.able_message, previous)
            conditions.append(_condition("ScalingLimited", "True" if limited.limited else "False",
                                         limited.limited_reason, limited.limited_message, previous))
            desired = limited.replicas
            why = f"{metric_name} above target" if proposal > current else "All metrics below target"
        new_status["desiredReplicas"] = desired
        if desired != current:
            # Get and update the scale, as upstream's scale client: the role grants get/update on */scale.
            scale = await self.client.get(target, ref.get("name", ""), namespace, subresource="scale")
            scale.setdefault("spec", {})["replicas"] = desired
            await self.client.update(target, scale, subresource="scale")
            history.record_rescale(time.monotonic(), current, desired)
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}")
            conditions[0] = _condition("AbleToScale", "True", "SucceededRescale",
                                       f"the HPA controller was able to update the target scale to {desired}",
                                       previous)
            new_status["lastScaleTime"] = meta.format_time()
        new_status["conditions"] = _merged(previous, conditions)
        await self._write(hpa, new_status)

    async def _from_metrics(self, hpa: Object, scale: Object, namespace: str | None,
                            current: int) -> tuple[int, str, list[Object]]:
        """``computeReplicasForMetrics``: the largest recommendation of the metrics that gave one, its
        metric's name and every metric's status; :class:`_Invalid` when none did."""
        selector = (scale.get("status") or {}).get("selector")
        if not selector:
            self.recorder.event(hpa, "Warning", "SelectorRequired", "selector is required")
            raise _Invalid("selector is required", ("InvalidSelector", "the HPA target's scale is missing a selector"))
        try:
            matching = parse_label_selector(selector)
        except StatusError as error:
            message = f"couldn't convert selector into a corresponding internal selector object: {error.message}"
            self.recorder.event(hpa, "Warning", "InvalidSelector", message)
            raise _Invalid(message, ("InvalidSelector", message)) from None
        pods = [p for p in self.pods.by_index("namespace", namespace or "")
                if matching.matches(p["metadata"].get("labels"))]
        try:
            listed = (await self.client.list(POD_METRICS, namespace, label_selector=selector)).get("items") or []
        except errors.APIError as error:
            listed, fetch_error = [], str(error)
        else:
            fetch_error = _NO_METRICS
        specs = (hpa.get("spec") or {}).get("metrics") or []
        best: tuple[int, str] | None = None
        statuses: list[Object] = []
        first: tuple[str, str, str] | None = None
        for metric in specs:
            try:
                replicas, name, metric_status = self._one(metric, current, pods, listed, fetch_error)
            except MetricsError as error:
                reason, detail, wrapped = _failure(metric, str(error))
                self.recorder.event(hpa, "Warning", reason, detail)
                first = first or (reason, detail, wrapped)
                statuses.append({"type": ""})
                continue
            statuses.append(metric_status)
            if best is None or replicas > best[0]:
                best = (replicas, name)
        if best is None:
            reason, detail, wrapped = first or ("FailedComputeMetricsReplicas", "no metrics", "no metrics")
            invalid = len(specs) - sum(1 for s in statuses if s.get("type"))
            raise _Invalid(f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {wrapped}",
                           (reason, f"the HPA was unable to compute the replica count: {detail}"))
        return best[0], best[1], statuses

    def _one(self, metric: Object, current: int, pods: list[Object], listed: list[Object],
             fetch_error: str) -> tuple[int, str, Object]:
        source = _source(metric)
        if source is None:
            raise MetricsError("not served")
        kind = "resource" if metric.get("resource") else "containerResource"
        name = str(source.get("name", ""))
        container = source.get("container") if kind == "containerResource" else None
        target = source.get("target") or {}
        if target.get("averageValue") is None and target.get("averageUtilization") is None:
            raise MetricsError("invalid resource metric source: neither a utilization target nor a value target "
                               "was set")
        samples = pod_samples(listed, name, container)
        if not samples:
            raise MetricsError(f"unable to get metrics for resource {name}: {fetch_error}")
        now = datetime.now(UTC)
        current_status: Object
        if target.get("averageValue") is not None:
            rec: Recommendation = raw_replicas(current, milli(target["averageValue"]), pods, samples, name, now,
                                               self.tolerance)
            current_status = {"averageValue": _milli_quantity(rec.average)}
        else:
            rec = utilization_replicas(current, int(target["averageUtilization"]), pods, samples, name, now,
                                       self.tolerance, container)
            current_status = {"averageUtilization": rec.utilization, "averageValue": _milli_quantity(rec.average)}
        label = f"{name} {'container ' if container is not None else ''}resource" + (
            " utilization (percentage of request)" if rec.utilization is not None else "")
        body: Object = {"name": name, "current": current_status}
        if container is not None:
            body["container"] = container
        return rec.replicas, label, {"type": metric.get("type"), kind: body}

    async def _write(self, hpa: Object, status: Object) -> None:
        status = {k: v for k, v in status.items() if v is not None}
        if status == (hpa.get("status") or {}):
            return
        updated = meta.clone(hpa)
        updated["status"] = status
        await self.client.update_status(HPAS, updated)
