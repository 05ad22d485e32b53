"""Priority (plugin/pkg/admission/priority): a new pod's ``priorityClassName`` becomes its
``priority`` and ``preemptionPolicy``; a pod without one gets the ``globalDefault`` class, or
priority 0. A PriorityClass may be the global default only if no other one is.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.kinds.policy_kinds import SYSTEM_PRIORITY_CLASSES
from pilothouse.machinery.kinds.types import Object

__all__ = ["admit_pod", "keep_on_update", "validate_delete", "validate_priority_class"]


def _global_default(classes: Iterable[Object]) -> Object | None:
    """Several defaults can exist after a race: the lowest value wins, as in getDefaultPriorityClass."""
    defaults = [pc for pc in classes if pc.get("globalDefault")]
    return min(defaults, key=lambda pc: pc.get("value", 0)) if defaults else None


def admit_pod(pod: Object, classes: dict[str, Object]) -> None:
    """admitPod on create; ``classes`` by name."""
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    if name:
        found = classes.get(name)
        if found is None:
            raise Refusal(f"no PriorityClass with name {name} was found")
        priority, policy = found.get("value", 0), found.get("preemptionPolicy")
    else:
        default = _global_default(classes.values())
        if default is not None:
            spec["priorityClassName"] = default["metadata"]["name"]
            priority, policy = default.get("value", 0), default.get("preemptionPolicy")
        else:
            priority, policy = 0, "PreemptLowerPriority"
    given = spec.get("priority")
    if given is not None and given != priority:
        raise Refusal(f"the integer value of priority ({given}) must not be provided in pod spec; priority "
                      f"admission controller computed {priority} from the given PriorityClass name")
    spec["priority"] = priority
    if policy is not None:
        given_policy = spec.get("preemptionPolicy")
        if given_policy is not None and given_policy != policy:
            raise Refusal(f"the string value of PreemptionPolicy ({given_policy}) must not be provided in pod "
                          f"spec; priority admission controller computed {policy} from the given PriorityClass name")
        spec["preemptionPolicy"] = policy


def keep_on_update(pod: Object, old: Object) -> None:
    """An update that leaves out what admission set on create keeps it."""
    spec = pod.setdefault("spec", {})
    old_spec = old.get("spec") or {}
    for key in ("priority", "preemptionPolicy"):
        if spec.get(key) is None and old_spec.get(key) is not None:
            spec[key] = old_spec[key]


def validate_priority_class(pc: Object, classes: Iterable[Object], creating: bool) -> None:
    """validatePriorityClass: only one global default."""
    if not pc.get("globalDefault"):
        return
    default = _global_default(classes)
    if default is not None and (creating or default["metadata"]["name"] != pc["metadata"]["name"]):
        raise Refusal(f"PriorityClass {default['metadata']['name']} is already marked as default. "
                      "Only one default can exist")


def validate_delete(pc: Object) -> None:
    """The system classes stay (pkg/registry/scheduling/priorityclass/storage: Delete)."""
    if any(known["metadata"]["name"] == pc["metadata"]["name"] for known in SYSTEM_PRIORITY_CLASSES):
        raise Refusal("this is a system priority class and cannot be deleted")
