"""The EndpointSlice controller: each Service with a selector gets EndpointSlices of its pods.

As ``pkg/controller/endpointslice`` in Kubernetes 1.32, simplified to a full rebuild per sync:
pods with an IPv4 address are grouped by their resolved port set, each group cut into slices of at
most 100 endpoints (``--max-endpoints-per-slice``). Slices are owned by the Service, named
``<service>-<random>`` and labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``. Endpoint conditions:
``ready`` (pod Ready and not terminating, or ``publishNotReadyAddresses``), ``serving`` (pod Ready),
``terminating``. A Service without pods keeps one empty placeholder slice. Existing slices are
reused in place when their content changes, extra ones deleted.
"""

from __future__ import annotations

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.endpoints import (
    LAST_CHANGE_ANNOTATION,
    SERVICES,
    ServiceIndex,
    resolve_port,
)
from pilothouse.components.controllers.podcontrol import PODS, is_pod_ready, new_controller_ref
from pilothouse.machinery.meta import Object

__all__ = ["MANAGED_BY", "SERVICE_NAME_LABEL", "EndpointSliceController", "desired_slices",
           "last_change_trigger_time"]


ENDPOINTSLICES = resource("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS = 100


def _ipv4(pod: Object) -> str | None:
    status = pod.get("status") or {}
    candidates = [status.get("podIP"), *[e.get("ip") for e in status.get("podIPs") or ()]]
    return next((ip for ip in candidates if ip and ":" not in ip), None)


def last_change_trigger_time(service: Object, pods: list[Object]) -> dict[str, str]:
    """``endpoints.kubernetes.io/last-change-trigger-time`` for a slice being written: when the
    change it carries happened (the trigger time tracker's: the newest pod readiness change, else
    the Service's creation), which kube-proxy's network programming latency is measured from."""
    times = [c.get("lastTransitionTime") or "" for pod in pods
             for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"]
    latest = max((t for t in times if t), default="") or service["metadata"].get("creationTimestamp") or ""
    return {LAST_CHANGE_ANNOTATION: latest} if latest else {}


def desired_slices(service: Object, pods: list[Object]) -> list[tuple[list[Object], list[Object]]]:
    """(ports, endpoints) per wanted slice, in a stable order."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int, str, str], ...], list[Object]] = {}
    for pod in pods:
        ip = _ipv4(pod)
        phase = (pod.get("status") or {}).get("phase")
        if not ip or phase in ("Succeeded", "Failed"):
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ports: list[tuple[str, int, str, str]] = []
        for service_port in spec.get("ports") or ():
            number = resolve_port(service_port, pod)
            if number is None:
                continue
            ports.append((service_port.get("name") or "", number, service_port.get("protocol") or "TCP",
                          service_port.get("appProtocol") or ""))
        ready = is_pod_ready(pod)
        endpoint: Object = {
            "addresses": [ip],
            "conditions": {"ready": publish_not_ready or (ready and not terminating), "serving": ready,
                           "terminating": terminating},
            "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                          "name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid")},
        }
        pod_spec = pod.get("spec") or {}
        if pod_spec.get("nodeName"):
            endpoint["nodeName"] = pod_spec["nodeName"]
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == service["metadata"]["name"]:
            endpoint["hostname"] = pod_spec["hostname"]
        groups.setdefault(tuple(sorted(ports)), []).append(endpoint)
    result: list[tuple[list[Object], list[Object]]] = []
    for key, endpoints in sorted(groups.items()):
        port_list = []
        for name, number, protocol, app_protocol in key:
            entry: Object = {"name": name, "port": number, "protocol": protocol}
            if app_protocol:
                entry["appProtocol"] = app_protocol
            port_list.append(entry)
        endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
        for start in range(0, len(endpoints), MAX_ENDPOINTS):
            result.append((port_list, endpoints[start:start + MAX_ENDPOINTS]))
    if not result:
        result.append(([], []))  # the placeholder slice
    return result


class EndpointSliceController(Controller):
    name = "endpointslice"
    #: kube-controller-manager's ``--concurrent-service-endpoint-syncs`` default: a rollout at 10,000
    #: Services queues thousands of Services at once, each sync one write round trip.
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer(SERVICES)
        self.pods = ctx.informers.informer(PODS)
        self.slices = ctx.informers.informer(ENDPOINTSLICES)
        self.slices.add_indexer("service", self._slice_service)
        self.index = ServiceIndex(self.services, self.pods)
        self.services.add_handler(EventHandler.on_object(self.enqueue, self.enqueue))
        self.pods.add_handler(EventHandler(self._pods_changed, self._pods_changed, self._pods_changed))
        self.slices.add_handler(EventHandler.on_object(self._slice_changed, self._slice_deleted))

    @staticmethod
    def _slice_service(obj: Object) -> list[str]:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not labels.get(SERVICE_NAME_LABEL):
            return []
        return [f"{obj['metadata']['namespace']}/{labels[SERVICE_NAME_LABEL]}"]

    def _slice_changed(self, obj: Object) -> None:
        for key in self._slice_service(obj):
            self.retry_now(key)

    def _slice_deleted(self, obj: Object) -> None:
        for key in self._slice_service(obj):
            self.enqueue_key(key)

    def _pods_changed(self, *pods: Object) -> None:
        for key in self.index.keys_for(*pods):
            self.enqueue_key(key)

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        service = self.services.get(key)
        existing = sorted(self.slices.by_index("service", key), key=lambda s: s["metadata"]["name"])
        if service is None or not (service.get("spec") or {}).get("selector"):
            # ownerReferences let the garbage collector remove slices of deleted Services; without a
            # selector the slices are no longer ours to keep
            if service is not None:
                for stale in existing:
                    await self._delete(stale)
            return
        if service["metadata"].get("deletionTimestamp"):
            return
        labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
                  if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
        labels[SERVICE_NAME_LABEL] = name
        labels[MANAGED_BY_LABEL] = MANAGED_BY
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        owner = new_controller_ref(service, "v1", "Service")
        pods = self.index.pods_of(service)
        wanted = desired_slices(service, pods)
        trigger = last_change_trigger_time(service, pods)
        unmatched = list(existing)
        pending: list[tuple[list[Object], list[Object]]] = []
        # keep slices that already hold exactly a wanted content
        for ports, endpoints in wanted:
            same = next((s for s in unmatched if (s.get("ports") or []) == ports
                         and (s.get("endpoints") or []) == endpoints
                         and (s["metadata"].get("labels") or {}) == labels), None)
            if same is not None:
                unmatched.remove(same)
            else:
                pending.append((ports, endpoints))
        for ports, endpoints in pending:
            if unmatched:
                current = unmatched.pop(0)
                body = {**current, "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
                        "metadata": {**current["metadata"], "labels": labels,
                                     "annotations": {**(current["metadata"].get("annotations") or {}), **trigger}}}
                await self.client.update(ENDPOINTSLICES, body)
                continue
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": f"{name[:57]}-", "namespace": namespace, "labels": labels,
                                 "ownerReferences": [owner], **({"annotations": trigger} if trigger else {})},
                    "addressType": "IPv4", "ports": ports, "endpoints": endpoints}
            await self.client.create(ENDPOINTSLICES, body, namespace)
        for stale in unmatched:
            await self._delete(stale)

    async def _delete(self, obj: Object) -> None:
        try:
            await self.client.delete(ENDPOINTSLICES, obj["metadata"]["name"], obj["metadata"]["namespace"])
        except errors.NotFoundError:
            pass
