"""Strategies of the smaller groups: coordination, events, discovery, policy."""

from __future__ import annotations

from dataclasses import replace

from pilothouse.machinery.kinds.types import (
    Strategy,
    keep_all_but_status,
    keep_status_on_update,
    reset_status_on_create,
)

__all__ = ["ENDPOINTSLICE", "EVENT_V1", "LEASE", "PDB", "PDB_STATUS"]

LEASE = Strategy()
EVENT_V1 = Strategy()
ENDPOINTSLICE = Strategy()
PDB = Strategy(prepare_for_create=reset_status_on_create, prepare_for_update=keep_status_on_update)
PDB_STATUS = replace(PDB, prepare_for_update=keep_all_but_status)
