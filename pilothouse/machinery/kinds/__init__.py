"""The kinds pilothouse serves: resource names, strategies, and lookup by URL or GVK."""

from __future__ import annotations

from pilothouse.machinery.kinds.catalog import BUILTIN_RESOURCES
from pilothouse.machinery.kinds.registry import ResourceRegistry
from pilothouse.machinery.kinds.types import Object, ResourceType, ScaleSpec, Strategy

__all__ = ["BUILTIN_RESOURCES", "Object", "ResourceRegistry", "ResourceType", "ScaleSpec", "Strategy"]
