"""The controller manager: builds the shared client and informers, then runs every controller.

Controllers are listed by name in :data:`CONTROLLERS` (``--controllers`` picks a subset, like
kube-controller-manager's flag). They share one :class:`InformerFactory`, so each resource is
listed and watched once however many controllers read it; its informers cache objects without their
managedFields, which no controller reads (kube-controller-manager's informer transform), and with
equal strings shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import Any

from pilothouse.client.informer import InformerFactory, trim_for_cache
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.credentials import controller_context

__all__ = ["CONTROLLERS", "ControllerManager"]

log = logging.getLogger("pilothouse.controllers")

#: name -> "module:Class". Order is start order.
CONTROLLERS: dict[str, str] = {
    "replicaset": "pilothouse.components.controllers.replicaset:ReplicaSetController",
    "replicationcontroller": "pilothouse.components.controllers.replication:ReplicationManager",
    "deployment": "pilothouse.components.controllers.deployment:DeploymentController",
    "garbagecollector": "pilothouse.components.controllers.garbagecollector:GarbageCollector",
    "namespace": "pilothouse.components.controllers.namespace:NamespaceController",
    "serviceaccount": "pilothouse.components.controllers.serviceaccount:ServiceAccountController",
    "root-ca-cert-publisher": "pilothouse.components.controllers.rootcacertpublisher:RootCACertPublisher",
    "daemonset": "pilothouse.components.controllers.daemonset:DaemonSetController",
    "statefulset": "pilothouse.components.controllers.statefulset:StatefulSetController",
    "job": "pilothouse.components.controllers.job:JobController",
    "cronjob": "pilothouse.components.controllers.cronjob:CronJobController",
    "ttl-after-finished": "pilothouse.components.controllers.ttlafterfinished:TTLAfterFinishedController",
    "endpoints": "pilothouse.components.controllers.endpoints:EndpointsController",
    "endpointslice": "pilothouse.components.controllers.endpointslice:EndpointSliceController",
    "nodelifecycle": "pilothouse.components.controllers.nodelifecycle:NodeLifecycleController",
    "podgc": "pilothouse.components.controllers.podgc:PodGCController",
    "clusterrole-aggregation":
        "pilothouse.components.controllers.clusterroleaggregation:ClusterRoleAggregationController",
    "resourcequota": "pilothouse.components.controllers.resourcequota:ResourceQuotaController",
    "persistentvolume-binder": "pilothouse.components.controllers.volumebinder:VolumeBinderController",
    "apiservice-availability": "pilothouse.components.controllers.apiservice:APIServiceAvailabilityController",
    "flowschema-status": "pilothouse.components.controllers.flowschema:FlowSchemaStatusController",
    "horizontal-pod-autoscaler": "pilothouse.components.controllers.hpa:HorizontalPodAutoscalerController",
    "csrapproving": "pilothouse.components.controllers.csrapproving:CSRApprovingController",
    "csrsigning": "pilothouse.components.controllers.csrsigning:CSRSigningController",
    "bootstrapsigner": "pilothouse.components.controllers.bootstrapsigner:BootstrapSigner",
    "tokencleaner": "pilothouse.components.controllers.tokencleaner:TokenCleaner",
    "nodeipam": "pilothouse.components.controllers.nodeipam:NodeIPAMController",
}


class ControllerManager:
    def __init__(self, server: str | ClientConfig, *, controllers: list[str] | None = None,
                 options: dict[str, Any] | None = None, use_service_account_credentials: bool = True) -> None:
        self.client = APIClient(server, user_agent="pilothouse-controller-manager")
        # CreateControllerContext (cmd/kube-controller-manager/app/controllermanager.go) sets a trim of
        # managedFields on the typed and the metadata informer factories: every cached object, every
        # resource. Sharing equal strings is pilothouse's own saving (see share_strings).
        self.informers = InformerFactory(self.client, transform=trim_for_cache)
        self.ctx = ControllerContext(self.client, self.informers, options=options or {})
        names = controllers or list(CONTROLLERS)
        self.controllers: list[Controller] = []
        #: Each controller's own service-account client (``--use-service-account-credentials``).
        self.account_clients: dict[str, APIClient] = {}
        for name in names:
            module_name, _, class_name = CONTROLLERS[name].partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            ctx = controller_context(self.ctx, name, self.account_clients) if use_service_account_credentials \
                else self.ctx
            self.controllers.append(cls(ctx))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()
        self._tasks = [asyncio.create_task(c.run(), name=f"controller-{c.name}") for c in self.controllers]
        log.info("controller manager running: %s", ", ".join(c.name for c in self.controllers))

    async def stop(self) -> None:
        for controller in self.controllers:
            await controller.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.informers.stop()
        for client in self.account_clients.values():
            await client.close()
        await self.client.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
