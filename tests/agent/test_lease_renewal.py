"""The node Lease's renewal after a failure, as the kubelet's lease controller does it
(``component-helpers/apimachinery/lease/controller.go``): a renewal that timed out or was refused
retries with the Lease last written (one PUT), and only a conflict goes back to a GET.

A real API server; the failure is injected at the client's edge (the one PUT it fails), since a
server that times out one chosen request on demand does not exist."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, ResourceType
from pilothouse.components.agent.node import LEASES, NodeConfig, NodeStatusManager
from tests.conftest import ServerProcess


class CountingClient(APIClient):
    """Counts the Lease GETs and PUTs; fails the next PUT when told to."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[str] = []
        self.fail_next_update: errors.APIError | errors.ConnectionFailed | None = None

    async def get(self, r: ResourceType, name: str, namespace: str | None = None, subresource: str = "") -> Any:
        if r == LEASES:
            self.calls.append("GET")
        return await super().get(r, name, namespace, subresource)

    async def update(self, r: ResourceType, obj: Any, **kwargs: Any) -> Any:
        if r == LEASES:
            self.calls.append("PUT")
            failure, self.fail_next_update = self.fail_next_update, None
            if failure is not None:
                raise failure
        return await super().update(r, obj, **kwargs)


@pytest.mark.parametrize("failure", [errors.ConnectionFailed("PUT leases: timed out"),
                                     errors.from_status(429, {"message": "too many requests", "code": 429})],
                         ids=["timeout", "429"])
async def test_a_failed_renewal_retries_with_the_last_lease(server: ServerProcess,
                                                            failure: errors.APIError | errors.ConnectionFailed) -> None:
    name = f"lease-retry-{failure.__class__.__name__.lower()}"
    async with CountingClient(server.url) as client:
        node = NodeStatusManager(client, NodeConfig(name=name))
        await node.register()
        await node.renew_lease()  # no Lease yet: GET (404), create
        await node.renew_lease()  # GET the created one, PUT
        client.calls.clear()
        client.fail_next_update = failure
        with pytest.raises(type(failure)):
            await node.renew_lease()
        await node.renew_lease()
        assert client.calls == ["PUT", "PUT"], "the retry PUTs the Lease it had, without a GET first"
        lease = await client.get(LEASES, name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name


async def test_a_conflict_goes_back_to_a_get(server: ServerProcess) -> None:
    async with CountingClient(server.url) as client:
        node = NodeStatusManager(client, NodeConfig(name="lease-conflict"))
        await node.register()
        await node.renew_lease()
        await node.renew_lease()
        # someone else writes the Lease: ours is stale now
        other = await client.get(LEASES, "lease-conflict", "kube-node-lease")
        other["metadata"]["labels"] = {"touched": "yes"}
        await client.update(LEASES, other)
        client.calls.clear()
        await node.renew_lease()
        assert client.calls == ["PUT", "GET", "PUT"]
