"""The service account controller: a ``default`` ServiceAccount in every active namespace.

As ``pkg/controller/serviceaccount/serviceaccounts_controller.go``: namespace events and the deletion
of a ``default`` ServiceAccount enqueue the namespace; ``sync`` creates the account when the cache
lacks it (AlreadyExists means the cache was late). Namespaces being deleted are left alone.
"""

from __future__ import annotations

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery.meta import Object

__all__ = ["SERVICEACCOUNTS", "ServiceAccountController"]


NAMESPACES = resource("", "v1", "namespaces")
SERVICEACCOUNTS = resource("", "v1", "serviceaccounts")
DEFAULT = "default"


class ServiceAccountController(Controller):
    name = "serviceaccount"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ns_informer: Informer = ctx.informers.informer(NAMESPACES)
        self.sa_informer: Informer = ctx.informers.informer(SERVICEACCOUNTS)
        self.ns_informer.add_handler(EventHandler.on_object(self._ns_changed))
        self.sa_informer.add_handler(EventHandler(on_delete=self._sa_deleted))

    def _ns_changed(self, ns: Object) -> None:
        self.enqueue_key(ns["metadata"]["name"])

    def _sa_deleted(self, sa: Object) -> None:
        if sa["metadata"].get("name") == DEFAULT:
            self.enqueue_key(sa["metadata"].get("namespace", ""))

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.sa_informer.get(f"{key}/{DEFAULT}") is not None:
            return
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": key}}
        try:
            await self.client.create(SERVICEACCOUNTS, account, key)
        except errors.AlreadyExistsError:
            pass
        except errors.APIError as error:
            if errors.has_cause(error, errors.NAMESPACE_TERMINATING) or error.code == 404:
                return
            raise
