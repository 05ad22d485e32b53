"""The audit policy: an ``audit.k8s.io/v1`` ``Policy`` file, validated and evaluated as
kube-apiserver does (``apiserver/pkg/audit/policy/reader.go``, ``checker.go`` and
``apis/audit/validation``).

The first rule that matches a request decides its level and the stages not to record; no match
means level ``None``. Rules are matched against the *authenticated* user (before impersonation), as
``WithAudit`` evaluates the policy before ``WithImpersonation`` runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery import safeyaml
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.validation.names import is_dns1123_subdomain

__all__ = ["LEVELS", "STAGES", "Decision", "Policy", "PolicyError", "PolicyRule", "load_policy", "parse_policy"]

#: In increasing order of what is recorded (``Level.Less``).
LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_API_VERSIONS = ("audit.k8s.io/v1",)


class PolicyError(ValueError):
    """A policy file kube-apiserver would refuse to start with; the message is its error."""


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, info: RequestInfo, name: str) -> bool:
        """``ruleMatchesResource``'s inner loop: ``*``, ``resource/subresource``, ``*/sub``, ``res/*``."""
        if self.group != info.group:
            return False
        if not self.resources:
            return True
        if self.resource_names and name not in self.resource_names:
            return False
        combined = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        for resource in self.resources:
            if resource in (combined, "*"):
                return True
            if info.subresource and resource.startswith("*/") and resource[2:] == info.subresource:
                return True
            if resource.endswith("/*") and resource[:-2] == info.resource:
                return True
        return False


@dataclass(frozen=True)
class Decision:
    """What the policy says about one request."""

    level: str = "None"
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def at_least(self, level: str) -> bool:
        return LEVELS.index(self.level) >= LEVELS.index(level)


@dataclass(frozen=True)
class PolicyRule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    #: None: the policy's own setting decides.
    omit_managed_fields: bool | None = None

    def matches(self, user: tuple[str, tuple[str, ...]] | None, info: RequestInfo, name: str) -> bool:
        """``ruleMatches``: every field given must match; a rule naming users never matches a
        request without one (a failed authentication)."""
        if self.users and (user is None or user[0] not in self.users):
            return False
        if self.user_groups and (user is None or not any(group in self.user_groups for group in user[1])):
            return False
        if self.verbs and info.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if not info.is_resource_request:
                return False
            if self.namespaces and (info.namespace or "") not in self.namespaces:
                return False  # cluster-scoped resources are namespace ""
            return not self.resources or any(gr.matches(info, name) for gr in self.resources)
        if self.non_resource_urls:
            return not info.is_resource_request and any(_path_matches(info.path, spec)
                                                         for spec in self.non_resource_urls)
        return True


def _path_matches(path: str, spec: str) -> bool:
    if spec in ("*", path):
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


@dataclass(frozen=True)
class Policy:
    rules: tuple[PolicyRule, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False
    _decisions: dict[Any, Decision] = field(default_factory=dict, compare=False, repr=False)

    def decide(self, user: tuple[str, tuple[str, ...]] | None, info: RequestInfo, name: str) -> Decision:
        """``LevelAndStages`` plus ``omitManagedFields``: the rule's stages joined with the
        policy's (``NewChecker``'s union)."""
        for rule in self.rules:
            if rule.matches(user, info, name):
                omit_managed = self.omit_managed_fields if rule.omit_managed_fields is None \
                    else rule.omit_managed_fields
                key = (rule, omit_managed)
                decision = self._decisions.get(key)
                if decision is None:  # one Decision per rule, shared by the requests it matches
                    decision = Decision(rule.level, rule.omit_stages | self.omit_stages, omit_managed)
                    self._decisions[key] = decision
                return decision
        return Decision("None", self.omit_stages, self.omit_managed_fields)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value or ())


