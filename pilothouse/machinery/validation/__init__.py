"""Validation shared by every kind: schema shape (types, unknown fields), names, and metadata.

Each function returns a list (or a report) and never raises half-way, so the registry can collect
every problem into one ``Invalid`` (422) or ``BadRequest`` (400) answer.
"""

from __future__ import annotations

from pilothouse.machinery.validation.names import (
    NameValidator,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    name_is_path_segment,
)
from pilothouse.machinery.validation.objectmeta import (
    validate_annotations,
    validate_finalizers,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    validate_owner_references,
)
from pilothouse.machinery.validation.schema_check import (
    SchemaReport,
    check_against_schema,
    decode_error_message,
)

__all__ = [
    "NameValidator",
    "SchemaReport",
    "check_against_schema",
    "decode_error_message",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "name_is_dns1035_label",
    "name_is_dns_label",
    "name_is_dns_subdomain",
    "name_is_path_segment",
    "validate_annotations",
    "validate_finalizers",
    "validate_labels",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_owner_references",
]
