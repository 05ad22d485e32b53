"""kube-proxy's tuning flags, for ``pilothouse proxy`` and the agent that embeds the proxy:
``--nodeport-addresses``, ``--sync-period``, ``--min-sync-period``.

Collected into ``ctx.meta`` as the request-limit flags are (limitflags.py), so the two commands get
them without three more parameters each.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

__all__ = ["proxy_tuning", "proxy_tuning_options"]

_META = "pilothouse.proxy"


def _collect(ctx: click.Context, key: str, value: Any) -> None:
    ctx.meta.setdefault(_META, {})[key] = value


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> None:
    from pilothouse.apiserver.requestlimits import parse_go_duration

    try:
        # A bare number is seconds, a convenience on the command line only.
        seconds = float(value) if value.replace(".", "", 1).isdigit() else parse_go_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    _collect(ctx, "sync_period" if param.name == "sync_period" else "min_sync_period", seconds)


def _node_port_addresses(ctx: click.Context, param: click.Parameter, value: str) -> None:
    ranges = tuple(part.strip() for part in value.split(",") if part.strip())
    if ranges == ("primary",):  # the node's primary IP, learnt from its Node object at start
        _collect(ctx, "nodeport_addresses", ranges)
        return
    for cidr in ranges:
        if cidr == "primary":  # kube-proxy's validation: "primary" stands alone
            raise click.BadParameter("'primary' cannot be combined with CIDRs")
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        if network.version != 4:
            raise click.BadParameter(f"{cidr}: the proxy programs IPv4 only")
    _collect(ctx, "nodeport_addresses", ranges)


def proxy_tuning_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--nodeport-addresses", default="", expose_value=False, callback=_node_port_addresses,
                     help="NodePorts and health check node ports answer only on this node's addresses within "
                          "these CIDRs (comma-separated), or on its primary IP ('primary': its InternalIP); "
                          "default: every address but loopback."),
        # kube-proxy's --sync-period is 30s, but between its hourly full syncs (FullSyncPeriod) its
        # periodic syncs change nothing, as ours would: the period here is the full resync's
        click.option("--sync-period", default="1h", show_default=True, expose_value=False, callback=_duration,
                     help="How often the proxy rewrites its whole table from the informers (repairs rules "
                          "changed behind its back; Go duration)."),
        click.option("--min-sync-period", default="0s", show_default=True, expose_value=False, callback=_duration,
                     help="The least time between two syncs: a burst of changes costs one (Go duration)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def proxy_tuning() -> dict[str, Any]:
    """The flags' values as :class:`~pilothouse.components.proxy.ProxyConfig` fields."""
    context = click.get_current_context(silent=True)
    return dict(context.meta.get(_META, {})) if context is not None else {}
