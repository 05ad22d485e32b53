"""Building blocks shared by the kind validators, mirroring k8s.io/apimachinery's validation helpers.

Kubernetes' kind validation (``pkg/apis/<group>/validation``) is written with a handful of helpers:
``field.Required/Invalid/NotSupported/...``, ``IsDNS1123Label``, ``IsValidPortNum``,
``ValidateNonnegativeField``, label selector checks. Their exact wording reaches users through
kubectl, so they live here once, with Kubernetes' messages verbatim.

:class:`GoValue` exists because :meth:`FieldError.message` prints non-string values with ``repr``:
Kubernetes prints maps and structs with Go's ``%#v`` (``map[string]string{"app":"web"}``), and we
want the same text in ``Invalid value: ...`` messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.validation.names import is_qualified_name, is_valid_label_value
from pilothouse.machinery.validation.objectmeta import validate_labels

__all__ = [
    "DNS1035_LABEL_MSG",
    "DNS1123_LABEL_MSG",
    "DNS1123_SUBDOMAIN_MSG",
    "GoValue",
    "duplicate",
    "forbidden",
    "go_labels",
    "go_selector",
    "go_string_list",
    "invalid",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_valid_port_name",
    "label_selector_matches",
    "nonnegative",
    "not_found",
    "not_supported",
    "port_num_errors",
    "required",
    "validate_label_selector",
]


class GoValue:
    """A bad value that prints like Go's ``%#v`` in :meth:`FieldError.message`; ``.value`` is the JSON."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str) -> None:
        self.value = value
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GoValue):
            return bool(self.value == other.value)
        return bool(self.value == other)

    def __hash__(self) -> int:
        return hash(self.text)


def _go_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_map(labels: Mapping[str, str] | None) -> str:
    if labels is None:
        return "map[string]string(nil)"
    # Go's fmt prints maps with sorted keys.
    return "map[string]string{" + ", ".join(f"{_go_str(k)}:{_go_str(str(labels[k]))}"
                                            for k in sorted(labels)) + "}"


def go_labels(labels: Mapping[str, str] | None) -> GoValue:
    return GoValue(labels, _go_map(labels))


def go_string_list(values: list[str] | None) -> GoValue:
    if values is None:
        return GoValue(None, "[]string(nil)")
    return GoValue(values, "[]string{" + ", ".join(_go_str(v) for v in values) + "}")


def go_selector(selector: Mapping[str, Any] | None) -> GoValue:
    """``v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`` as Kubernetes prints it."""
    if selector is None:
        return GoValue(None, "null")
    exprs = selector.get("matchExpressions")
    if exprs is None:
        exprs_text = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = []
        for expr in exprs:
            values = expr.get("values")
            values_text = "[]string(nil)" if values is None else go_string_list(values).text
            items.append(f"v1.LabelSelectorRequirement{{Key:{_go_str(expr.get('key', ''))}, "
                         f"Operator:{_go_str(expr.get('operator', ''))}, Values:{values_text}}}")
        exprs_text = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    text = (f"v1.LabelSelector{{MatchLabels:{_go_map(selector.get('matchLabels'))}, "
            f"MatchExpressions:{exprs_text}}}")
    return GoValue(dict(selector), text)


# -- field.Error constructors (k8s.io/apimachinery/pkg/util/validation/field) --------------------

def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, "", value)


def not_found(path: str, value: Any) -> FieldError:
    # FieldError.message() prints no value for NotFound, Kubernetes does: carry it in the detail.
    shown = _go_str(value) if isinstance(value, str) else repr(value)
    return FieldError("FieldValueNotFound", path, shown, value)


def not_supported(path: str, value: Any, supported: Iterable[str]) -> FieldError:
    listed = ", ".join(_go_str(v) for v in supported)
    # Kubernetes prints an empty string value as "" like any other.
    return FieldError("FieldValueNotSupported", path, f"supported values: {listed}",
                      value if value is not None else "")


def nonnegative(value: Any, path: str) -> list[FieldError]:
    """ValidateNonnegativeField."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


# -- names (k8s.io/apimachinery/pkg/util/validation) ---------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                     "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                     "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                         "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                         "'example.com', regex used for validation is "
                         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                     "with an alphabetic character, and end with an alphanumeric character (e.g. "
                     "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        errors.append(DNS1123_LABEL_MSG)
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(DNS1123_SUBDOMAIN_MSG)
    return errors


def is_dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errors.append(DNS1035_LABEL_MSG)
    return errors


_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


def is_valid_port_name(name: str) -> list[str]:
    """IsValidPortName: an IANA_SVC_NAME."""
    errors = []
    if len(name) > 15:
        errors.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(name):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        errors.append("must not contain consecutive hyphens")
    if name and not _PORT_NAME_LETTER.search(name):
        errors.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def port_num_errors(port: Any) -> list[str]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


# -- label selectors (metav1.LabelSelector) ------------------------------------------------------

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Mapping[str, Any] | None, path: str) -> list[FieldError]:
    """ValidateLabelSelector: matchLabels as labels, then each expression's operator/values rule,
    its key (a qualified name) and its values (label values)."""
    if not selector:
        return []
    errors = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        expr_path = f"{path}.matchExpressions[{i}]"
        operator = expr.get("operator", "")
        values = expr.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                errors.append(required(f"{expr_path}.values",
                                       "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errors.append(forbidden(f"{expr_path}.values",
                                        "may not be specified when `operator` is 'Exists' or "
                                        "'DoesNotExist'"))
        else:
            errors.append(invalid(f"{expr_path}.operator", operator, "not a valid selector operator"))
        key = expr.get("key", "")
        errors += [invalid(f"{expr_path}.key", key, msg) for msg in is_qualified_name(key)]
        errors += [invalid(f"{expr_path}.values[{j}]", value, msg)
                   for j, value in enumerate(values) if isinstance(value, str)
                   for msg in is_valid_label_value(value)]
    return errors


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels); a nil selector matches nothing."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        operator = expr.get("operator")
        values = expr.get("values") or []
        present = key in labels
        if operator == "In":
            if not present or labels[key] not in values:
                return False
        elif operator == "NotIn":
            if present and labels[key] in values:
                return False
        elif operator == "Exists":
            if not present:
                return False
        elif operator == "DoesNotExist":
            if present:
                return False
        else:
            return False
    return True
