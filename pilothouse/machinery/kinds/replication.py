"""core/v1 ReplicationController, the seed's workload object."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["RESOURCES"]

RESOURCES: tuple[ResourceType, ...] = ()
