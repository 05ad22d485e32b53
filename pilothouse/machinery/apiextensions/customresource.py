"""All of a custom resource's schema validation in kube-apiserver's order (``validate_custom_resource``).

``customResourceStrategy.Validate``/``ValidateUpdate`` run the OpenAPI schema, embedded
resources and list-type checks (:func:`validate_instance`), then the CEL rules -- unless an
earlier error is one that makes rule results meaningless (a wrong type, a missing required field,
an unsupported enum value, something too long or too many), in which case the rules are skipped
with one error saying so (``hasBlockingErr``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pilothouse.machinery.apiextensions.instance import validate_instance
from pilothouse.machinery.apiextensions.nodes import Schema
from pilothouse.machinery.apiextensions.paths import NIL_PATH
from pilothouse.machinery.apiextensions.rules import validate_rules
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import invalid

__all__ = ["RULES_NOT_CHECKED", "validate_custom_resource"]

RULES_NOT_CHECKED = ("some validation rules were not checked because the object was invalid; correct the "
                     "existing errors to complete validation")
_BLOCKING = frozenset({"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany",
                       "FieldValueTypeInvalid"})


def validate_custom_resource(schema: Schema, obj: Any, old: Any = None, prior: Sequence[FieldError] = (),
                             warnings: list[str] | None = None) -> list[FieldError]:
    """Schema and rule errors of ``obj`` (``old`` on update, for ratcheting and transition rules).

    ``prior`` are errors found before (metadata checks), which count for skipping the rules but
    are not repeated in the result. Rule failures that ratcheting turns into warnings go to
    ``warnings`` when given (Kubernetes returns them as ``Warning`` headers).
    """
    errors = validate_instance(schema, obj, old)
    if not _has_rules(schema):
        return errors  # upstream has no CEL validator at all then, nor its "not checked" error
    if any(e.type in _BLOCKING for e in (*prior, *errors)):
        # field.Invalid(nil, nil, ...): a nil value prints as "null".
        return [*errors, invalid(NIL_PATH, "null", RULES_NOT_CHECKED)]
    return errors + validate_rules(schema, obj, old, warnings=warnings)


def _has_rules(s: Any) -> bool:
    if not isinstance(s, dict):
        return False
    if s.get("x-kubernetes-validations"):
        return True
    subs = [*(s.get("properties") or {}).values(), s.get("items"), s.get("additionalProperties")]
    return any(_has_rules(sub) for sub in subs)
