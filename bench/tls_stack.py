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
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import cpu_seconds
from bench.leanhttp import LeanConnection, ResumingContext
from tests.conftest import free_port

VARIANTS = ("plain", "tls-uvloop", "tls-stdlib")
BODY = b'{"x": "' + b"y" * 1500 + b'"}'


def serve(variant: str, port: int, pki_dir: str) -> None:
    """The server side (run as a subprocess): listens until terminated."""
    import uvloop
    from aiohttp import web

    from pilothouse.apiserver.pkidir import ClusterPKI

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/x", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = None
        if variant != "plain":
            cluster_pki = ClusterPKI(Path(pki_dir))
            cluster_pki.ensure("127.0.0.1", "10.96.0.1")
            context = cluster_pki.ssl_context()
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

    with tempfile.TemporaryDirectory() as pki_dir:
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for variant in VARIANTS:
                port = free_port()
                process = subprocess.Popen([sys.executable, __file__, "--serve", variant, str(port), pki_dir],
                                           stdout=subprocess.PIPE)
                assert process.stdout is not None
                process.stdout.readline()
                servers[variant] = (port, process)
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
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
