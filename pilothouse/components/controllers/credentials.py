"""Which identity each controller acts as: kube-controller-manager's ``--use-service-account-credentials``.

With it (pilothouse's default, as kubeadm sets it) the shared informers keep the controller manager's
own identity (``system:kube-controller-manager`` may list and watch everything) and every controller
writes as its own service account in ``kube-system``, the account upstream's descriptor names and
``controller_policy.go`` binds: ``system:controller:<account>`` grants that controller's writes and no
others. Without it every controller acts as the manager itself, which RBAC lets write almost nothing.
"""

from __future__ import annotations

from dataclasses import replace

from pilothouse.client.rest import APIClient
from pilothouse.client.satokensource import ServiceAccountTokenSource, bearer_only
from pilothouse.components.controllers.base import ControllerContext

__all__ = ["SERVICE_ACCOUNTS", "controller_context"]

#: controller name (manager.CONTROLLERS) -> its service account in kube-system, as kube-controller-manager
#: names them (``ClientBuilder.ClientOrDie("...")`` in cmd/kube-controller-manager/app).
SERVICE_ACCOUNTS: dict[str, str] = {
    "replicaset": "replicaset-controller",
    "replicationcontroller": "replication-controller",
    "deployment": "deployment-controller",
    "garbagecollector": "generic-garbage-collector",
    "namespace": "namespace-controller",
    "serviceaccount": "service-account-controller",
    "root-ca-cert-publisher": "root-ca-cert-publisher",
    "daemonset": "daemon-set-controller",
    "statefulset": "statefulset-controller",
    "job": "job-controller",
    "cronjob": "cronjob-controller",
    "ttl-after-finished": "ttl-after-finished-controller",
    "endpoints": "endpoint-controller",
    "endpointslice": "endpointslice-controller",
    "nodelifecycle": "node-controller",
    "podgc": "pod-garbage-collector",
    "clusterrole-aggregation": "clusterrole-aggregation-controller",
    "resourcequota": "resourcequota-controller",
    "persistentvolume-binder": "persistent-volume-binder",
    "horizontal-pod-autoscaler": "horizontal-pod-autoscaler",
    "csrapproving": "certificate-controller",
    "csrsigning": "certificate-controller",
    "bootstrapsigner": "bootstrap-signer",
    "tokencleaner": "token-cleaner",
    "nodeipam": "node-controller",  # upstream's startNodeIpamController uses the node-controller client
    # Upstream these two loops run inside kube-apiserver (kube-aggregator's availability controller, the
    # APF configuration controller) on its loopback identity; here they run in the controller manager,
    # so the bootstrap policy gives each a role of its own (bootstrappolicy._pilothouse_controller_rules).
    "apiservice-availability": "apiservice-availability-controller",
    "flowschema-status": "flowschema-status-controller",
}


def controller_context(shared: ControllerContext, name: str, clients: dict[str, APIClient]) -> ControllerContext:
    """``shared`` with the client of controller ``name``'s service account (one client per account,
    kept in ``clients`` so the manager closes them); ``shared`` itself for a controller without one."""
    account = SERVICE_ACCOUNTS.get(name)
    if account is None:
        return shared
    if account not in clients:
        root = shared.client
        clients[account] = APIClient(bearer_only(root.config), user_agent=f"{root.user_agent}/{account}",
                                     token_source=ServiceAccountTokenSource(root, account))
    return replace(shared, client=clients[account])
