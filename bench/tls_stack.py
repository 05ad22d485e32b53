"""What TLS itself costs the server, without pilothouse: an aiohttp hello-world, plain and over TLS.

Usage::

    .venv/bin/python bench/tls_stack.py [--requests 6000] [--rounds 3]

Serves one 1.5 KB JSON response from a bare aiohttp application in a subprocess on uvloop, as
pilothouse serves, in three ways: plain TCP; TLS through uvloop's own TLS layer (what
``web.TCPSite(ssl_context=...)`` gives on uvloop, and what the API server uses); and TLS through
the standard library's ``asyncio.sslproto.SSLProtocol`` over uvloop's TCP transport. The load comes
from lean keep-alive connections (bench/leanhttp.py, TLS 1.3 with session resumption) on uvloop
in this process, at 1, 10 and 100 clients; each variant runs ``--rounds`` times in turn and the
best round is kept. Prints requests per second and the server's CPU µs per request: the CPU a
request costs the server over TLS beyond plain is the floor for bench/api.py --tls-compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import cpu_seconds
from bench.leanhttp import LeanConnection, ResumingContext
from tests.conftest import free_port

VARIANTS = ("plain", "tls-uvloop", "tls-stdlib")
BODY = b'{"x": "' + b"y" * 1500 + b'"}'


async def hello_runner(body: bytes) -> web.AppRunner:
    """A set-up runner of an application answering ``GET /x`` with ``body`` (JSON)."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/x", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    return runner


def serving_context(pki_dir: str) -> ssl.SSLContext:
    """The API server's listener context (``ClusterPKI.ssl_context``), its PKI made in ``pki_dir``."""
    from pilothouse.apiserver.pkidir import ClusterPKI

    cluster_pki = ClusterPKI(Path(pki_dir))
    cluster_pki.ensure("127.0.0.1", "10.96.0.1")
    return cluster_pki.ssl_context()


def serve(variant: str, port: int, pki_dir: str) -> None:
    """The server side (run as a subprocess): listens until terminated."""
    import uvloop

    async def main() -> None:
        runner = await hello_runner(BODY)
        context = None if variant == "plain" else serving_context(pki_dir)
        if variant == "tls-stdlib":
            from asyncio import sslproto

            loop = asyncio.get_running_loop()
            server = runner.server
            assert server is not None and context is not None
            tls = context
            await loop.create_server(lambda: sslproto.SSLProtocol(loop, server(), tls, None,  # type: ignore[arg-type]
                                                                  server_side=True), "127.0.0.1", port)
        else:
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


async def level(port: int, pid: int, context: ResumingContext | None, concurrency: int,
                total: int) -> tuple[float, float]:
    connections = [LeanConnection("127.0.0.1", port, context) for _ in range(concurrency)]
    await connections[0].request("GET", "/x")
    await asyncio.gather(*(c.connect() for c in connections[1:]))

    async def worker(connection: LeanConnection, count: int) -> None:
        for _ in range(count):
            status, _ = await connection.request("GET", "/x")
            assert status == 200

    before, start = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(c, total // concurrency) for c in connections))
    elapsed, used = time.perf_counter() - start, cpu_seconds(pid) - before
    for connection in connections:
        await connection.close()
    done = total // concurrency * concurrency
    return done / elapsed, used / done * 1e6


@contextlib.contextmanager
def variant_servers(script: str, variants: Iterable[str], *extra: str
                    ) -> Iterator[tuple[str, dict[str, tuple[int, subprocess.Popen[bytes]]]]]:
    """(pki dir, variant → (port, process)): ``script --serve VARIANT PORT PKI_DIR *extra`` for each
    variant, all listening (each prints ``ready``) until the block ends."""
    with tempfile.TemporaryDirectory() as pki_dir:
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for variant in variants:
                port = free_port()
                process = subprocess.Popen([sys.executable, script, "--serve", variant, str(port), pki_dir, *extra],
                                           stdout=subprocess.PIPE)
                servers[variant] = (port, process)
                assert process.stdout is not None
                if process.stdout.readline() != b"ready\n":
                    raise RuntimeError(f"{variant} did not start")
            yield pki_dir, servers
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    import uvloop

    with variant_servers(__file__, VARIANTS) as (pki_dir, servers):
        context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=os.path.join(pki_dir, "ca.crt"))
        print(f"{'variant':<12}{'conc':>5}{'req/s':>10}{'server µs':>11}")
        for concurrency in (1, 10, 100):
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                for variant, (port, process) in servers.items():
                    measured = uvloop.run(level(port, process.pid, None if variant == "plain" else context,
                                                concurrency, args.requests))
                    if variant not in best or measured[0] > best[variant][0]:
                        best[variant] = measured
            for variant, (rate, cpu) in best.items():
                print(f"{variant:<12}{concurrency:>5}{rate:>10.0f}{cpu:>11.0f}")


if __name__ == "__main__":
    main()
