"""``pilothouse dns``: the cluster DNS server alone (the node agent runs one of its own by default)."""

from __future__ import annotations

import click

from pilothouse.cli.main import _run, _setup_logging, _target, _wait_for_signal, connection_options

__all__ = ["dns_command"]


@connection_options
@click.option("--listen", default="127.0.0.1:53", show_default=True, help="Address and port (UDP and TCP).")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--upstream", "upstreams", multiple=True,
              help="Resolver for other names, ADDR[:PORT], repeatable (default: the host's /etc/resolv.conf).")
@click.option("-v", "--verbose", count=True)
def _dns(server_url: str | None, kubeconfig: str | None, listen: str, cluster_domain: str,
                upstreams: tuple[str, ...], verbose: int) -> None:
    """Serve cluster DNS: Services, endpoints and pods of the cluster zone, other names upstream."""
    from pilothouse.client.rest import APIClient
    from pilothouse.components.dns import ClusterDNS
    from pilothouse.components.dns.forward import parse_upstream

    _setup_logging(verbose)
    target = _target(server_url, kubeconfig)
    host, port = parse_upstream(listen)

    async def run() -> None:
        client = APIClient(target, user_agent="pilothouse-dns")
        server = ClusterDNS(client, domain=cluster_domain,
                            upstreams=[parse_upstream(u) for u in upstreams] if upstreams else None)
        try:
            await server.start(host, port)
            click.echo(f"cluster DNS listening on {host}:{server.port}", err=True)
            await _wait_for_signal()
        finally:
            await server.stop()
            await client.close()

    _run(run())


#: typed here: ``main`` imports this module at its end, a cycle mypy cannot infer through
dns_command: click.Command = click.command("dns")(_dns)
