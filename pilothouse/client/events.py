"""Recording Kubernetes Events (core/v1), as client-go's ``EventRecorder``.

Repeated events for the same object and reason are aggregated into one Event whose ``count`` rises,
so a crash loop or an unschedulable pod does not write thousands of objects. Recording never raises:
an event is best-effort information, never a reason for a controller to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pilothouse.client import errors
from pilothouse.client.eventspam import SpamFilter
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import meta

__all__ = ["EventRecorder"]

log = logging.getLogger("pilothouse.client.events")

Object = dict[str, Any]
_EVENTS = resource("", "v1", "events")


class EventRecorder:
    def __init__(self, client: APIClient, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        # (namespace, involved uid, reason, message) -> event name, for aggregation
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._spam = SpamFilter()

    def event(self, obj: Object, event_type: str, reason: str, message: str) -> None:
        """Fire and forget: schedule the write and return at once."""
        metadata = obj.get("metadata") or {}
        if not self._spam.allow(self.component, self.host, {**metadata, "kind": obj.get("kind"),
                                                            "apiVersion": obj.get("apiVersion")}):
            return
        task = asyncio.create_task(self._record(obj, event_type, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _record(self, obj: Object, event_type: str, reason: str, message: str) -> None:
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        now = meta.format_time()
        key = (namespace, metadata.get("uid", ""), reason, message)
        involved = {"kind": obj.get("kind"), "namespace": metadata.get("namespace"), "name": metadata.get("name"),
                    "uid": metadata.get("uid"), "apiVersion": obj.get("apiVersion"),
                    "resourceVersion": metadata.get("resourceVersion")}
        involved = {k: v for k, v in involved.items() if v}
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, count = seen
                with contextlib.suppress(errors.NotFoundError):
                    await self.client.patch(_EVENTS, name, {"count": count + 1, "lastTimestamp": now},
                                            namespace)
                    self._seen[key] = (name, count + 1)
                    return
            name = f"{metadata.get('name', 'unknown')}.{meta.generate_name_suffix(10)}"
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message, "type": event_type,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host or self.component,
            }
            await self.client.create(_EVENTS, event, namespace)
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[key] = (name, 1)
        except (errors.APIError, errors.ConnectionFailed) as error:
            log.debug("could not record event %s for %s: %s", reason, metadata.get("name"), error)
