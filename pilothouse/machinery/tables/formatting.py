"""Small cell formatters shared by the printers, each mirroring a Go helper printers.go calls.

``labels.FormatLabels``, ``metav1.FormatLabelSelector`` / ``LabelSelectorAsSelector().String()``,
``layoutContainerCells`` and ``IntOrString.String()`` all have output quirks ("<none>" vs "",
sorted requirements, ``in (a,b)``) that kubectl users see, so they are reproduced exactly.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "format_label_selector",
    "format_labels",
    "int_or_string",
    "layout_containers",
    "owner_controller",
    "selector_string",
]

_OPERATORS = {"In": " in ", "NotIn": " notin "}


def format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs joined by commas, or ``<none>``."""
    if not labels:
        return "<none>"
    return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))


def selector_string(selector: dict[str, Any] | None) -> str | None:
    """``metav1.LabelSelectorAsSelector(selector).String()``; None when the selector is invalid.

    Requirements are sorted by key; set values are sorted inside their parentheses.
    """
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key", "")
        operator = expression.get("operator")
        values = expression.get("values") or []
        if operator in _OPERATORS:
            if not values:
                return None
            requirements.append((key, f"{key}{_OPERATORS[operator]}({','.join(sorted(values))})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, "!" + key))
        else:
            return None
    requirements.sort(key=lambda r: r[0])
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: the selector string, ``<none>`` if empty, ``<error>``."""
    text = selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def layout_containers(containers: list[dict[str, Any]] | None) -> tuple[str, str]:
    """``layoutContainerCells``: comma-joined container names and images."""
    containers = containers or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def int_or_string(value: Any) -> str:
    """``intstr.IntOrString.String()``."""
    return str(value)


def owner_controller(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """``metav1.GetControllerOf``: the owner reference with ``controller: true``."""
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None
