"""Service-account credentials for the controllers, as kube-controller-manager's
``--use-service-account-credentials`` gets them (``DynamicControllerClientBuilder`` in
``k8s.io/controller-manager/pkg/clientbuilder``).

The controller manager's own identity (``system:kube-controller-manager``) may only read everything,
create service accounts and request their tokens. Each controller acts as its own service account in
``kube-system`` (``system:serviceaccount:kube-system:replicaset-controller``, ...), which the bootstrap
policy's ``system:controller:*`` ClusterRoleBindings authorise for that controller's writes alone.

A :class:`ServiceAccountTokenSource` makes the account if it is missing, asks TokenRequest for a token
(an hour, the builder's ``defaultExpirationSeconds``) and asks again when 80% of its life has passed,
or at once after the server answered 401 (the account deleted and re-made, the signing key rotated),
as the builder's transport resets its cached token on a 401.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pilothouse.client import errors
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient, resource

__all__ = ["CONTROLLER_NAMESPACE", "ServiceAccountTokenSource", "bearer_only"]

#: Where the controllers' service accounts live (the builder's ``Namespace: metav1.NamespaceSystem``).
CONTROLLER_NAMESPACE = "kube-system"
#: The builder asks for an hour and refreshes with a fifth of it left.
EXPIRATION_SECONDS = 3600
REFRESH_FRACTION = 0.8

_SERVICE_ACCOUNTS = resource("", "v1", "serviceaccounts")


def bearer_only(config: ClientConfig) -> ClientConfig:
    """``config`` without its client certificate: a request that shows one is that certificate's user
    (x509 comes first in the server's chain), so a service account's token must travel alone."""
    if config.ssl_context is None:
        return replace(config, token=None)
    context = ssl.create_default_context(cadata=config.ca_pem.decode() if config.ca_pem else None)
    context.check_hostname = config.ssl_context.check_hostname
    context.verify_mode = config.ssl_context.verify_mode
    return replace(config, ssl_context=context, token=None)


class ServiceAccountTokenSource:
    """Tokens of one service account, requested with ``client`` (the controller manager's identity)."""

    def __init__(self, client: APIClient, name: str, namespace: str = CONTROLLER_NAMESPACE) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self._token = ""
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token and time.monotonic() < self._refresh_at:
            return self._token
        async with self._lock:  # one TokenRequest however many workers wait for it
            if not self._token or time.monotonic() >= self._refresh_at:
                await self._request()
        return self._token

    def reset(self) -> None:
        """The server refused the token: ask for a new one on the next request."""
        self._refresh_at = 0.0

    async def _ensure_account(self) -> None:
        try:
            await self.client.get(_SERVICE_ACCOUNTS, self.name, self.namespace)
        except errors.NotFoundError:
            body: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
                                    "metadata": {"name": self.name, "namespace": self.namespace}}
            try:
                await self.client.create(_SERVICE_ACCOUNTS, body, self.namespace)
            except errors.AlreadyExistsError:
                pass  # made meanwhile (another controller manager)

    async def _request(self) -> None:
        await self._ensure_account()
        asked = time.monotonic()
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": EXPIRATION_SECONDS}}
        answer = await self.client.create(_SERVICE_ACCOUNTS, body, self.namespace, name=self.name,
                                          subresource="token")
        status = answer.get("status") or {}
        lifetime = float(EXPIRATION_SECONDS)
        if status.get("expirationTimestamp"):
            expires = datetime.fromisoformat(str(status["expirationTimestamp"]).replace("Z", "+00:00"))
            lifetime = max((expires - datetime.now(UTC)).total_seconds(), 0.0)
        self._token = str(status.get("token", ""))
        self._refresh_at = asked + lifetime * REFRESH_FRACTION
