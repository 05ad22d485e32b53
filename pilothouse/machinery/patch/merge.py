"""JSON merge patch (RFC 7386), ``application/merge-patch+json``.

Why it exists: ``kubectl label``/``annotate``/``patch --type merge`` and many controllers send
merge patches. Kubernetes applies them with evanphx/json-patch's ``MergePatch``: objects merge
recursively, ``null`` deletes a key, and anything that is not an object (lists included)
replaces the target wholesale.
"""

from __future__ import annotations

import copy
from typing import Any

from pilothouse.machinery.kinds.types import Object

__all__ = ["merge_patch"]


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def merge_patch(original: Object, patch: Any, *, share_original: bool = False) -> Object:
    """Apply an RFC 7386 merge patch; ``original`` is not modified.

    A non-object patch replaces the document (the caller's decoding then rejects it if the
    result is not an object, as the API server does).

    ``share_original``: the result may hold the parts of ``original`` the patch did not touch,
    for a caller whose ``original`` is already its own copy (the API server's read-modify-write
    hands the patch a clone of the stored object): copying a pod again cost a twentieth of the
    server's CPU in the density run. The patch's values are copied either way, since a write
    that races applies the same patch again.
    """
    result: Object = _merge(original if share_original else copy.deepcopy(original), patch)
    return result
