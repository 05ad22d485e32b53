"""Kind rules of batch/v1 Job and CronJob (pkg/apis/batch/validation/validation.go).

Job: counts non-negative, the pod template restarts OnFailure or Never, the selector is the
generated one (unless ``manualSelector``) and, once created, selector, template and completions
are fixed. CronJob: a valid cron schedule, a known concurrency policy, a short enough name, and
a job template that would make a valid Job.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.cron import CronError, parse_schedule
from pilothouse.machinery.kinds.defaults_batch import (
    CONTROLLER_UID_LABEL,
    JOB_NAME_LABEL,
    LEGACY_CONTROLLER_UID_LABEL,
    LEGACY_JOB_NAME_LABEL,
    generate_job_selector,
)
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.kinds.validate_pod import validate_pod_template
from pilothouse.machinery.kinds.vcommon import (
    GoValue,
    go_labels,
    go_selector,
    invalid,
    label_selector_matches,
    nonnegative,
    not_supported,
    required,
    validate_label_selector,
)

__all__ = [
    "validate_cronjob",
    "validate_cronjob_update",
    "validate_job",
    "validate_job_update",
]

_MAX_INDEXED = 100_000
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def _job_spec_errors(spec: dict[str, Any], path: str) -> list[FieldError]:
    """validateJobSpec: the part shared by Jobs and CronJob job templates."""
    errors: list[FieldError] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errors += nonnegative(spec.get(key), f"{path}.{key}")
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errors.append(not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed":
        completions = spec.get("completions")
        if completions is None:
            errors.append(required(f"{path}.completions", "when completion mode is Indexed"))
        elif isinstance(completions, int) and completions > _MAX_INDEXED:
            errors.append(invalid(f"{path}.completions", completions,
                                  f"must be less than or equal to {_MAX_INDEXED} when completion mode is Indexed"))
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None and replacement not in ("TerminatingOrFailed", "Failed"):
        errors.append(not_supported(f"{path}.podReplacementPolicy", replacement, ("Failed", "TerminatingOrFailed")))
    template = spec.get("template")
    errors += validate_pod_template(template, f"{path}.template")
    restart = ((template or {}).get("spec") or {}).get("restartPolicy", "")
    if restart not in ("OnFailure", "Never"):
        errors.append(not_supported(f"{path}.template.spec.restartPolicy", restart, ("OnFailure", "Never")))
    elif restart == "OnFailure" and spec.get("podFailurePolicy") is not None:
        errors.append(invalid(f"{path}.template.spec.restartPolicy", restart,
                              'only "Never" is supported when podFailurePolicy is specified'))
    return errors


def _template_labels(spec: dict[str, Any]) -> dict[str, str] | None:
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels")


def _has_label(labels: dict[str, str], key: str, expected: str) -> list[FieldError]:
    """ValidateHasLabel."""
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [required(path, expected)]
    if labels[key] != expected:
        return [invalid(path, go_labels(labels), f"must be '{expected}'")]
    return []


def _generated_selector_errors(job: Object) -> list[FieldError]:
    spec = job.get("spec") or {}
    if spec.get("manualSelector"):
        return []
    labels = _template_labels(spec)
    if labels is None:
        return []
    meta = job.get("metadata") or {}
    uid = meta.get("uid", "")
    name = meta.get("name", "")
    errors: list[FieldError] = []
    if not uid:
        errors.append(required("metadata.uid"))
    errors += _has_label(labels, LEGACY_CONTROLLER_UID_LABEL, uid)
    errors += _has_label(labels, LEGACY_JOB_NAME_LABEL, name)
    errors += _has_label(labels, CONTROLLER_UID_LABEL, uid)
    errors += _has_label(labels, JOB_NAME_LABEL, name)
    selector = spec.get("selector") or {}
    if selector.get("matchLabels") != {CONTROLLER_UID_LABEL: uid} or selector.get("matchExpressions"):
        errors.append(invalid("spec.selector", go_selector(spec.get("selector")), "`selector` not auto-generated"))
    return errors


def validate_job(job: Object) -> list[FieldError]:
    """ValidateJob. Like Kubernetes' Validate, it first generates the selector (needs metadata.uid)."""
    generate_job_selector(job)
    spec = job.get("spec") or {}
    errors = _generated_selector_errors(job)
    selector = spec.get("selector")
    if selector is None:
        errors.append(required("spec.selector"))
    else:
        errors += validate_label_selector(selector, "spec.selector")
        if not label_selector_matches(selector, _template_labels(spec)):
            errors.append(invalid("spec.template.metadata.labels", go_labels(_template_labels(spec)),
                                  "`selector` does not match template `labels`"))
    return errors + _job_spec_errors(spec, "spec")


_MUTABLE_WHILE_SUSPENDED = ("labels", "annotations")
_MUTABLE_POD_SCHEDULING = ("nodeSelector", "tolerations", "schedulingGates")


