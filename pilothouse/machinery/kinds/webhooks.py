"""admissionregistration.k8s.io/v1: webhook configurations and ValidatingAdmissionPolicy (+Binding).

Defaults from pkg/apis/admissionregistration/v1/defaults.go (failurePolicy Fail, matchPolicy
Equivalent, empty selectors, timeoutSeconds 10, rule scope "*", reinvocationPolicy Never, service
port 443) and the v1 rules of pkg/apis/admissionregistration/validation (sideEffects and
admissionReviewVersions required, three-segment names, one of url/service, timeouts 1..30).
pilothouse does not call webhooks nor evaluate policies yet: these are stored and served.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import (
    Object,
    Strategy,
    keep_status_on_update,
    status_strategy,
)
from pilothouse.machinery.kinds.vcommon import GoValue, duplicate, invalid, not_supported, required

__all__ = [
    "MUTATING_WEBHOOKS",
    "VALIDATING_ADMISSION_POLICY",
    "VALIDATING_ADMISSION_POLICY_BINDING",
    "VALIDATING_ADMISSION_POLICY_STATUS",
    "VALIDATING_WEBHOOKS",
]

_SIDE_EFFECTS = ("None", "NoneOnDryRun")
_REVIEW_VERSIONS = ("v1", "v1beta1")
_FAILURE_POLICIES = ("Fail", "Ignore")
_MATCH_POLICIES = ("Equivalent", "Exact")
_VALIDATION_ACTIONS = ("Audit", "Deny", "Warn")


def _default_rules(rules: list[dict[str, Any]] | None) -> None:
    for rule in rules or ():
        rule.setdefault("scope", "*")


def _default_webhook(webhook: dict[str, Any], mutating: bool) -> None:
    webhook.setdefault("failurePolicy", "Fail")
    webhook.setdefault("matchPolicy", "Equivalent")
    webhook.setdefault("namespaceSelector", {})
    webhook.setdefault("objectSelector", {})
    webhook.setdefault("timeoutSeconds", 10)
    if mutating:
        webhook.setdefault("reinvocationPolicy", "Never")
    _default_rules(webhook.get("rules"))
    service = (webhook.get("clientConfig") or {}).get("service")
    if service is not None:
        service.setdefault("port", 443)


def _webhook_errors(webhook: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    name = webhook.get("name") or ""
    if not name:
        errors.append(required(f"{path}.name"))
    elif len([part for part in name.split(".") if part]) < 3:
        errors.append(invalid(f"{path}.name", name, "should be a domain with at least three segments "
                              "separated by dots"))
    side_effects = webhook.get("sideEffects")
    if side_effects is None:
        errors.append(required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun"))
    elif side_effects not in _SIDE_EFFECTS:
        errors.append(not_supported(f"{path}.sideEffects", side_effects, _SIDE_EFFECTS))
    versions = webhook.get("admissionReviewVersions") or []
    if not versions:
        errors.append(required(f"{path}.admissionReviewVersions", "must specify one of v1, v1beta1"))
    elif not any(v in _REVIEW_VERSIONS for v in versions):
        errors.append(invalid(f"{path}.admissionReviewVersions", GoValue(versions, "[]string{...}"),
                              "must include at least one of v1, v1beta1"))
    for key, allowed in (("failurePolicy", _FAILURE_POLICIES), ("matchPolicy", _MATCH_POLICIES)):
        if webhook.get(key) not in allowed:
            errors.append(not_supported(f"{path}.{key}", webhook.get(key), allowed))
    timeout = webhook.get("timeoutSeconds")
    if isinstance(timeout, int) and not 1 <= timeout <= 30:
        errors.append(invalid(f"{path}.timeoutSeconds", timeout,
                              "the timeout value must be between 1 and 30 seconds"))
    config = webhook.get("clientConfig") or {}
    if (config.get("url") is None) == (config.get("service") is None):
        errors.append(required(f"{path}.clientConfig", "exactly one of url or service is required"))
    return errors


def _webhooks_strategy(mutating: bool) -> Strategy:
    def default(config: Object) -> None:
        for webhook in config.get("webhooks") or ():
            _default_webhook(webhook, mutating)

    def validate(config: Object) -> list[FieldError]:
        errors: list[FieldError] = []
        seen: set[str] = set()
        for i, webhook in enumerate(config.get("webhooks") or ()):
            errors += _webhook_errors(webhook, f"webhooks[{i}]")
            name = webhook.get("name")
            if name in seen:
                errors.append(duplicate(f"webhooks[{i}].name", name))
            seen.add(name)
        return errors

    return Strategy(default=default, validate=validate, validate_update=same_on_update(validate))


def _default_match_resources(resources: dict[str, Any] | None) -> None:
    """SetDefaults_MatchResources (a policy's matchConstraints, a binding's matchResources)."""
    if resources is not None:
        resources.setdefault("matchPolicy", "Equivalent")
        resources.setdefault("namespaceSelector", {})
        resources.setdefault("objectSelector", {})
        _default_rules(resources.get("resourceRules"))
        _default_rules(resources.get("excludeResourceRules"))


def default_policy(policy: Object) -> None:
    spec = policy.setdefault("spec", {})
    spec.setdefault("failurePolicy", "Fail")
    _default_match_resources(spec.get("matchConstraints"))


def validate_policy(policy: Object) -> list[FieldError]:
    spec = policy.get("spec") or {}
    errors: list[FieldError] = []
    if not spec.get("validations") and not spec.get("auditAnnotations"):
        errors.append(required("spec.validations", "validations or auditAnnotations must contain at least one item"))
    if spec.get("matchConstraints") is None:
        errors.append(required("spec.matchConstraints"))
    elif not (spec["matchConstraints"].get("resourceRules")):
        errors.append(required("spec.matchConstraints.resourceRules"))
    if spec.get("failurePolicy") not in _FAILURE_POLICIES:
        errors.append(not_supported("spec.failurePolicy", spec.get("failurePolicy"), _FAILURE_POLICIES))
    for i, rule in enumerate(spec.get("validations") or ()):
        if not rule.get("expression"):
            errors.append(required(f"spec.validations[{i}].expression"))
    return errors


def validate_binding(binding: Object) -> list[FieldError]:
    spec = binding.get("spec") or {}
    errors: list[FieldError] = []
    if not spec.get("policyName"):
        errors.append(required("spec.policyName"))
    actions = spec.get("validationActions") or []
    if not actions:
        errors.append(required("spec.validationActions", "at least one validation action is required"))
    for i, action in enumerate(actions):
        if action not in _VALIDATION_ACTIONS:
            errors.append(not_supported(f"spec.validationActions[{i}]", action, _VALIDATION_ACTIONS))
    if "Deny" in actions and "Warn" in actions:
        shown = GoValue(actions, "[]admissionregistration.ValidationAction{...}")
        errors.append(invalid("spec.validationActions", shown,
                              "must not contain both Deny and Warn (repeating the same validation failure "
                              "information in the API response and headers serves no purpose)"))
    return errors


def default_binding(binding: Object) -> None:
    _default_match_resources((binding.get("spec") or {}).get("matchResources"))


def _first_generation(obj: Object) -> None:
    obj["metadata"]["generation"] = 1


VALIDATING_WEBHOOKS = _webhooks_strategy(mutating=False)
MUTATING_WEBHOOKS = _webhooks_strategy(mutating=True)
VALIDATING_ADMISSION_POLICY = Strategy(default=default_policy, validate=validate_policy,
                                       validate_update=same_on_update(validate_policy),
                                       prepare_for_create=p.create_with_zero_status("ValidatingAdmissionPolicy"),
                                       prepare_for_update=keep_status_on_update)
VALIDATING_ADMISSION_POLICY_STATUS = status_strategy(VALIDATING_ADMISSION_POLICY)
VALIDATING_ADMISSION_POLICY_BINDING = Strategy(default=default_binding, validate=validate_binding,
                                               validate_update=same_on_update(validate_binding),
                                               prepare_for_create=_first_generation)
