"""Defaulting of batch/v1 objects (pkg/apis/batch/v1/defaults.go) and the Job selector.

A Job's selector is generated from its UID (``generateSelector`` in pkg/registry/batch/job), and
the Job controller finds its pods only through it, so it is set here rather than left to clients.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.kinds.defaults_core import default_pod_template
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.meta import child

__all__ = [
    "CONTROLLER_UID_LABEL",
    "JOB_NAME_LABEL",
    "LEGACY_CONTROLLER_UID_LABEL",
    "LEGACY_JOB_NAME_LABEL",
    "default_cronjob",
    "default_job",
    "generate_job_selector",
]

LEGACY_JOB_NAME_LABEL = "job-name"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"

_INT32_MAX = 2**31 - 1


def _spec(obj: Object) -> dict[str, Any]:
    return child(obj, "spec")


def default_job(job: Object) -> None:
    spec = _spec(job)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = _INT32_MAX if spec.get("backoffLimitPerIndex") is not None else 6
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels")
    meta = job.setdefault("metadata", {})
    if template_labels is not None and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    failure_policy = spec.get("podFailurePolicy")
    if failure_policy is not None:
        for rule in failure_policy.get("rules") or ():
            for pattern in rule.get("onPodConditions") or ():
                if not pattern.get("status"):
                    pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if failure_policy is not None else "TerminatingOrFailed"
    default_pod_template(spec.get("template"))


def default_cronjob(cronjob: Object) -> None:
    spec = _spec(cronjob)
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    # SetDefaults_Job applies to Jobs only; the template's pod spec is defaulted like any other.
    job_spec = (spec.get("jobTemplate") or {}).get("spec")
    if job_spec is not None:
        default_pod_template(job_spec.get("template"))


def generate_job_selector(job: Object) -> None:
    """generateSelector: unless ``manualSelector``, label the template and select on the UID.

    Needs ``metadata.uid``; Kubernetes runs it in Validate, after the UID is assigned.
    Existing labels are kept (a wrong one is then rejected by validation), so it is idempotent.
    """
    spec = _spec(job)
    if spec.get("manualSelector"):
        return
    meta = job.get("metadata") or {}
    name = meta.get("name", "")
    uid = meta.get("uid", "")
    template = child(spec, "template")
    template_meta = child(template, "metadata")
    labels = child(template_meta, "labels")
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, name)
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, uid)
    selector = child(spec, "selector")
    match_labels = child(selector, "matchLabels")
    match_labels.setdefault(CONTROLLER_UID_LABEL, uid)
