"""The event printer, for both ``core/v1`` and ``events.k8s.io/v1`` Events.

kube-apiserver stores one internal Event type and prints both API versions with ``printEvent``;
``events.k8s.io/v1`` objects are first mapped to the core field names the way its conversion
does (``regarding`` -> ``involvedObject``, ``note`` -> ``message``, ``deprecated*`` -> the old
timestamps and count). LAST SEEN prefers a series' last observation, then ``lastTimestamp``,
then ``firstTimestamp``/``eventTime``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import Column, Doc, printer
from pilothouse.machinery.tables.duration import translate_since

__all__ = ["core_event_cells", "events_v1_cells"]

_EVENT = "core.v1.Event"


def _event_cells(event: Object, now: datetime) -> list[Any]:
    first = (
        translate_since(event["firstTimestamp"], now)
        if event.get("firstTimestamp")
        else translate_since(event.get("eventTime"), now)
    )
    last = translate_since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if series is not None:
        last = translate_since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        # Singleton events of the new API carry no count.
        count = 1
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        (event.get("message") or "").strip(),
        first,
        int(count),
        (event.get("metadata") or {}).get("name", ""),
    ]


_COLUMNS = [
    Column("Last Seen", description=Doc(_EVENT, "lastTimestamp")),
    Column("Type", description=Doc(_EVENT, "type")),
    Column("Reason", description=Doc(_EVENT, "reason")),
    Column("Object", description=Doc(_EVENT, "involvedObject")),
    Column("Subobject", priority=1, description=Doc("core.v1.ObjectReference", "fieldPath")),
    Column("Source", priority=1, description=Doc(_EVENT, "source")),
    Column("Message", description=Doc(_EVENT, "message")),
    Column("First Seen", priority=1, description=Doc(_EVENT, "firstTimestamp")),
    Column("Count", priority=1, description=Doc(_EVENT, "count")),
    Column("Name", priority=1, format="name", description=Doc("meta.v1.ObjectMeta", "name")),
]


@printer(("", "Event"), _COLUMNS)
def core_event_cells(event: Object, now: datetime) -> list[Any]:
    return _event_cells(event, now)


@printer(("events.k8s.io", "Event"), _COLUMNS)
def events_v1_cells(event: Object, now: datetime) -> list[Any]:
    core = {
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "message": event.get("note"),
        "reason": event.get("reason"),
        "type": event.get("type"),
        "source": event.get("deprecatedSource") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"),
        "count": event.get("deprecatedCount"),
        "eventTime": event.get("eventTime"),
        "series": event.get("series"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
    }
    return _event_cells(core, now)
