"""``pilothouse`` with its insecure listener served over TLS too: a diagnostic server, for benchmarks only.

Usage (as bench/tls_same_process.py ``--insecure-over-tls [uvloop|socket]`` runs it)::

    [INSECURE_TLS_TRANSPORT=socket] .venv/bin/python bench/insecure_tls_server.py server --secure --insecure-port P ...

Why: bench/tls_same_process.py compares the secure listener (TLS, authentication, Node,RBAC,
audit) against the insecure one (plain HTTP, no authentication) of one process. Serving the
insecure listener over the same TLS context, from the same certificate, splits that difference
into what TLS costs (insecure over TLS against insecure in plain, in another invocation) and what
the secure listener's own chain costs (secure against insecure, both over TLS). The product has no
such listener: kube-apiserver's insecure port was plain HTTP only. ``INSECURE_TLS_TRANSPORT=socket``
serves it through bench/tls_socket_transport.py instead of uvloop's TLS, so that the secure
listener (uvloop's TLS, as shipped) is the common reference when comparing the two transports
inside pilothouse.
"""

from __future__ import annotations

import os
import runpy
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

import pilothouse.apiserver.insecure as insecure
import pilothouse.apiserver.pkidir as pkidir

_contexts: list[ssl.SSLContext] = []
_ssl_context = pkidir.ClusterPKI.ssl_context


def _remembering_ssl_context(self: pkidir.ClusterPKI) -> ssl.SSLContext:
    context = _ssl_context(self)
    _contexts.append(context)
    return context


class _TLSSite(web.TCPSite):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The secure listener's context: made before the insecure listener starts (serve.py).
        super().__init__(*args, **kwargs, ssl_context=_contexts[-1])


class _SocketTLSSite:
    """Enough of ``web.TCPSite`` for ``start_insecure``: serves through the socket-owning transport."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, **_: Any) -> None:
        self._runner, self._host, self._port = runner, host, port

    async def start(self) -> None:
        from bench.tls_socket_transport import serve_tls

        assert self._runner.server is not None
        await serve_tls(self._runner.server, _contexts[-1], self._host, self._port)


class _Web:
    TCPSite = _SocketTLSSite if os.environ.get("INSECURE_TLS_TRANSPORT") == "socket" else _TLSSite
    AppRunner = web.AppRunner
    Request = web.Request


if __name__ == "__main__":
    pkidir.ClusterPKI.ssl_context = _remembering_ssl_context  # type: ignore[method-assign]
    insecure.web = _Web  # type: ignore[assignment]
    sys.argv = ["pilothouse", *sys.argv[1:]]
    runpy.run_module("pilothouse", run_name="__main__")
