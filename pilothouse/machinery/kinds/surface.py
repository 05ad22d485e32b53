"""The rest of a stock 1.32 API server's resources: stored, validated by schema, served with tables."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["RESOURCES"]

RESOURCES: tuple[ResourceType, ...] = ()
