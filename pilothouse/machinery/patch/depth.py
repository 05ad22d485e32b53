"""The depth of a patched object, bounded like a request body's (machinery/bodyshape.py).

A body deeper than :data:`~pilothouse.machinery.bodyshape.MAX_DEPTH` is refused at the door, but a
patch builds its object from the stored one: a JSON patch ``add`` at a deep path, or a few ``copy``
operations of a subtree into itself (each doubles the depth), makes an object deeper than any body
that was checked. Every later step walks objects recursively (validation, managed fields, orjson's
encoder stops at 254 levels), so the patched object is checked too.

kube-apiserver (``handlers/patch.go``) decodes the patched JSON into the typed object and answers a
decode error, its json decoder's "exceeded max depth" included, with
``errors.NewInvalid(schema.GroupKind{}, "", field.ErrorList{field.Invalid(field.NewPath("patch"),
string(patchedObjJS), err.Error())})``: a 422 Invalid on the field ``patch`` whose value is the
patched object's JSON. Ours says the same, with our lower limit.
"""

from __future__ import annotations

import json
from typing import Any

from pilothouse.machinery.bodyshape import TooDeep, members
from pilothouse.machinery.errors import FieldError, StatusError, invalid

__all__ = ["check_patched_depth", "patched_too_deep"]


def patched_too_deep(patched: Any = None) -> StatusError:
    """The 422 for a patch whose result is too deep; ``patched`` is shown when it can be encoded."""
    value: str | None = None
    if patched is not None:
        try:
            value = json.dumps(patched, separators=(",", ":"))
        except RecursionError:
            value = None
    return invalid("", "", "", [FieldError("FieldValueInvalid", "patch", str(TooDeep()), value)])


def check_patched_depth(patched: Any) -> None:
    """Raise :func:`patched_too_deep` when ``patched`` nests deeper than a request body may."""
    try:
        members(patched)
    except (TooDeep, RecursionError):
        raise patched_too_deep(patched) from None
