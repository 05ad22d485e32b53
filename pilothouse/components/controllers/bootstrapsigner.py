"""The bootstrap signer: signs ``kube-public/cluster-info`` with every bootstrap token that may sign
(``pkg/controller/bootstrap/bootstrapsigner.go``).

For each Secret of type ``bootstrap.kubernetes.io/token`` in kube-system with
``usage-bootstrap-signing: "true"`` that has not expired, the ConfigMap carries
``jws-kubeconfig-<token-id>``, a detached JWS of its ``kubeconfig`` keyed by the token's secret;
signatures of tokens deleted or expired are removed. A joining node reads the ConfigMap anonymously
and, finding its token's signature valid, knows the server it talks to holds its token before it
sends the token anywhere (``pilothouse agent --token``, kubeadm's token discovery).

One key, one level-triggered sync over the whole ConfigMap: every event of either kind enqueues it,
and a token's expiry enqueues it again at that moment.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import bootstraptoken as bt
from pilothouse.machinery.meta import Object

__all__ = ["BootstrapSigner"]


SECRETS = resource("", "v1", "secrets")
CONFIGMAPS = resource("", "v1", "configmaps")
_KEY = "kube-public/cluster-info"


def signatures(content: str, secrets: list[Object], now: datetime) -> tuple[dict[str, str], datetime | None]:
    """``jws-kubeconfig-<id>`` -> signature for every token that signs, and the next expiry among them."""
    out: dict[str, str] = {}
    next_expiry: datetime | None = None
    for secret in secrets:
        token_id = bt.secret_data(secret, "token-id")
        if (secret.get("type") != bt.SECRET_TYPE or secret["metadata"].get("deletionTimestamp")
                or secret["metadata"]["name"] != bt.SECRET_PREFIX + token_id
                or bt.secret_data(secret, "usage-bootstrap-signing") != "true" or bt.expired(secret, now)):
            continue
        out[bt.JWS_PREFIX + token_id] = bt.detached_signature(content, token_id,
                                                              bt.secret_data(secret, "token-secret"))
        when = bt.expiration(secret)
        if when is not None:
            next_expiry = when if next_expiry is None else min(next_expiry, when)
    return out, next_expiry


class BootstrapSigner(Controller):
    name = "bootstrapsigner"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.secrets: Informer = ctx.informers.informer(SECRETS, namespace="kube-system")
        self.configmaps: Informer = ctx.informers.informer(CONFIGMAPS, namespace="kube-public",
                                                           field_selector=f"metadata.name={bt.CLUSTER_INFO}")
        self.secrets.add_handler(EventHandler.on_object(self._secret_changed, self._secret_changed))
        self.configmaps.add_handler(EventHandler.on_object(self._changed, self._changed))

    def _secret_changed(self, secret: Object) -> None:
        if secret.get("type") == bt.SECRET_TYPE:
            self._changed(secret)

    def _changed(self, _obj: Object) -> None:
        self.enqueue_key(_KEY)

    async def sync(self, key: str) -> None:
        current = self.configmaps.get(_KEY)
        if current is None:
            return
        data: dict[str, str] = dict(current.get("data") or {})
        content = data.get("kubeconfig")
        if content is None:
            return
        now = datetime.now(UTC)
        wanted, next_expiry = signatures(content, self.secrets.list(), now)
        unsigned = {k: v for k, v in data.items() if not k.startswith(bt.JWS_PREFIX)}
        if next_expiry is not None:
            self.queue.add_after(key, max(0.0, (next_expiry - now).total_seconds()) + 0.5)
        if {**unsigned, **wanted} == data:
            return
        await self.client.update(CONFIGMAPS, {**current, "data": {**unsigned, **wanted}})
