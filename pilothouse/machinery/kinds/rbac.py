"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["RESOURCES"]

RESOURCES: tuple[ResourceType, ...] = ()
