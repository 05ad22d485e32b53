"""What the server serves, read from its aggregated discovery (``/api`` and ``/apis``).

Controllers that act on every kind (the garbage collector, the namespace controller) must not work
from a list compiled into them: custom resources come and go at run time. As client-go's cached
discovery client does for kube-controller-manager, :class:`ServerResources` asks the server and
keeps the answer for a while.
"""

from __future__ import annotations

import time
from typing import Any

from pilothouse.client.rest import APIClient
from pilothouse.machinery.kinds import ResourceType

__all__ = ["AGGREGATED", "ServerResources", "resources_from_discovery"]

#: The Accept header that asks for aggregated discovery (apidiscovery.k8s.io/v2).
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def resources_from_discovery(documents: list[dict[str, Any]]) -> list[ResourceType]:
    """Rows (names, scope, verbs) for every resource of every served version, each group's
    preferred (first listed) version first."""
    rows: list[ResourceType] = []
    for document in documents:
        for group_entry in document.get("items") or ():
            group = (group_entry.get("metadata") or {}).get("name", "")
            for version_entry in group_entry.get("versions") or ():
                version = version_entry.get("version", "")
                for entry in version_entry.get("resources") or ():
                    kind = (entry.get("responseKind") or {}).get("kind", "")
                    rows.append(ResourceType(
                        group, version, kind, entry.get("resource", ""), entry.get("scope") == "Namespaced",
                        short_names=tuple(entry.get("shortNames") or ()),
                        categories=tuple(entry.get("categories") or ()),
                        verbs=tuple(entry.get("verbs") or ()), singular_name=entry.get("singularResource", ""),
                    ))
    return rows


class ServerResources:
    """The server's resources, refreshed from discovery when older than ``max_age`` seconds."""

    def __init__(self, client: APIClient, max_age: float = 30.0) -> None:
        self.client = client
        self.max_age = max_age
        self._rows: list[ResourceType] = []
        self._fetched = float("-inf")

    async def refresh(self) -> list[ResourceType]:
        documents = [await self.client.request("GET", path, accept=AGGREGATED) for path in ("/api", "/apis")]
        self._rows = resources_from_discovery([d for d in documents if isinstance(d, dict)])
        self._fetched = time.monotonic()
        return self._rows

    async def all(self, max_age: float | None = None) -> list[ResourceType]:
        """Every served resource in every version (fetched again when older than ``max_age``)."""
        if time.monotonic() - self._fetched > (self.max_age if max_age is None else max_age):
            await self.refresh()
        return self._rows

    async def preferred(self, verbs: tuple[str, ...] = (), max_age: float | None = None) -> list[ResourceType]:
        """One row per resource, in its group's preferred version, supporting all of ``verbs``
        (client-go's ``ServerPreferredResources`` filtered by ``SupportsAllVerbs``)."""
        seen: set[tuple[str, str]] = set()
        found: list[ResourceType] = []
        for row in await self.all(max_age):
            if (row.group, row.plural) in seen or not set(verbs) <= set(row.verbs):
                continue
            seen.add((row.group, row.plural))
            found.append(row)
        return found

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        """The resource serving ``kind`` in ``group/version``, from the last answer."""
        for row in self._rows:
            if (row.group, row.version, row.kind) == (group, version, kind):
                return row
        return None
