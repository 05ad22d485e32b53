"""Conversion between the served versions of one resource (kube-apiserver's scheme conversions).

pilothouse stores an object in the version it was written through; a read through another version
of the same resource converts it on the way out (``ResourceStorage`` asks :func:`converter_for`).
Only kinds served in several versions need an entry: HorizontalPodAutoscaler (autoscaling/v1
and v2), and Event (core/v1 and events.k8s.io/v1 share one storage).
"""

from __future__ import annotations

from collections.abc import Callable

from pilothouse.machinery.kinds import autoscaling
from pilothouse.machinery.kinds.eventconversion import to_core_event, to_events_v1_event
from pilothouse.machinery.kinds.types import Object

__all__ = ["Converter", "converter_for"]

#: (object in any served version, target version) -> the object in the target version.
Converter = Callable[[Object, str], Object]

_CONVERTERS: dict[tuple[str, str], Converter] = {
    ("autoscaling", "HorizontalPodAutoscaler"): autoscaling.convert_hpa,
    # one stored Event for two groups (ResourceType.storage_group)
    ("", "Event"): to_core_event,
    ("events.k8s.io", "Event"): to_events_v1_event,
}


def converter_for(group: str, kind: str) -> Converter | None:
    return _CONVERTERS.get((group, kind))
