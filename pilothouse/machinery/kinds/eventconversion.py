"""core/v1 Event <-> events.k8s.io/v1 Event: one stored Event, two shapes.

kube-apiserver keeps both APIs' Events in one place (``/registry/events``) and converts between
them (pkg/apis/events/v1/conversion.go): ``regarding``/``involvedObject``, ``note``/``message``,
``reportingController``/``reportingComponent`` and the ``deprecated*`` fields of events.k8s.io for
core's ``source``, ``firstTimestamp``, ``lastTimestamp`` and ``count``. So an event the scheduler
writes through events.k8s.io (with a ``series``) shows in ``kubectl describe``, which reads core/v1.
"""

from __future__ import annotations

from pilothouse.machinery.kinds.types import Object

__all__ = ["to_core_event", "to_events_v1_event"]

# (core/v1 field, events.k8s.io/v1 field); the rest (metadata, reason, type, action, related,
# eventTime, series, reportingInstance) has one name in both
_RENAMED = (
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
)


def _rename(obj: Object, pairs: tuple[tuple[str, str], ...], api_version: str) -> Object:
    out = {k: v for k, v in obj.items() if k not in {a for a, _ in pairs}}
    for old, new in pairs:
        if old in obj:
            out[new] = obj[old]
    out["apiVersion"] = api_version
    return out


def to_core_event(obj: Object, version: str = "v1") -> Object:
    """An Event in whichever shape it was written, as core/v1 serves it."""
    if obj.get("apiVersion") == "v1":
        return obj
    return _rename(obj, tuple((b, a) for a, b in _RENAMED), "v1")


def to_events_v1_event(obj: Object, version: str = "v1") -> Object:
    """An Event in whichever shape it was written, as events.k8s.io/v1 serves it."""
    if obj.get("apiVersion") == "events.k8s.io/v1":
        return obj
    return _rename(obj, _RENAMED, "events.k8s.io/v1")
