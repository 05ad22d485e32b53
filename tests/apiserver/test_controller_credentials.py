"""``--use-service-account-credentials``' token source against a server on the defaults (HTTPS, Node,RBAC):
the account is made when missing, its TokenRequest token authenticates as the account (without the
client certificate, which would win), and a 401 (the account deleted, within the token cache's 10 s)
makes it ask again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pilothouse.apiserver.tokencache import SUCCESS_TTL
from pilothouse.client import errors
from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.client.satokensource import ServiceAccountTokenSource, bearer_only
from tests.conftest import ServerProcess, start_server_process

ACCOUNTS = resource("", "v1", "serviceaccounts")
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("sacreds"), secure=True,
                                  extra=("--disable", "scheduler,controller-manager"))
    yield server
    server.stop()


async def _whoami(client: APIClient) -> str:
    answer: dict[str, Any] = await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                                  body=REVIEW)
    return str(answer["status"]["userInfo"]["username"])


def test_a_controller_client_is_its_service_account_and_recovers_from_401(secure: ServerProcess) -> None:
    async def scenario() -> None:
        async with APIClient(load_kubeconfig(secure.kubeconfig)) as root:
            assert await _whoami(root) == "kubernetes-admin"
            source = ServiceAccountTokenSource(root, "probe-controller")
            async with APIClient(bearer_only(root.config), token_source=source) as account:
                assert await _whoami(account) == "system:serviceaccount:kube-system:probe-controller"
                created = await root.get(ACCOUNTS, "probe-controller", "kube-system")
                # Cached: no second TokenRequest, the same token.
                first = await source.token()
                assert await source.token() == first
                # The account deleted: its tokens end within the token cache's TTL (10 s, as
                # kube-apiserver's; 20 s more of slack for a loaded machine) with a 401, and the next
                # request gets a new one for the account made anew.
                await root.delete(ACCOUNTS, "probe-controller", "kube-system")
                deadline = time.monotonic() + SUCCESS_TTL + 20
                with pytest.raises(errors.ClientError) as refused:
                    while time.monotonic() < deadline:
                        await _whoami(account)
                        await asyncio.sleep(0.5)
                assert refused.value.code == 401
                assert await _whoami(account) == "system:serviceaccount:kube-system:probe-controller"
                again = await root.get(ACCOUNTS, "probe-controller", "kube-system")
                assert again["metadata"]["uid"] != created["metadata"]["uid"]
                assert await source.token() != first

    asyncio.run(scenario())
