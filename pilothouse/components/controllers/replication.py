"""The replication manager: keeps a ReplicationController's ``spec.replicas`` pods running.

Kubernetes runs ReplicationControllers through the ReplicaSet controller behind a conversion layer
(``pkg/controller/replication``): same expectations, adoption, slow-start creation, deletion ranking
and status (``replicas``, ``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas``,
``observedGeneration``, the ``ReplicaFailure`` condition). Here the conversion is one resource row:
the selector is read as the plain map the RC's catalog row declares, pods are owned with
``kind: ReplicationController``, and events come from ``replication-controller``.
"""

from __future__ import annotations

from typing import ClassVar

from pilothouse.client.rest import resource
from pilothouse.components.controllers.replicaset import ReplicaSetController
from pilothouse.machinery.kinds import ResourceType

__all__ = ["REPLICATIONCONTROLLERS", "ReplicationManager"]

REPLICATIONCONTROLLERS = resource("", "v1", "replicationcontrollers")


class ReplicationManager(ReplicaSetController):
    name = "replicationcontroller"
    managed: ClassVar[ResourceType] = REPLICATIONCONTROLLERS
    component: ClassVar[str] = "replication-controller"
