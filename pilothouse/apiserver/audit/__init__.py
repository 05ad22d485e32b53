"""The audit log (kube-apiserver's ``--audit-*`` flags): policy, per-request records, the log writer.

See ``filter.py`` for where it sits in the request path and ``backend.py`` for how lines are written.
"""

from __future__ import annotations

from pilothouse.apiserver.audit.backend import AuditLogOptions, LogBackend
from pilothouse.apiserver.audit.event import annotate
from pilothouse.apiserver.audit.filter import install, note_request_object
from pilothouse.apiserver.audit.policy import Policy, PolicyError, load_policy

__all__ = ["AuditLogOptions", "LogBackend", "Policy", "PolicyError", "annotate", "install", "load_policy",
           "note_request_object"]
