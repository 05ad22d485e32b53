"""Every PATCH flavour Kubernetes supports, plus managedFields / server-side apply.

- :func:`merge_patch` -- RFC 7386 JSON merge patch (``application/merge-patch+json``)
- :func:`json_patch` -- RFC 6902 JSON patch (``application/json-patch+json``)
- :func:`strategic_merge_patch` -- ``application/strategic-merge-patch+json``
- :func:`server_side_apply` -- ``application/apply-patch+yaml``
- :func:`track_update` -- managedFields bookkeeping for every non-apply write
- :mod:`.fieldset` -- field paths and the FieldsV1 encoding
"""

from __future__ import annotations

from pilothouse.machinery.patch.apply import conflict_error, server_side_apply
from pilothouse.machinery.patch.depth import check_patched_depth
from pilothouse.machinery.patch.fieldset import decode_fields_v1, encode_fields_v1, path_string
from pilothouse.machinery.patch.json_patch import json_patch
from pilothouse.machinery.patch.managed import manager_from_user_agent, track_update
from pilothouse.machinery.patch.merge import merge_patch
from pilothouse.machinery.patch.strategic import strategic_merge_patch, unsupported_strategic_merge_patch

__all__ = [
    "check_patched_depth",
    "conflict_error",
    "decode_fields_v1",
    "encode_fields_v1",
    "json_patch",
    "manager_from_user_agent",
    "merge_patch",
    "path_string",
    "server_side_apply",
    "strategic_merge_patch",
    "track_update",
    "unsupported_strategic_merge_patch",
]
