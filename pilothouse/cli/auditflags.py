"""kube-apiserver's audit log flags, shared by ``server`` and ``up`` (apiserver/audit/).

Collected into ``ctx.meta`` as the request-limit flags are. A bad policy file or flag stops the
command before anything starts, in one line with kube-apiserver's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pilothouse.apiserver.audit import AuditLogOptions

__all__ = ["audit_config", "audit_options"]

_META = "pilothouse.audit"


def _collect(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta.setdefault(_META, {})[param.name] = value


def audit_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--audit-log-path", "path", default="", expose_value=False, callback=_collect,
                     help="Write audit events to this file ('-': standard output); auditing needs "
                          "--audit-policy-file too. Off by default, as in kube-apiserver."),
        click.option("--audit-policy-file", "policy_file", default="", expose_value=False, callback=_collect,
                     help="An audit.k8s.io/v1 Policy: which requests are logged, at which level."),
        click.option("--audit-log-maxage", "max_age", type=int, default=0, expose_value=False, callback=_collect,
                     help="Days to keep rotated audit log files (0: no limit)."),
        click.option("--audit-log-maxbackup", "max_backup", type=int, default=0, expose_value=False,
                     callback=_collect, help="Rotated audit log files to keep (0: all)."),
        click.option("--audit-log-maxsize", "max_size", type=int, default=0, expose_value=False, callback=_collect,
                     help="Megabytes of the audit log before it is rotated (0: 100, lumberjack's default)."),
        click.option("--audit-log-compress", "compress", is_flag=True, expose_value=False, callback=_collect,
                     help="Gzip rotated audit log files."),
        click.option("--audit-log-format", "format", default="json", show_default=True, expose_value=False,
                     callback=_collect, help="json (one Event per line) or legacy (one text line)."),
        click.option("--audit-log-mode", "mode", default="blocking", show_default=True, expose_value=False,
                     callback=_collect,
                     help="When the writer's queue is full: blocking (the request waits) or batch (the event "
                          "is dropped and counted); blocking-strict is blocking."),
        click.option("--audit-log-batch-buffer-size", "buffer_size", type=int, default=10000, show_default=True,
                     expose_value=False, callback=_collect, help="Events queued for the writer at most."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def audit_config() -> AuditLogOptions:
    from pilothouse.apiserver.audit import AuditLogOptions, PolicyError, load_policy

    options = AuditLogOptions(**click.get_current_context().meta.get(_META, {}))
    try:
        options.check()
        if options.policy_file:
            load_policy(options.policy_file)
    except (ValueError, PolicyError) as error:
        raise click.ClickException(f"cannot start the API server: {error}") from None
    return options
