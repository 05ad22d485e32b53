"""Lookup of served resources by (group, version, plural) and by (group, version, kind).

A registry instance rather than module globals, because custom resources will be added and removed
at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["ResourceRegistry"]


class ResourceRegistry:
    def __init__(self, resources: Iterable[ResourceType] = ()) -> None:
        self._by_plural: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str, str], ResourceType] = {}
        for resource in resources:
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        self._by_plural[(resource.group, resource.version, resource.plural)] = resource
        self._by_kind[(resource.group, resource.version, resource.kind)] = resource

    def remove(self, resource: ResourceType) -> None:
        self._by_plural.pop((resource.group, resource.version, resource.plural), None)
        self._by_kind.pop((resource.group, resource.version, resource.kind), None)

    def by_plural(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_plural.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group, version, kind))

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._by_plural.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions, in registration order ("" is the core group)."""
        result: dict[str, list[str]] = {}
        for resource in self._by_plural.values():
            versions = result.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return result

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self._by_plural.values() if r.group == group and r.version == version]
