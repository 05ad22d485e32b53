"""What HTTPS + authentication + RBAC cost one server per request, with the machine's drift taken out.

Usage::

    .venv/bin/python bench/tls_same_process.py [--op get|list] [--requests 300] [--windows 16] [--clients 10]
        [--client lean|h2load [--seconds 2]]

One ``pilothouse server --secure --authorization-mode=Node,RBAC`` that also serves plain HTTP on
``--insecure-port`` (no authentication), driven in alternating short windows over each (lean
keep-alive connections, TLS sessions resumed), the server's CPU read from the scheduler's
``/proc/<pid>/task/*/schedstat`` (ns) around each window. Prints the median CPU µs per request of
each side and their difference. Why: ``bench/api.py --tls-compare`` runs two servers and compares
best rounds, which on a shared 2-core machine under other load moves by ±25 µs a request between
runs of the same code; here both sides share one process, its caches and the same minutes.
Both listeners run the same middleware but for authentication (the insecure port applies the request
limits too, as kube-apiserver's did). ``--client h2load``: each window is an h2load run
(bench/cload.py, the benchmark user's bearer token over HTTPS) of ``--seconds`` on connections
opened before it, so that the load generator's own TLS takes little of the two cores.
``--insecure-over-tls``: the insecure listener is served over TLS too (bench/insecure_tls_server.py),
so that the difference is the secure listener's own chain without TLS, and the insecure side against
a run without the flag is what TLS costs; ``--insecure-over-tls socket`` serves it through
bench/tls_socket_transport.py instead of uvloop's TLS (the secure listener, uvloop's, the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import BENCH_GROUP, BENCH_TOKEN, BENCH_USER, cpu_seconds, pod, tls_context
from bench.cload import h2load_level
from bench.leanhttp import LeanConnection, ResumingContext
from tests.conftest import create_default_service_account, free_port, wait_healthy

PODS = "/api/v1/namespaces/default/pods"
Request = Callable[[LeanConnection, int], Awaitable[None]]


async def window(pid: int, connections: list[LeanConnection], request: Request, total: int) -> float:
    """CPU µs the server spent per request while ``connections`` sent ``total`` requests."""
    each = total // len(connections)

    async def worker(connection: LeanConnection) -> None:
        for i in range(each):
            await request(connection, i)

    before = cpu_seconds(pid)
    await asyncio.gather(*(worker(c) for c in connections))
    return (cpu_seconds(pid) - before) / (each * len(connections)) * 1e6


async def measure(pid: int, port: int, plain_port: int, context: ResumingContext, args: argparse.Namespace) -> None:
    async def get(c: LeanConnection, i: int) -> None:
        status, body = await c.request("GET", f"{PODS}/p-{i % 200}")
        assert status == 200, body

    async def list_page(c: LeanConnection, i: int) -> None:
        status, body = await c.request("GET", f"{PODS}?limit=50")
        assert status == 200, body

    secure = [LeanConnection("127.0.0.1", port, context) for _ in range(args.clients)]
    plain = [LeanConnection("127.0.0.1", plain_port, context if args.insecure_over_tls else None)
             for _ in range(args.clients)]
    await secure[0].request("GET", "/readyz")  # its session is the one the others resume
    for connection in secure[1:] + plain:
        await connection.connect()
    for i in range(200):
        status, body = await plain[0].request("POST", PODS, orjson.dumps(pod(f"p-{i}")))
        assert status == 201, body
    request = get if args.op == "get" else list_page
    cost: dict[str, list[float]] = {"HTTPS": [], "HTTP": []}
    paths = [f"{PODS}/p-{i}" for i in range(200)] if args.op == "get" else [f"{PODS}?limit=50"]
    urls = {"HTTPS": f"https://127.0.0.1:{port}",
            "HTTP": f"{'https' if args.insecure_over_tls else 'http'}://127.0.0.1:{plain_port}"}
    for w in range(args.windows):
        sides = [("HTTPS", secure), ("HTTP", plain)]
        for name, connections in sides if w % 2 else sides[::-1]:
            if args.client == "h2load":
                result = await asyncio.to_thread(h2load_level, urls[name], pid, args.clients, args.seconds, paths,
                                                 token=BENCH_TOKEN)
                cost[name].append(result.server_us)
            else:
                cost[name].append(await window(pid, connections, request, args.requests))
    labels = {"HTTPS": "secure", "HTTP": "insecure"} if args.insecure_over_tls else {}
    for name, values in cost.items():
        print(f"{labels.get(name, name):<6} {args.op} at {args.clients} clients: "
              f"median {statistics.median(values):7.1f} µs "
              f"of server CPU a request (windows: {min(values):.0f}-{max(values):.0f})")
    https, http = statistics.median(cost["HTTPS"]), statistics.median(cost["HTTP"])
    difference = "secure - insecure, both over TLS" if args.insecure_over_tls else "HTTPS - HTTP"
    print(f"{difference}: {https - http:+.1f} µs ({https / http:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=("get", "list"), default="get")
    parser.add_argument("--requests", type=int, default=300, help="requests per window")
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--client", choices=("lean", "h2load"), default="lean")
    parser.add_argument("--seconds", type=float, default=2.0, help="--client h2load: seconds per window")
    parser.add_argument("--insecure-over-tls", nargs="?", const="uvloop", choices=("uvloop", "socket"),
                        help="serve the insecure listener over TLS too (through uvloop's TLS or the socket transport)")
    args = parser.parse_args()
    server = [str(Path(__file__).parent / "insecure_tls_server.py")] if args.insecure_over_tls else ["-m", "pilothouse"]
    port, plain_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        tokens = Path(data_dir) / "tokens.csv"
        tokens.write_text(f'{BENCH_TOKEN},{BENCH_USER},bench-uid,"{BENCH_GROUP}"\n')
        process = subprocess.Popen([sys.executable, *server, "server", "--data-dir", data_dir,
                                    "--port", str(port), "--disable", "scheduler,controller-manager", "--secure",
                                    "--authorization-mode", "Node,RBAC", "--insecure-port", str(plain_port),
                                    "--token-auth-file", str(tokens)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "INSECURE_TLS_TRANSPORT": args.insecure_over_tls or ""})
        try:
            url = f"https://127.0.0.1:{port}"
            wait_healthy(url, process, ca=Path(data_dir) / "pki" / "ca.crt")
            context = tls_context(url, Path(data_dir))
            create_default_service_account(url, context=context)
            started = time.monotonic()
            uvloop.run(measure(process.pid, port, plain_port, context, args))
            print(f"({time.monotonic() - started:.0f} s)")
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
