"""kube-apiserver 1.x's insecure port (``--insecure-port``, ``--insecure-bind-address``): opt-in plain HTTP.

The seed's units run the API server with these flags. As in kube-apiserver before 1.20, requests on
that listener skip authentication and authorization altogether: every caller is the unsecured
superuser (``system:unsecured`` in ``system:masters``, ``pkg/kubeapiserver/server/insecure_handler.go``).
The same routes are served; only the auth layer differs. The request limits apply as on the secure
port (``BuildInsecureHandlerChain`` has ``WithTimeoutForNonLongRunningRequests`` and
``WithMaxInFlightLimit``, with seats of its own), so a request costs the same on either listener
except for TLS and the auth chain, which is what ``bench/tls_same_process.py`` compares.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from pilothouse.apiserver.auth import ALL_AUTHENTICATED, SYSTEM_MASTERS, AllowAll, AuthLayer, UserInfo
from pilothouse.apiserver.requestlimits import RequestLimitOptions
from pilothouse.apiserver.requestlimits import install as install_request_limits

if TYPE_CHECKING:
    from pilothouse.apiserver.app import APIServer

__all__ = ["UNSECURED_USER", "Unsecured", "start_insecure", "unsecured_layer"]

log = logging.getLogger("pilothouse.apiserver")

#: kube-apiserver's insecureSuperuser.
UNSECURED_USER = UserInfo("system:unsecured", (SYSTEM_MASTERS, ALL_AUTHENTICATED))


class Unsecured:
    """Whoever reaches the insecure port is the superuser: no credentials are looked at."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        return UNSECURED_USER


def unsecured_layer(secure: AuthLayer) -> AuthLayer:
    """The insecure listener's auth layer: no authn, no authz, no impersonation; TokenReview and
    TokenRequest still answer through the real chain's token authenticators and issuer."""
    return AuthLayer([Unsecured()], AllowAll(), tokens=secure.tokens, service_accounts=secure.service_accounts)


async def start_insecure(api: APIServer, address: str, port: int,
                         limits: RequestLimitOptions | None = None) -> web.AppRunner:
    """Listen on ``address:port`` over plain HTTP with the routes of ``api`` behind
    :func:`unsecured_layer` and ``limits`` (seats of its own); the caller cleans the returned runner up."""
    log.warning("insecure port %s:%d serves the API over plain HTTP with NO authentication or authorization",
                address, port)
    app = api.build_app(unsecured_layer(api.auth))
    if limits is not None:
        install_request_limits(app, limits, gauges=False)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           keepalive_timeout=(limits or RequestLimitOptions()).idle_timeout)
    await runner.setup()
    await web.TCPSite(runner, address, port, reuse_address=True).start()
    return runner
