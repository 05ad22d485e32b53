"""What the TLS transport glue costs the server per request, variant by variant (issue 11's GET gap).

Usage::

    .venv/bin/python bench/tls_transport.py [--windows 5] [--seconds 3] [--clients 100]
        [--variants plain,uvloop-tls,...]

A bare aiohttp application answering ``GET /x`` with a ~1 KB JSON body, one server process per
variant (all started at once, idle but for their window), each driven in turn by h2load
(``--h1``, bench/cload.py: connections and TLS handshakes opened before the measured window) at
``--clients`` connections; the windows rotate over the variants ``--windows`` times so that the
machine's drift lands on all of them. The server's CPU comes from its ``schedstat``. Prints, per
variant, the median CPU µs per request over the windows, their spread, and the difference from
``uvloop-tls`` (what pilothouse ships: aiohttp's ``TCPSite(ssl_context=...)`` on uvloop, whose
``SSLProtocol`` runs OpenSSL over memory BIOs).

Variants:

- ``plain``: uvloop TCP, no TLS (the floor).
- ``uvloop-tls``: shipped.
- ``uvloop-tls-direct``: ``SSLContext.sslobject_class`` bound to the C ``_ssl`` methods, so uvloop's
  per-record ``read``/``write``/``pending`` skip ``ssl.SSLObject``'s Python wrappers.
- ``uvloop-tls-norelease``: ``SSL_MODE_RELEASE_BUFFERS`` cleared on the context (CPython sets it on
  every context: OpenSSL then frees its record buffers when idle and allocates them again for
  the next record).
- ``uvloop-tls-aes128``: ``OP_CIPHER_SERVER_PREFERENCE`` cleared, so the client's TLS 1.3 order
  (h2load, Go and OpenSSL clients: AES-128-GCM first) picks the suite instead of CPython's
  server order (AES-256-GCM first).
- ``socket-tls``: a transport owning a non-blocking ``ssl.SSLSocket`` (OpenSSL reads and writes
  the socket itself, no memory BIOs), driven by ``loop.add_reader``/``add_writer``.
- ``uvloop-tls-all``, ``socket-tls-all``: with the three knobs above at once (direct methods,
  buffers kept, client's suite order).
- ``asyncio-tls``: the standard library's event loop and its ``sslproto`` (reference).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import socket
import ssl
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("plain", "uvloop-tls", "uvloop-tls-direct", "uvloop-tls-norelease", "uvloop-tls-aes128",
            "uvloop-tls-all", "socket-tls", "socket-tls-all", "asyncio-tls")


def body(size: int) -> bytes:
    """A JSON object of ``size`` bytes."""
    head = b'{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "'
    return head + b"y" * max(0, size - len(head) - 4) + b'"}}}'

#: libssl's ``SSL_CTX_ctrl`` commands (ssl.h).
_SSL_CTRL_CLEAR_MODE = 78
_SSL_MODE_RELEASE_BUFFERS = 0x10


class DirectSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose ``read``, ``write`` and ``pending`` are the C methods themselves."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:  # type: ignore[override]
        created: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        native = created._sslobj  # type: ignore[attr-defined]
        created.read = native.read  # type: ignore[method-assign]
        created.write = native.write  # type: ignore[method-assign]
        created.pending = native.pending  # type: ignore[method-assign]
        return created


def clear_release_buffers(context: ssl.SSLContext) -> None:
    """Clear ``SSL_MODE_RELEASE_BUFFERS`` on ``context``'s ``SSL_CTX`` (through ctypes: no Python API)."""
    with open("/proc/self/maps") as maps:
        libssl = next(line.split()[-1] for line in maps if "libssl.so" in line)
    lib = ctypes.CDLL(libssl)
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    # PySSLContext: PyObject_HEAD (refcount, type) then the SSL_CTX pointer.
    ctx = ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    lib.SSL_CTX_ctrl(ctx, _SSL_CTRL_CLEAR_MODE, _SSL_MODE_RELEASE_BUFFERS, None)


def serve(variant: str, port: int, pki_dir: str, size: int) -> None:
    """The server side (run as a subprocess): listens until terminated."""
    from aiohttp import web

    from bench.tls_stack import hello_runner, serving_context

    async def main() -> None:
        runner = await hello_runner(body(size))
        context = None if variant == "plain" else serving_context(pki_dir)
        if context is not None and variant.endswith(("-direct", "-all")):
            context.sslobject_class = DirectSSLObject
        if context is not None and variant.endswith(("-norelease", "-all")):
            clear_release_buffers(context)
        if context is not None and variant.endswith(("-aes128", "-all")):
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if variant.startswith("socket-tls"):
            from bench.tls_socket_transport import serve_tls

            assert context is not None and runner.server is not None
            await serve_tls(runner.server, context, "127.0.0.1", port)
        else:
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    if variant == "asyncio-tls":
        asyncio.run(main())
    else:
        import uvloop

        uvloop.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--body-bytes", type=int, default=1000)
    parser.add_argument("--token", help="a bearer token h2load sends (header size as bench/api.py's)")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], int(args.serve[3]))
        return
    from bench.cload import h2load_level
    from bench.tls_stack import variant_servers

    variants = args.variants.split(",")
    with variant_servers(__file__, variants, str(args.body_bytes)) as (_, servers):
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        rate: dict[str, list[float]] = {v: [] for v in variants}
        # Window -1 warms every server up (first-use allocations, caches) and is not counted.
        for window in range(-1, args.windows):
            # Rotated, so that no variant always follows the same one.
            order = variants[window % len(variants):] + variants[:window % len(variants)]
            for variant in order:
                port, process = servers[variant]
                scheme = "http" if variant == "plain" else "https"
                result = h2load_level(f"{scheme}://127.0.0.1:{port}", process.pid, args.clients,
                                      args.seconds, ["/x"], token=args.token)
                if window >= 0:
                    cpu[variant].append(result.server_us)
                    rate[variant].append(result.rate)
                print(f"  window {window} {variant:<22} {result.server_us:7.1f} µs  {result.rate:8.0f} req/s",
                      flush=True)
    base = statistics.median(cpu["uvloop-tls"]) if "uvloop-tls" in cpu else None
    print(f"{'variant':<22}{'median µs':>10}{'min':>8}{'max':>8}{'vs shipped':>12}{'req/s':>9}")
    for variant in variants:
        median = statistics.median(cpu[variant])
        delta = f"{median - base:+.1f}" if base is not None else ""
        print(f"{variant:<22}{median:>10.1f}{min(cpu[variant]):>8.1f}{max(cpu[variant]):>8.1f}"
              f"{delta:>12}{statistics.median(rate[variant]):>9.0f}")

if __name__ == "__main__":
    main()
