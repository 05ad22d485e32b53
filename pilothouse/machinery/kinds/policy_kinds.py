"""Kinds that admission plugins enabled by default read: PriorityClass, StorageClass."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["RESOURCES"]

RESOURCES: tuple[ResourceType, ...] = ()
