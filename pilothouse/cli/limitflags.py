"""kube-apiserver's request-limit flags, shared by ``server`` and ``up`` (apiserver/requestlimits.py).

Collected into ``ctx.meta`` as the TLS flags are, so every command taking ``server_options`` gets them
without four more parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pilothouse.apiserver.requestlimits import RequestLimitOptions

__all__ = ["limit_config", "limit_options"]

_META = "pilothouse.limits"


def _collect(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta.setdefault(_META, {})[param.name] = value


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> None:
    from pilothouse.apiserver.requestlimits import parse_go_duration

    try:
        # A bare number is seconds, a convenience on the command line only.
        _collect(ctx, param, float(value) if value.isdigit() else parse_go_duration(value))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def limit_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--max-requests-inflight", type=click.IntRange(min=0), default=400, show_default=True,
                     expose_value=False, callback=_collect,
                     help="Read-only requests served at once; more are answered 429 (0: no limit). With priority and "
                          "fairness, the two limits added are the seats the priority levels share."),
        click.option("--max-mutating-requests-inflight", type=click.IntRange(min=0), default=200,
                     show_default=True, expose_value=False, callback=_collect,
                     help="Mutating requests served at once; more are answered 429 (0: no limit)."),
        click.option("--enable-priority-and-fairness", type=click.BOOL, default=True, is_flag=False,
                     flag_value=True, show_default=True, expose_value=False, callback=_collect,
                     help="API Priority and Fairness: requests classified by FlowSchema share the two limits' "
                          "seats by priority level; false: the max-in-flight limits alone."),
        click.option("--request-timeout", default="1m0s", show_default=True, expose_value=False,
                     callback=_duration,
                     help="How long a non-long-running request may take before a 504 (Go duration)."),
        click.option("--min-request-timeout", type=click.IntRange(min=0), default=1800, show_default=True,
                     expose_value=False, callback=_collect,
                     help="Seconds a watch without timeoutSeconds lives at least (randomised up to twice)."),
        # Tests shorten it to see a slow-loris client dropped.
        click.option("--idle-connection-timeout", "idle_timeout", type=float, default=90.0, hidden=True,
                     expose_value=False, callback=_collect),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def limit_config() -> RequestLimitOptions:
    from pilothouse.apiserver.requestlimits import RequestLimitOptions

    flags = click.get_current_context().meta.get(_META, {})
    return RequestLimitOptions(**flags)
