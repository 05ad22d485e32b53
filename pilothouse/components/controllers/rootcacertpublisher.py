"""The root CA certificate publisher: a ``kube-root-ca.crt`` ConfigMap in every namespace, holding
the cluster CA bundle under ``ca.crt``, which the ``kube-api-access-*`` volume of every pod projects
so that in-cluster clients can verify the API server
(``pkg/controller/certificates/rootcacertpublisher/publisher.go``).

The bundle is the file ``--root-ca-file`` names (kube-controller-manager's flag;
``pilothouse server`` passes ``<data-dir>/pki/ca.crt``, the cluster CA). Without that file the
controller publishes nothing and says so once: the node agent treats the ConfigMap as optional.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery.meta import Object

__all__ = ["CONFIGMAP", "DESCRIPTION", "DESCRIPTION_ANNOTATION", "RootCACertPublisher"]

log = logging.getLogger("pilothouse.controllers.rootcacertpublisher")


NAMESPACES = resource("", "v1", "namespaces")
CONFIGMAPS = resource("", "v1", "configmaps")
CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


def _read_bundle(path: str) -> str | None:
    if not path:
        log.info("no --root-ca-file: the %s ConfigMaps are not published", CONFIGMAP)
        return None
    try:
        return Path(path).read_text()
    except OSError as error:
        log.info("root CA file %s unreadable (%s): the %s ConfigMaps are not published", path, error, CONFIGMAP)
        return None


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.bundle = _read_bundle(str(ctx.options.get("root_ca_file") or ""))
        self.ns_informer: Informer = ctx.informers.informer(NAMESPACES)
        # Only the published ConfigMaps, not every ConfigMap of the cluster.
        self.cm_informer: Informer = ctx.informers.informer(CONFIGMAPS, field_selector=f"metadata.name={CONFIGMAP}")
        if self.bundle is None:
            return
        self.ns_informer.add_handler(EventHandler.on_object(self._ns_changed))
        self.cm_informer.add_handler(EventHandler.on_object(self._cm_changed, self._cm_changed))

    def _ns_changed(self, ns: Object) -> None:
        if (ns.get("status") or {}).get("phase", "Active") == "Active":
            self.enqueue_key(ns["metadata"]["name"])

    def _cm_changed(self, cm: Object) -> None:
        self.enqueue_key(cm["metadata"].get("namespace", ""))

    async def sync(self, key: str) -> None:
        if self.bundle is None:
            return
        ns = self.ns_informer.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        data = {"ca.crt": self.bundle}
        current = self.cm_informer.get(f"{key}/{CONFIGMAP}")
        if current is None:
            try:
                await self.client.create(CONFIGMAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIGMAP, "namespace": key,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, key)
            except errors.AlreadyExistsError:
                pass  # the cache was late; its event brings the key back
            except errors.APIError as error:
                # A namespace gone or terminating is not retried.
                if error.code == 404 or errors.has_cause(error, errors.NAMESPACE_TERMINATING):
                    return
                raise
            return
        annotations = current["metadata"].get("annotations") or {}
        if current.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION):
            return
        updated = {**current, "data": data,
                   "metadata": {**current["metadata"], "annotations": {**annotations,
                                                                       DESCRIPTION_ANNOTATION: DESCRIPTION}}}
        await self.client.update(CONFIGMAPS, updated)
