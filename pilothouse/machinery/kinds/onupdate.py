"""Kinds whose update is checked by the same rules as their create (ValidateXUpdate = ValidateX)."""

from __future__ import annotations

from collections.abc import Callable

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import Object

__all__ = ["same_on_update"]


def same_on_update(validate: Callable[[Object], list[FieldError]]) -> Callable[[Object, Object], list[FieldError]]:
    """An update validator that runs ``validate`` on the new object, ignoring the old one."""
    def validate_update(new: Object, _old: Object) -> list[FieldError]:
        return validate(new)
    return validate_update
