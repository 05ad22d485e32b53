"""The Endpoints controller: each Service with a selector gets an Endpoints object listing its pods.

As ``pkg/controller/endpoint`` in Kubernetes 1.32: the pods of the Service's namespace that match
its selector and have an IP become addresses (``targetRef`` to the pod, ``nodeName``, ``hostname``
when the pod's subdomain is the Service); Ready pods go to ``addresses``, the others to
``notReadyAddresses`` (all to ``addresses`` with ``publishNotReadyAddresses``); terminal pods and
pods being deleted are left out. Each Service port is resolved per pod (a named ``targetPort``
looks the container port up by name), and addresses with the same resolved ports share a subset.
Services without a selector are left alone (their Endpoints are the user's).

:func:`service_pods` and :func:`resolve_port` are shared with the EndpointSlice controller.
"""

from __future__ import annotations

from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.podcontrol import PODS, is_pod_ready
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import selector_from_object

__all__ = [
    "ENDPOINTS",
    "SERVICES",
    "EndpointsController",
    "ServiceIndex",
    "build_subsets",
    "resolve_port",
    "service_pods",
]


SERVICES = resource("", "v1", "services")
ENDPOINTS = resource("", "v1", "endpoints")
LAST_CHANGE_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def resolve_port(service_port: Object, pod: Object) -> int | None:
    """``podutil.FindPort``: a numeric targetPort as is; a named one from the pod's container ports of
    the same protocol; no targetPort means the service port."""
    target = service_port.get("targetPort")
    if target is None or target == "":
        return int(service_port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def service_pods(service: Object, pods: list[Object]) -> list[Object]:
    """The pods of the Service (same namespace, selector match), as the controllers consider them."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return []
    match = selector_from_object({"matchLabels": selector})
    namespace = service["metadata"]["namespace"]
    return [p for p in pods if p["metadata"].get("namespace") == namespace
            and match.matches(p["metadata"].get("labels") or {})]


def _pod_ip(pod: Object) -> str | None:
    status = pod.get("status") or {}
    return status.get("podIP") or next((entry.get("ip") for entry in status.get("podIPs") or ()), None)


def build_subsets(service: Object, pods: list[Object]) -> list[Object]:
    """The Endpoints subsets of ``service`` for its ``pods`` (``RepackSubsets``, sorted)."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[Object], list[Object]]] = {}
    for pod in pods:
        ip = _pod_ip(pod)
        phase = (pod.get("status") or {}).get("phase")
        if not ip or phase in ("Succeeded", "Failed"):
            continue
        if pod["metadata"].get("deletionTimestamp") and not publish_not_ready:
            continue
        address: Object = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                                                     "name": pod["metadata"]["name"],
                                                     "uid": pod["metadata"].get("uid")}}
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        pod_spec = pod.get("spec") or {}
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == service["metadata"]["name"]:
            address["hostname"] = pod_spec["hostname"]
        ports: list[tuple[str, int, str]] = []
        for service_port in spec.get("ports") or ():
            number = resolve_port(service_port, pod)
            if number is None:
                continue
            ports.append((service_port.get("name") or "", number, service_port.get("protocol") or "TCP"))
        if spec.get("ports") and not ports:
            continue
        ready_list, not_ready_list = groups.setdefault(tuple(sorted(ports)), ([], []))
        (ready_list if publish_not_ready or is_pod_ready(pod) else not_ready_list).append(address)
    app_protocols = {p.get("name") or "": p.get("appProtocol") for p in spec.get("ports") or ()}
    subsets: list[Object] = []
    for ports_key, (ready_list, not_ready_list) in sorted(groups.items()):
        subset: Object = {}
        if ready_list:
            subset["addresses"] = sorted(ready_list, key=lambda a: (a["ip"], a["targetRef"]["uid"] or ""))
        if not_ready_list:
            subset["notReadyAddresses"] = sorted(not_ready_list,
                                                 key=lambda a: (a["ip"], a["targetRef"]["uid"] or ""))
        port_list = []
        for name, number, protocol in ports_key:
            entry: Object = {"port": number, "protocol": protocol}
            if name:
                entry["name"] = name
            if app_protocols.get(name):
                entry["appProtocol"] = app_protocols[name]
            port_list.append(entry)
        if port_list:
            subset["ports"] = port_list
        subsets.append(subset)
    return subsets