def _rule_errors(rule: Mapping[str, Any], path: str) -> list[FieldError]:
    """``validatePolicyRule``."""
    errors: list[FieldError] = []
    level = rule.get("level") or ""
    if not level:
        errors.append(FieldError("FieldValueRequired", f"{path}.level"))
    elif level not in LEVELS:
        errors.append(FieldError("FieldValueNotSupported", f"{path}.level",
                                 "supported values: " + ", ".join(f'"{v}"' for v in LEVELS), level))
    urls = _strings(rule.get("nonResourceURLs"))
    for i, url in enumerate(urls):
        if url == "*":
            continue
        if not url.startswith("/"):
            errors.append(FieldError("FieldValueInvalid", f"{path}.nonResourceURLs[{i}]",
                                     "non-resource URL rules must begin with a '/' character", url))
        if url and "*" in url[:-1]:
            errors.append(FieldError("FieldValueInvalid", f"{path}.nonResourceURLs[{i}]",
                                     "non-resource URL wildcards '*' must be the final character of the rule", url))
    for resources in rule.get("resources") or ():
        group = str(resources.get("group") or "")
        if group and (messages := is_dns1123_subdomain(group)):
            errors.append(FieldError("FieldValueInvalid", f"{path}.resources.group", ",".join(messages), group))
        if resources.get("resourceNames") and not resources.get("resources"):
            errors.append(FieldError("FieldValueInvalid", f"{path}.resources.resourceNames",
                                     "using resourceNames requires at least one resource",
                                     repr(_strings(resources["resourceNames"]))))
    errors += _stage_errors(rule.get("omitStages"), f"{path}.omitStages")
    if urls and (rule.get("resources") or rule.get("namespaces")):
        errors.append(FieldError("FieldValueInvalid", f"{path}.nonResourceURLs",
                                 "rules cannot apply to both regular resources and non-resource URLs",
                                 "[" + " ".join(urls) + "]"))
    return errors


def _stage_errors(stages: Sequence[Any] | None, path: str) -> list[FieldError]:
    return [FieldError("FieldValueInvalid", f"{path}[{i}]", "allowed stages are " + ",".join(STAGES), str(stage))
            for i, stage in enumerate(stages or ()) if stage not in STAGES]


def parse_policy(document: Any) -> Policy:
    """A Policy object as read from its file; raises :class:`PolicyError` with kube-apiserver's
    wording for what it refuses."""
    if not isinstance(document, dict):
        raise PolicyError("failed decoding: the policy is not an object")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if kind != "Policy" or api_version not in _API_VERSIONS:
        raise PolicyError(f"failed decoding: no kind \"{kind}\" is registered for version \"{api_version}\"; "
                          f"want kind Policy in {', '.join(_API_VERSIONS)}")
    rules = document.get("rules") or []
    errors = _stage_errors(document.get("omitStages"), "omitStages")
    for i, rule in enumerate(rules):
        errors += _rule_errors(rule if isinstance(rule, dict) else {}, f"rules[{i}]")
    if errors:
        raise PolicyError("validation errors: " + "; ".join(error.message() for error in errors))
    if not rules:
        raise PolicyError("loaded illegal policy with 0 rules")
    parsed = tuple(PolicyRule(
        level=rule["level"], users=_strings(rule.get("users")), user_groups=_strings(rule.get("userGroups")),
        verbs=_strings(rule.get("verbs")),
        resources=tuple(GroupResources(str(gr.get("group") or ""), _strings(gr.get("resources")),
                                       _strings(gr.get("resourceNames"))) for gr in rule.get("resources") or ()),
        namespaces=_strings(rule.get("namespaces")), non_resource_urls=_strings(rule.get("nonResourceURLs")),
        omit_stages=frozenset(_strings(rule.get("omitStages"))),
        omit_managed_fields=rule.get("omitManagedFields")) for rule in rules)
    return Policy(parsed, frozenset(_strings(document.get("omitStages"))), bool(document.get("omitManagedFields")))


def load_policy(path: str | Path) -> Policy:
    """``--audit-policy-file``: YAML or JSON."""
    try:
        document = safeyaml.load(Path(path).read_bytes())
    except OSError as error:
        raise PolicyError(f"failed to read file path \"{path}\": {error}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"failed decoding file \"{path}\": {error}") from None
    try:
        return parse_policy(document)
    except PolicyError as error:
        raise PolicyError(f"{error} (file \"{path}\")") from None
