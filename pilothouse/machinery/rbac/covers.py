"""Whether one set of PolicyRules grants everything another does (``rbac/validation.Covers``).

Kubernetes breaks every requested rule into atoms (one verb, one group, one resource, one name or
one URL) and asks whether some owner rule allows each atom, honouring ``*`` and the ``*/subresource``
form. The bootstrap reconciler uses it to find the rules a stored role lacks; the authorizer will
use the same notion of "allowed".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["breakdown", "covers", "rule_allows"]

Rule = dict[str, Any]


def breakdown(rule: Rule) -> Iterator[Rule]:
    """``BreakdownRule``: one atom per group, resource and verb (and name), and per URL and verb."""
    verbs = rule.get("verbs") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in verbs:
                names = rule.get("resourceNames") or []
                if names:
                    for name in names:
                        yield {"verbs": [verb], "apiGroups": [group], "resources": [resource],
                               "resourceNames": [name]}
                else:
                    yield {"verbs": [verb], "apiGroups": [group], "resources": [resource]}
    for url in rule.get("nonResourceURLs") or []:
        for verb in verbs:
            yield {"verbs": [verb], "nonResourceURLs": [url]}


def _has_all(owned: list[str], wanted: list[str]) -> bool:
    return "*" in owned or all(item in owned for item in wanted)


def _resources_cover(owned: list[str], wanted: list[str]) -> bool:
    if "*" in owned:
        return True
    for path in wanted:
        if path in owned:
            continue
        _, slash, sub = path.partition("/")
        if not slash or f"*/{sub}" not in owned:
            return False
    return True


def _urls_cover(owned: list[str], wanted: list[str]) -> bool:
    for url in wanted:
        if not any(own == url or own == "*" or (own.endswith("*") and url.startswith(own[:-1]))
                   for own in owned):
            return False
    return True


def rule_allows(owner: Rule, atom: Rule) -> bool:
    """``ruleCovers``: ``owner`` allows everything in ``atom``."""
    if not _has_all(owner.get("verbs") or [], atom.get("verbs") or []):
        return False
    if not _has_all(owner.get("apiGroups") or [], atom.get("apiGroups") or []):
        return False
    if not _resources_cover(owner.get("resources") or [], atom.get("resources") or []):
        return False
    if not _urls_cover(owner.get("nonResourceURLs") or [], atom.get("nonResourceURLs") or []):
        return False
    owner_names = owner.get("resourceNames") or []
    wanted_names = atom.get("resourceNames") or []
    # An owner without names covers every name; one with names covers only those, never "all".
    if not wanted_names:
        return not owner_names
    return not owner_names or all(name in owner_names for name in wanted_names)


def covers(owner_rules: Iterable[Rule], requested: Iterable[Rule]) -> tuple[bool, list[Rule]]:
    """(all covered, the atoms no owner rule allows)."""
    owners = list(owner_rules)
    missing = [atom for rule in requested for atom in breakdown(rule)
               if not any(rule_allows(owner, atom) for owner in owners)]
    return not missing, missing
