"""``pilothouse pod-routes``: the routes to the other Nodes' pod ranges alone (the agent runs them
itself when its range comes from its Node, ``--pod-cidr auto``)."""

from __future__ import annotations

import click

from pilothouse.cli.main import _run, _setup_logging, _target, _wait_for_signal, connection_options

__all__ = ["pod_routes_command"]


@connection_options
@click.option("--node-name", required=True, help="This host's Node: routes go from its range to the others'.")
@click.option("--backend", type=click.Choice(["auto", "vxlan", "direct"]), default="auto", show_default=True,
              help="auto: direct routes to Nodes on a shared subnet, VXLAN to the others.")
@click.option("--address", default="",
              help="This host's address, when it is no Node (a server host without an agent): route from it.")
@click.option("-v", "--verbose", count=True)
def _pod_routes(server_url: str | None, kubeconfig: str | None, node_name: str, backend: str, address: str,
                verbose: int) -> None:
    """Route this host's pods to every other Node's pod range (direct or VXLAN), as flannel does."""
    from pilothouse.client.rest import APIClient
    from pilothouse.components.podnetwork import PodRoutes

    _setup_logging(verbose)
    target = _target(server_url, kubeconfig)

    async def run() -> None:
        client = APIClient(target, user_agent=f"pilothouse-pod-routes/{node_name}")
        routes = PodRoutes(client, node_name, backend=backend, address=address)
        try:
            await routes.start()
            await _wait_for_signal()
        finally:
            await routes.stop()
            await client.close()

    _run(run())


#: typed here: ``main`` imports this module at its end, a cycle mypy cannot infer through
pod_routes_command: click.Command = click.command("pod-routes")(_pod_routes)
