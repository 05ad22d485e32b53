"""Strategies of the batch/v1 kinds, assembled from ``defaults_batch``, ``validate_batch`` and ``prepare``.

Note that Job's ``validate`` also generates the selector from ``metadata.uid``, exactly where
Kubernetes does it (jobStrategy.Validate runs after the UID is assigned).
"""

from __future__ import annotations

from pilothouse.machinery.kinds import defaults_batch as d
from pilothouse.machinery.kinds import fields as f
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds import validate_batch as v
from pilothouse.machinery.kinds.types import Strategy, status_strategy

__all__ = ["CRONJOB", "CRONJOB_STATUS", "JOB", "JOB_STATUS"]

JOB = Strategy(
    default=d.default_job,
    validate=v.validate_job,
    validate_update=v.validate_job_update,
    prepare_for_create=p.create_with_zero_status("Job"),
    prepare_for_update=p.update_keeping_status(),
    selectable_fields=f.job_fields,
    field_label_error='field label "{label}" not supported for batchv1.Job',
)
JOB_STATUS = status_strategy(JOB)

CRONJOB = Strategy(
    default=d.default_cronjob,
    validate=v.validate_cronjob,
    validate_update=v.validate_cronjob_update,
    prepare_for_create=p.create_with_zero_status("CronJob"),
    prepare_for_update=p.update_keeping_status(),
)
CRONJOB_STATUS = status_strategy(CRONJOB)