def _comparable_template(template: dict[str, Any], old: dict[str, Any], relaxed: bool) -> dict[str, Any]:
    """For suspended Jobs that never started, scheduling directives may change (KEP-2926)."""
    if not relaxed:
        return template
    munged = dict(template)
    meta = dict(munged.get("metadata") or {})
    old_meta = old.get("metadata") or {}
    for key in _MUTABLE_WHILE_SUSPENDED:
        meta.pop(key, None)
        if key in old_meta:
            meta[key] = old_meta[key]
    munged["metadata"] = meta
    spec = dict(munged.get("spec") or {})
    old_spec = old.get("spec") or {}
    for key in _MUTABLE_POD_SCHEDULING:
        spec.pop(key, None)
        if key in old_spec:
            spec[key] = old_spec[key]
    affinity = dict(spec.get("affinity") or {})
    affinity.pop("nodeAffinity", None)
    old_node_affinity = (old_spec.get("affinity") or {}).get("nodeAffinity")
    if old_node_affinity is not None:
        affinity["nodeAffinity"] = old_node_affinity
    if affinity or "affinity" in old_spec:
        spec["affinity"] = affinity
    else:
        spec.pop("affinity", None)
    munged["spec"] = spec
    return munged


def _immutable(new: Any, old: Any, path: str, shown: Any) -> list[FieldError]:
    return [] if new == old else [invalid(path, shown, "field is immutable")]


def validate_job_update(new: Object, old: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = new.get("spec") or {}
    old_spec = old.get("spec") or {}
    if spec.get("completionMode") == "Indexed":
        completions = spec.get("completions")
        if completions != old_spec.get("completions") and completions is not None \
                and completions != spec.get("parallelism"):
            errors.append(invalid("spec.completions", completions,
                                  "can only be modified in tandem with spec.parallelism"))
    else:
        errors += _immutable(spec.get("completions"), old_spec.get("completions"), "spec.completions",
                             spec.get("completions"))
    errors += _immutable(spec.get("selector"), old_spec.get("selector"), "spec.selector",
                         go_selector(spec.get("selector")))
    relaxed = bool(spec.get("suspend")) and not (old.get("status") or {}).get("startTime")
    template = spec.get("template") or {}
    old_template = old_spec.get("template") or {}
    if _comparable_template(template, old_template, relaxed) != old_template:
        errors.append(invalid("spec.template", GoValue(template, "core.PodTemplateSpec{...}"), "field is immutable"))
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        errors += _immutable(spec.get(key), old_spec.get(key), f"spec.{key}", spec.get(key))
    return errors


# -- CronJob -----------------------------------------------------------------------------------

def _time_zone_errors(zone: Any) -> list[FieldError]:
    if zone is None:
        return []
    path = "spec.timeZone"
    if zone == "":
        return [invalid(path, zone, "timeZone must be nil or non-empty string")]
    for part in zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [invalid(path, zone, f"unknown time zone {zone}")]
    if zone.lower() == "local":
        return [invalid(path, zone, "timeZone must be an explicit time zone as defined in "
                                    "https://www.iana.org/time-zones")]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return [invalid(path, zone, f"unknown time zone {zone}")]
    return []


def _cronjob_spec_errors(spec: dict[str, Any], allow_tz_in_schedule: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    schedule = spec.get("schedule") or ""
    if not schedule:
        errors.append(required("spec.schedule"))
    else:
        try:
            parse_schedule(schedule)
        except CronError as exc:
            errors.append(invalid("spec.schedule", schedule, str(exc)))
        if "TZ" in schedule:
            if not allow_tz_in_schedule:
                errors.append(invalid("spec.schedule", schedule,
                                      "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
            elif spec.get("timeZone") is not None:
                errors.append(invalid("spec.schedule", schedule,
                                      "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    errors += _time_zone_errors(spec.get("timeZone"))
    policy = spec.get("concurrencyPolicy") or ""
    if not policy:
        errors.append(required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errors.append(not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace")))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errors += nonnegative(spec.get(key), f"spec.{key}")
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    errors += _job_spec_errors(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        errors.append(invalid("spec.jobTemplate.spec.selector", go_selector(job_spec["selector"]),
                              "`selector` will be auto-generated"))
    if job_spec.get("manualSelector"):
        errors.append(not_supported("spec.jobTemplate.spec.manualSelector", GoValue(True, "true"),
                                    ("nil", "false")))
    return errors


def validate_cronjob(cronjob: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    name = (cronjob.get("metadata") or {}).get("name") or ""
    if len(name) > 52:
        # Its jobs get an 11-character suffix and must fit in a 63-character label.
        errors.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    return errors + _cronjob_spec_errors(cronjob.get("spec") or {}, False)


def validate_cronjob_update(new: Object, old: Object) -> list[FieldError]:
    """Nothing beyond ``validate_cronjob`` (which the registry also runs on update): CronJob specs
    are mutable."""
    return []
