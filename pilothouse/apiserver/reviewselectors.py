"""The field and label selectors of a *SubjectAccessReview's ``resourceAttributes`` (1.32's
AuthorizeWithSelectors, beta and on): validated as ``pkg/apis/authorization/validation`` does, and
turned into the selectors the authorizers see, as ``authorizationutil.ResourceAttributesFrom`` does.

A selector is either ``rawSelector`` (the query parameter's text) or ``requirements``, never both.
Requirements with operators this server does not know are accepted (newer clients may send them)
but, like a raw selector that does not parse, they leave the request unlimited: a selector can only
narrow what is asked, so ignoring it never grants more than the authorizer would without it.
"""

from __future__ import annotations

import re
from typing import Any

from pilothouse.machinery.errors import FieldError, StatusError
from pilothouse.machinery.selectors import parse_field_selector, parse_label_selector
from pilothouse.machinery.validation.names import is_qualified_name

__all__ = ["field_selector", "label_selector", "selector_errors"]

_VALUES_REQUIRED = "must be specified when `operator` is 'In' or 'NotIn'"
_VALUES_FORBIDDEN = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"


def _requirement_errors(requirement: Any, path: str, label: bool) -> list[FieldError]:
    """``ValidateFieldSelectorRequirement`` / ``ValidateLabelSelectorRequirement`` with
    ``AllowUnknownOperatorInRequirement``."""
    requirement = requirement if isinstance(requirement, dict) else {}
    key, operator, values = requirement.get("key") or "", requirement.get("operator"), requirement.get("values")
    errors: list[FieldError] = []
    if not label and not key:
        errors.append(FieldError("FieldValueRequired", f"{path}.key", "must be specified"))
    if operator in ("In", "NotIn") and not values:
        errors.append(FieldError("FieldValueRequired", f"{path}.values", _VALUES_REQUIRED))
    elif operator in ("Exists", "DoesNotExist") and values:
        errors.append(FieldError("FieldValueForbidden", f"{path}.values", _VALUES_FORBIDDEN))
    if label:
        errors += [FieldError("FieldValueInvalid", f"{path}.key", message, key) for message in is_qualified_name(key)]
    return errors


def selector_errors(resource_attributes: Any, path: str = "spec.resourceAttributes") -> list[FieldError]:
    """``validateFieldSelectorAttributes`` and ``validateLabelSelectorAttributes``."""
    if not isinstance(resource_attributes, dict):
        return []
    errors: list[FieldError] = []
    for name, label in (("fieldSelector", False), ("labelSelector", True)):
        selector = resource_attributes.get(name)
        if selector is None:
            continue
        selector = selector if isinstance(selector, dict) else {}
        where = f"{path}.{name}"
        raw, requirements = selector.get("rawSelector") or "", selector.get("requirements") or []
        if raw and requirements:
            errors.append(FieldError("FieldValueInvalid", f"{where}.rawSelector",
                                     "may not specified at the same time as requirements", raw))
        if not raw and not requirements:
            errors.append(FieldError("FieldValueRequired", f"{where}.requirements",
                                     f"when {where} is specified, requirements or rawSelector is required"))
        for i, requirement in enumerate(requirements):
            errors += _requirement_errors(requirement, f"{where}.requirements[{i}]", label)
    return errors


def _escape(value: str) -> str:
    """``fields.EscapeValue``."""
    return re.sub(r"([\\,=])", r"\\\1", value)


def field_selector(resource_attributes: dict[str, Any]) -> str:
    """The field selector as a request would carry it; "" when there is none or it cannot be used
    (``fieldSelectorAsSelector``: only In and NotIn with exactly one value)."""
    selector = resource_attributes.get("fieldSelector") or {}
    if selector.get("rawSelector"):
        text = str(selector["rawSelector"])
        try:
            parse_field_selector(text)
        except StatusError:
            return ""
        return text
    terms = []
    for requirement in selector.get("requirements") or []:
        values, operator = requirement.get("values") or [], requirement.get("operator")
        if operator not in ("In", "NotIn") or len(values) != 1:
            return ""
        terms.append(f"{requirement.get('key')}{'=' if operator == 'In' else '!='}{_escape(str(values[0]))}")
    return ",".join(terms)


def label_selector(resource_attributes: dict[str, Any]) -> str:
    """The label selector as a request would carry it ("" when none, or when it does not parse)."""
    selector = resource_attributes.get("labelSelector") or {}
    if selector.get("rawSelector"):
        text = str(selector["rawSelector"])
    else:
        terms = []
        for requirement in selector.get("requirements") or []:
            key, operator, values = requirement.get("key"), requirement.get("operator"), requirement.get("values")
            listed = ",".join(str(value) for value in values or ())
            term = {"In": f"{key} in ({listed})", "NotIn": f"{key} notin ({listed})", "Exists": f"{key}",
                    "DoesNotExist": f"!{key}"}.get(str(operator))
            if term is None:
                return ""
            terms.append(term)
        text = ",".join(terms)
    try:
        parse_label_selector(text)
    except StatusError:
        return ""
    return text
