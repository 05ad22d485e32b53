"""``pilothouse agent --server URL --token T``: the agent's join flags and their first step (kubeadm
join's discovery; see :mod:`pilothouse.components.agent.join`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

__all__ = ["join_cluster", "join_options"]


def join_options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option("--discovery-timeout", type=float, default=60.0, show_default=True,
                            help="Seconds to wait for the server to know --token (kubeadm's discovery timeout).")(
        function)
    return click.option("--token", default=None, envvar="PILOTHOUSE_TOKEN",
                        help="Join token from `pilothouse token create` (K10<CA hash>::<id>.<secret>): verify "
                             "the server's CA with it, then obtain this node's credentials.")(function)


def join_cluster(server_url: str | None, kubeconfig: str | None, token: str, timeout: float,
                 root_dir: str) -> tuple[str, str | None]:
    """(kubeconfig to run with, bootstrap kubeconfig for the CSR bootstrap or None). Over HTTPS an
    existing kubeconfig whose certificate has not expired skips discovery, as kubelet skips its
    bootstrap: a restarted agent does not need a token that may have expired since it joined."""
    from pilothouse.components.agent.bootstrap import client_certificate_valid
    from pilothouse.components.agent.join import JoinError, discover

    if not server_url:
        raise click.BadParameter("--token needs --server (the API server to join)", param_hint="--token")
    root = Path(root_dir)
    bootstrap = root / "bootstrap-kubelet.conf"
    kubeconfig = kubeconfig or str(root / "kubelet.conf")
    secure = server_url.startswith("https:")
    if secure and client_certificate_valid(Path(kubeconfig)):
        return kubeconfig, None
    try:
        asyncio.run(discover(server_url, token, bootstrap, timeout))
    except JoinError as error:
        raise click.ClickException(f"cannot join {server_url}: {error}") from None
    # Over plain HTTP there is no certificate to obtain: the token itself is the node's credential.
    return (kubeconfig, str(bootstrap)) if secure else (str(bootstrap), None)
