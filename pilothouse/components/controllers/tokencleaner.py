"""The token cleaner: deletes bootstrap-token Secrets once they expire
(``pkg/controller/bootstrap/tokencleaner.go``), so ``pilothouse token list`` and the bootstrap signer's
``cluster-info`` signatures do not keep them. The authenticator already refuses an expired token; this
is housekeeping, requeued for the moment each token expires.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import bootstraptoken as bt
from pilothouse.machinery.meta import Object

__all__ = ["TokenCleaner"]


SECRETS = resource("", "v1", "secrets")


class TokenCleaner(Controller):
    name = "tokencleaner"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        # The same kube-system Secrets informer as the bootstrap signer's (one list and watch).
        self.secrets: Informer = ctx.informers.informer(SECRETS, namespace="kube-system")
        self.secrets.add_handler(EventHandler.on_object(self._changed))

    def _changed(self, secret: Object) -> None:
        if secret.get("type") == bt.SECRET_TYPE:
            self.enqueue(secret)

    async def sync(self, key: str) -> None:
        secret = self.secrets.get(key)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            return
        now = datetime.now(UTC)
        when = bt.expiration(secret)
        if when is None:
            return
        if when > now:
            self.queue.add_after(key, (when - now).total_seconds() + 0.5)
            return
        self.log.info("deleting expired bootstrap token %s", key)
        try:
            # Only the Secret this cache saw expire, not one re-created under the same name since.
            await self.client.delete(SECRETS, secret["metadata"]["name"], "kube-system",
                                     preconditions={"uid": secret["metadata"]["uid"]})
        except errors.NotFoundError:
            pass
