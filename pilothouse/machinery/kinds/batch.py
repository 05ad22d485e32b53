"""Strategies of the batch/v1 kinds. Placeholder values: filled in with defaults and validation."""

from __future__ import annotations

from dataclasses import replace

from pilothouse.machinery.kinds.types import (
    Strategy,
    keep_all_but_status,
    keep_status_on_update,
    reset_status_on_create,
)

__all__ = ["CRONJOB", "CRONJOB_STATUS", "JOB", "JOB_STATUS"]

_SPEC_AND_STATUS = Strategy(prepare_for_create=reset_status_on_create, prepare_for_update=keep_status_on_update)

JOB = _SPEC_AND_STATUS
JOB_STATUS = replace(JOB, prepare_for_update=keep_all_but_status)
CRONJOB = _SPEC_AND_STATUS
CRONJOB_STATUS = replace(CRONJOB, prepare_for_update=keep_all_but_status)
