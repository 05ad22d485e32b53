"""Lookup of served resources by (group, version, plural) and by (group, version, kind).

A registry instance rather than module globals, because the set of kinds is live: custom resources
are added and removed at run time. Whoever keeps something per resource (the API server's
storages) subscribes and follows additions and removals; discovery and OpenAPI read the registry on
every request, so they follow it without being told.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pilothouse.machinery.kinds.types import ResourceType

__all__ = ["Listener", "ResourceRegistry"]

#: Called with the resource and True when it was added (or replaced), False when it was removed.
Listener = Callable[[ResourceType, bool], None]


class ResourceRegistry:
    def __init__(self, resources: Iterable[ResourceType] = ()) -> None:
        self._by_plural: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str, str], ResourceType] = {}
        self._listeners: list[Listener] = []
        for resource in resources:
            self.add(resource)

    def subscribe(self, listener: Listener) -> None:
        """Follow every later addition and removal (call :meth:`__iter__` for the current set)."""
        self._listeners.append(listener)

    def add(self, resource: ResourceType) -> None:
        """Serve ``resource``, replacing one with the same group, version and plural."""
        self._by_plural[(resource.group, resource.version, resource.plural)] = resource
        self._by_kind[(resource.group, resource.version, resource.kind)] = resource
        for listener in self._listeners:
            listener(resource, True)

    def remove(self, resource: ResourceType) -> None:
        present = self._by_plural.pop((resource.group, resource.version, resource.plural), None)
        if self._by_kind.get((resource.group, resource.version, resource.kind)) is present:
            self._by_kind.pop((resource.group, resource.version, resource.kind), None)
        if present is not None:
            for listener in self._listeners:
                listener(present, False)

    def by_plural(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_plural.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group, version, kind))

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_plural.values()))

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
