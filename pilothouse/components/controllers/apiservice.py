"""APIService availability, as kube-aggregator's ``APIServiceAvailableConditionController``
(staging/src/k8s.io/kube-aggregator/pkg/controllers/status/available_controller.go) reports it.

A local APIService (no ``spec.service``: pilothouse serves the group itself) is Available, reason
``Local``. One backed by a Service is checked as the aggregator checks it: the Service must exist
(else ``ServiceNotFound``) and have ready endpoints (else ``MissingEndpoints``); past that the
aggregator would call the server's discovery, and pilothouse does not proxy to aggregated API
servers yet, so the answer is ``FailedDiscoveryCheck`` and says why.
"""

from __future__ import annotations

from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["APIServiceAvailabilityController", "availability"]


APISERVICES = resource("apiregistration.k8s.io", "v1", "apiservices")
SERVICES = resource("", "v1", "services")
ENDPOINTS = resource("", "v1", "endpoints")


def availability(apiservice: Object, service: Object | None, endpoints: Object | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Available condition."""
    backend = (apiservice.get("spec") or {}).get("service")
    if backend is None:
        return "True", "Local", "Local APIServices are always available"
    namespace, name = backend.get("namespace", ""), backend.get("name", "")
    if service is None:
        return "False", "ServiceNotFound", f'service/{name} in "{namespace}" is not present'
    ready = any(subset.get("addresses") for subset in (endpoints or {}).get("subsets") or ())
    if not ready:
        return "False", "MissingEndpoints", f'endpoints for service/{name} in "{namespace}" have no addresses'
    return ("False", "FailedDiscoveryCheck",
            f"pilothouse does not proxy to aggregated API servers yet (service/{name} in \"{namespace}\")")


class APIServiceAvailabilityController(Controller):
    name = "apiservice-availability"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.apiservices = ctx.informers.informer(APISERVICES)
        self.services = ctx.informers.informer(SERVICES)
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.apiservices.add_handler(EventHandler.on_object(self.enqueue))
        for informer in (self.services, self.endpoints):
            informer.add_handler(EventHandler.on_object(self._backend_changed, self._backend_changed))

    def _backend_changed(self, obj: Object) -> None:
        key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
        for apiservice in self.apiservices.list():
            backend = (apiservice.get("spec") or {}).get("service") or {}
            if (backend.get("namespace"), backend.get("name")) == key:
                self.enqueue(apiservice)

    async def sync(self, key: str) -> None:
        apiservice = self.apiservices.get(key)
        if apiservice is None:
            return
        backend = (apiservice.get("spec") or {}).get("service") or {}
        backend_key = f"{backend.get('namespace', '')}/{backend.get('name', '')}"
        status, reason, message = availability(apiservice, self.services.get(backend_key),
                                               self.endpoints.get(backend_key))
        conditions = (apiservice.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "Available"), None)
        if current is not None and (current.get("status"), current.get("reason"), current.get("message")) == (
                status, reason, message):
            return
        since = meta.format_time()
        if current is not None and current.get("status") == status:
            since = current.get("lastTransitionTime") or since
        condition = {"type": "Available", "status": status, "reason": reason, "message": message,
                     "lastTransitionTime": since}
        updated = meta.clone(apiservice)
        updated["status"] = {**(apiservice.get("status") or {}),
                             "conditions": [c for c in conditions if c.get("type") != "Available"] + [condition]}
        await self.client.update_status(APISERVICES, updated)
