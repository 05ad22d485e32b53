"""Query parameters and option bodies of REST requests → typed options for the registry."""

from __future__ import annotations

from typing import Any

from multidict import MultiMapping

from pilothouse.apiserver.registry import DeleteOptions, ListOptions, WriteContext
from pilothouse.machinery import validation
from pilothouse.machinery.errors import FieldError, bad_request, invalid
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.kinds.types import check_field_labels
from pilothouse.machinery.query import check_list_options, flag, integer
from pilothouse.machinery.query import resource_version as parse_resource_version
from pilothouse.machinery.schema import definitions, schema_for_kind
from pilothouse.machinery.selectors import parse_field_selector, parse_label_selector

__all__ = ["APPLY_PATCH", "check_body", "delete_options", "get_options", "list_options", "write_context"]

_FIELD_VALIDATION = {"Strict", "Warn", "Ignore", ""}
_DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
APPLY_PATCH = "application/apply-patch+yaml"
_NON_APPLY_PATCHES = ("application/json-patch+json", "application/merge-patch+json",
                      "application/strategic-merge-patch+json")


def _media_type(headers: Any) -> str:
    return str(headers.get("Content-Type", "")).split(";", 1)[0].strip().lower()


def list_options(query: MultiMapping[str], resource: ResourceType | None = None) -> ListOptions:
    """The options of a list, watch or deletecollection, refused before anything is read or streamed
    in kube-apiserver's order: unparsable values (400), combinations ListOptions forbids (422), a
    field label ``resource`` does not support (400), a malformed resourceVersion (400)."""
    limit = integer(query, "limit") or 0
    if limit < 0:
        limit = 0
    label_selector = parse_label_selector(query.get("labelSelector"))
    field_selector = parse_field_selector(query.get("fieldSelector"))
    check_list_options(query)
    if resource is not None:
        check_field_labels(resource.strategy, (field for field, _, _ in field_selector.terms))
    return ListOptions(
        label_selector=label_selector,
        field_selector=field_selector,
        limit=limit,
        continue_token=query.get("continue", ""),
        resource_version=parse_resource_version(query.get("resourceVersion", "")),
    )


def get_options(query: MultiMapping[str]) -> str:
    """A GET's resourceVersion, checked as a list's is (any version serves the current object)."""
    return parse_resource_version(query.get("resourceVersion", ""))


def write_context(query: MultiMapping[str], headers: Any, *, default_validation: str = "Warn") -> WriteContext:
    dry_run = query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise bad_request(f'unsupported dry run value "{value}", supported values: All')
    validation = query.get("fieldValidation", "")
    if validation not in _FIELD_VALIDATION:
        raise bad_request(f'fieldValidation parameter unsupported: {validation!r}; '
                          'valid values are "Ignore", "Warn" and "Strict"')
    if "force" in query and _media_type(headers) in _NON_APPLY_PATCHES:
        # ValidatePatchOptions: force is a *bool, so any value (false too) is refused. Only a PATCH
        # carries these content types.
        raise invalid("PatchOptions", "meta.k8s.io", "", [
            FieldError("FieldValueForbidden", "force", "may not be specified for non-apply patch")])
    manager = query.get("fieldManager", "")
    if len(manager) > 128:
        raise invalid("PatchOptions", "meta.k8s.io", "", [
            FieldError("FieldValueTooLong", "fieldManager", "may not be more than 128 characters", manager)])
    applying = _media_type(headers) == APPLY_PATCH
    if applying and not manager:
        raise invalid("PatchOptions", "meta.k8s.io", "", [
            FieldError("FieldValueRequired", "fieldManager", "is required for apply patch")])
    return WriteContext(
        dry_run=bool(dry_run),
        field_manager=manager,
        # The API server's default when a client sends no fieldValidation is Warn (1.27+).
        field_validation=validation or default_validation,
        force=flag(query, "force"),
        user_agent=headers.get("User-Agent", ""),
        operation="Apply" if applying else "Update",
    )


def check_body(body: Any, group: str, version: str, kind: str) -> None:
    """A request body that is not a stored object (DeleteOptions, a review, a Binding, an Eviction, a
    TokenRequest) decoded as kube-apiserver decodes it into its Go type: a wrong JSON type is a 400
    with the decoder's message before any field is read (a number where ``dryRun``'s list belongs
    was a 500 ``TypeError``; so was a Binding's ``target: 5``)."""
    schema = schema_for_kind(group, version, kind) if kind != "DeleteOptions" else definitions()[_DELETE_OPTIONS]
    if body is None or schema is None:
        return
    report = validation.check_against_schema(body, schema)
    if report.decode_errors:
        raise bad_request(validation.decode_error_message(kind, version, report.decode_errors[0]))


def delete_options(query: MultiMapping[str], body: Any) -> DeleteOptions:
    check_body(body, "meta.k8s.io", "v1", "DeleteOptions")
    options = DeleteOptions()
    if isinstance(body, dict):
        if body.get("kind") not in (None, "DeleteOptions"):
            raise bad_request(f"expected DeleteOptions, got {body.get('kind')}")
        options.grace_period_seconds = body.get("gracePeriodSeconds")
        options.propagation_policy = body.get("propagationPolicy")
        options.orphan_dependents = body.get("orphanDependents")
        preconditions = body.get("preconditions") or {}
        options.precondition_uid = preconditions.get("uid")
        options.precondition_resource_version = preconditions.get("resourceVersion")
        for value in body.get("dryRun") or ():
            if value != "All":
                raise bad_request(f'unsupported dry run value "{value}", supported values: All')
    grace = integer(query, "gracePeriodSeconds")
    if grace is not None:
        options.grace_period_seconds = grace
    if "propagationPolicy" in query:
        options.propagation_policy = query["propagationPolicy"]
    if "orphanDependents" in query:
        options.orphan_dependents = flag(query, "orphanDependents")
    if options.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
        raise invalid("DeleteOptions", "meta.k8s.io", "", [FieldError(
            "FieldValueNotSupported", "propagationPolicy",
            'supported values: "Orphan", "Background", "Foreground"', options.propagation_policy)])
    if options.grace_period_seconds is not None and options.grace_period_seconds < 0:
        options.grace_period_seconds = 0
    return options
