"""apiextensions.k8s.io/v1 CustomResourceDefinition."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["RESOURCES"]

RESOURCES: tuple[ResourceType, ...] = ()