def _selector_term(service: Object) -> list[str]:
    """The Services indexer: one ``<namespace>/<key>=<value>`` term of the selector (the first key).
    Every pod the Service selects carries it, so a pod's own label terms find every candidate."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return []
    first = min(selector)
    return [f"{service['metadata'].get('namespace')}/{first}={selector[first]}"]


def _label_terms(pod: Object) -> list[str]:
    """The pods indexer: a ``<namespace>/<key>=<value>`` term per label."""
    namespace = pod["metadata"].get("namespace")
    return [f"{namespace}/{key}={value}" for key, value in (pod["metadata"].get("labels") or {}).items()]


class ServiceIndex:
    """Which Services select a pod and which pods a Service selects, from informer indexes.

    kube's controllers ask the Service lister for the pod's namespace (``GetPodServiceMemberships``)
    and list the namespace's pods by selector; both scanned everything here (every Service per pod
    event, every pod per sync: 10,000 x 150,000 at issue 16's scale). Both sides are indexed by a
    ``namespace/key=value`` term, so each costs the candidates that share a label with the other,
    which the full selector then checks exactly."""

    def __init__(self, services: Any, pods: Any) -> None:
        self.services = services
        self.pods = pods
        services.add_indexer("selector-term", _selector_term)
        pods.add_indexer("label-term", _label_terms)

    def keys_for(self, *pods: Object) -> set[str]:
        keys: set[str] = set()
        for pod in pods:
            for term in _label_terms(pod):
                for service in self.services.by_index("selector-term", term):
                    if service_pods(service, [pod]):
                        keys.add(object_key(service))
        return keys

    def pods_of(self, service: Object) -> list[Object]:
        """:func:`service_pods` of the Service among the pods informer's."""
        terms = _selector_term(service)
        return service_pods(service, self.pods.by_index("label-term", terms[0])) if terms else []


class EndpointsController(Controller):
    name = "endpoints"
    #: kube-controller-manager's ``--concurrent-service-endpoint-syncs`` default: a rollout at 10,000
    #: Services queues thousands of Services at once, each sync one write round trip.
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer(SERVICES)
        self.pods = ctx.informers.informer(PODS)
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.index = ServiceIndex(self.services, self.pods)
        self.services.add_handler(EventHandler.on_object(self.enqueue, self.enqueue))
        self.pods.add_handler(EventHandler(self._pods_changed, self._pods_changed, self._pods_changed))
        # A change of an Endpoints object retries a sync that met it stale (Controller.retry_now).
        self.endpoints.add_handler(EventHandler.on_object(lambda obj: self.retry_now(object_key(obj)),
                                                          self.enqueue))

    def _pods_changed(self, *pods: Object) -> None:
        for key in self.index.keys_for(*pods):
            self.enqueue_key(key)

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        if service is None:
            # the Service is gone: its Endpoints go too (no ownerReference carries them)
            if self.endpoints.get(key) is not None:
                try:
                    await self.client.delete(ENDPOINTS, name, namespace)
                except errors.NotFoundError:
                    pass
            return
        spec = service.get("spec") or {}
        if not spec.get("selector") or service["metadata"].get("deletionTimestamp"):
            return
        subsets = build_subsets(service, self.index.pods_of(service))
        labels = dict(service["metadata"].get("labels") or {})
        if spec.get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        else:
            labels.pop(HEADLESS_LABEL, None)
        current = self.endpoints.get(key)
        if current is not None and (current.get("subsets") or []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels:
            return
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        annotations[LAST_CHANGE_ANNOTATION] = meta.format_time()
        if current is None:
            body: Object = {"apiVersion": "v1", "kind": "Endpoints",
                            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                                         "annotations": annotations},
                            "subsets": subsets}
            await self.client.create(ENDPOINTS, body, namespace)
            return
        updated = {**current, "subsets": subsets,
                   "metadata": {**current["metadata"], "labels": labels, "annotations": annotations}}
        await self.client.update(ENDPOINTS, updated)
