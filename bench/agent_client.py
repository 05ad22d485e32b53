"""What one Lease renewal costs the agent's side: the CPU of ``APIClient.update`` per request (issue 16).

Usage::

    .venv/bin/python bench/agent_client.py [--leases 2000] [--rate 200] [--windows 5] [--window 10]
        [--trees /tmp/old-tree,.] [--clients api,lean] [--rounds 2] [--token] [--profile DIR]

At 5,000 simulated nodes the agents' renewals took half a core of the two (docs/decisions/density.md,
the seventeenth session's full-scale run: agents 0.53 core of the heartbeat's 1.56), CPU the server
and the pods' work could not have. This measures the client alone: one ``pilothouse server`` (this
tree, SQLite, plain HTTP, AlwaysAllow, no scheduler or controllers) with ``--leases`` Leases, and a
client process that renews them at ``--rate`` a second round robin, at most ``--concurrency`` at a
time, exactly as the agent's lease loop does (``node.py``: the Lease the last PUT returned, a fresh
``renewTime``, ``APIClient.update``; ``--token``: each request under a node's own bearer token through
``as_token``, as ``--simulate-token-file`` runs them; the open server ignores it). The client runs on
uvloop with the ``pilothouse`` of each tree in ``--trees`` (``PYTHONPATH``), in turn, ``--rounds`` times,
so that two versions of the client are compared in one invocation on a shared machine.
``--clients api,lean`` runs each tree's client both ways: ``api`` as above, ``lean`` the same PUTs (path,
``fieldManager``, ``User-Agent``, the token, the body) through ``bench/leanhttp.py``'s minimal HTTP/1.1
connections, one per request in flight: what the renewals cost without aiohttp's client request.

Per window: renewals a second, the client process's CPU per renewal (µs, its ``schedstat``), the
server's, and the PUT p50 / p99 as the client sees them. The summary gives each tree's median and
range of the client's µs per renewal. Plain HTTP: TLS adds the same cost to any version of the
client (bench/tls_transport.py measures it). Every loop is bounded by the windows' time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lease_renewal import create_leases, thread_cpu  # noqa: E402
from bench.processes import ProcessGroup  # noqa: E402
from tests.conftest import OPEN_FLAGS, free_port, wait_healthy  # noqa: E402

#: The client process: run with ``python -P -c`` and the tree on PYTHONPATH, so that it imports that
#: tree's client and nothing of this one. Prints one JSON line per window.
CLIENT = r'''
import asyncio, json, os, sys, time
import uvloop
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import meta

port, leases, rate, concurrency, warmup, window, windows, token, lean = sys.argv[1:10]
leases, rate, concurrency, windows = int(leases), float(rate), int(concurrency), int(windows)
warmup, window = float(warmup), float(window)
LEASES = resource("coordination.k8s.io", "v1", "leases")

def cpu():
    total = 0
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/schedstat") as handle:
            total += int(handle.read().split()[0])
    return total / 1e9

async def main():
    pool = APIClient(f"http://127.0.0.1:{port}", user_agent="pilothouse-agent/sim0",
                     connection_limit=max(256, concurrency))
    clients = [pool.as_token(f"token-node-{i}") if token == "1" else pool for i in range(leases)]
    latest = [await pool.get(LEASES, f"node-{i}", "kube-node-lease") for i in range(leases)]
    done, latencies, errors = [0], [], [0]
    end = time.monotonic() + warmup + window * windows
    slots = asyncio.Semaphore(concurrency)

    if lean == "1":
        import orjson
        from bench.leanhttp import LeanConnection
        idle = [LeanConnection("127.0.0.1", int(port)) for _ in range(concurrency)]

        async def put(i, lease):
            # the same request APIClient.update sends: path, fieldManager, headers, body
            headers = "User-Agent: pilothouse-agent/sim0\r\n"
            if token == "1":
                headers += f"Authorization: Bearer token-node-{i}\r\n"
            connection = idle.pop()
            try:
                status, payload = await connection.request(
                    "PUT", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-{i}"
                    "?fieldManager=pilothouse-agent%2Fsim0", orjson.dumps(lease), headers=headers)
            finally:
                idle.append(connection)
            if status != 200:
                raise RuntimeError(f"PUT answered {status}")
            return orjson.loads(payload)
    else:
        async def put(i, lease):
            return await clients[i].update(LEASES, lease)

    async def renew(i):
        lease = latest[i]
        lease["spec"] = {**lease["spec"], "renewTime": meta.format_time_micro(None)}
        start = time.perf_counter()
        try:
            latest[i] = await put(i, lease)
        except Exception:
            errors[0] += 1
            latest[i] = await pool.get(LEASES, f"node-{i}", "kube-node-lease")
        else:
            done[0] += 1
            latencies.append(time.perf_counter() - start)
        finally:
            slots.release()

    async def renewals():
        loop = asyncio.get_running_loop()
        next_at, i, tasks = loop.time(), 0, set()
        while loop.time() < end:
            await slots.acquire()
            task = asyncio.create_task(renew(i % leases))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            next_at += 1 / rate
            if (delay := next_at - loop.time()) > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*tasks, return_exceptions=True)

    running = asyncio.create_task(renewals())
    await asyncio.sleep(warmup)
    print(json.dumps({"ready": True}), flush=True)  # the windows start: a profiler may attach
    for _ in range(windows):
        done[0], latencies[:] = 0, []
        before, started = cpu(), time.perf_counter()
        await asyncio.sleep(window)
        spent, elapsed = cpu() - before, time.perf_counter() - started
        ordered = sorted(latencies) or [float("nan")]
        print(json.dumps({"renewals": done[0], "seconds": elapsed, "cpu": spent, "errors": errors[0],
                          "p50": ordered[len(ordered) // 2],
                          "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}), flush=True)
    await running
    await pool.close()

uvloop.run(main())
'''


def run_client(args: argparse.Namespace, tree: str, kind: str, port: int,
               server_pid: int) -> list[dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    command = [sys.executable, "-P", "-c", CLIENT, str(port), str(args.leases), str(args.rate),
               str(args.concurrency), str(args.warmup), str(args.window), str(args.windows),
               "1" if args.token else "0", "1" if kind == "lean" else "0"]
    windows: list[dict[str, float]] = []
    profiler = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as client:
        assert client.stdout is not None
        server_before = sum(thread_cpu(server_pid).values())
        for line in client.stdout:
            window = json.loads(line)
            server_after = sum(thread_cpu(server_pid).values())
            window["server_cpu"], server_before = server_after - server_before, server_after
            if window.get("ready"):
                if args.profile:  # the windows only, not the imports and the first GETs
                    name = f"{len(os.listdir(args.profile)):02d}-{Path(tree).name or 'tree'}-{kind}.txt"
                    out = Path(args.profile) / name
                    profiler = subprocess.Popen(
                        [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--rate", "250",
                         "--nonblocking", "--pid", str(client.pid), "--duration", str(int(args.windows * args.window)),
                         "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                continue
            windows.append(window)
            renewals = max(1, window["renewals"])
            print(f"  {tree + ' ' + kind:<28} {window['renewals'] / window['seconds']:6.0f}/s  client "
                  f"{window['cpu'] / renewals * 1e6:6.0f} µs/renewal  "
                  f"server {window['server_cpu'] / renewals * 1e6:6.0f}"
                  f"  p50 {window['p50'] * 1000:5.1f} ms  p99 {window['p99'] * 1000:5.1f} ms  errors "
                  f"{window['errors']:.0f}  load {os.getloadavg()[0]:.1f}", flush=True)
        if profiler is not None:
            profiler.wait(timeout=60)
    if client.returncode:
        raise RuntimeError(f"the client of {tree} exited with {client.returncode}")
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--leases", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="renewals a second (2,000 nodes at 10 s: 200)")
    parser.add_argument("--concurrency", type=int, default=64, help="PUTs in flight at most")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--trees", default=str(ROOT), help="comma-separated source trees, run in turn")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--token", action="store_true", help="each renewal under its node's token (as_token)")
    parser.add_argument("--clients", default="api",
                        help="comma-separated, run in turn: api (APIClient.update, as the agent) or lean "
                             "(bench/leanhttp.py: the same requests on the wire without aiohttp's client)")
    parser.add_argument("--profile", default="", help="directory for py-spy raw profiles of the client")
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    trees = [t for t in args.trees.split(",") if t]
    print(f"agent client: {args.leases} leases at {args.rate:.0f}/s, {args.concurrency} in flight; "
          f"{args.windows} x {args.window:.0f} s windows; load {os.getloadavg()[0]:.1f}", flush=True)
    kinds = [c for c in args.clients.split(",") if c]
    if not set(kinds) <= {"api", "lean"}:
        parser.error("--clients takes api and lean")
    runs = [(tree, kind) for tree in trees for kind in kinds]
    results: dict[str, list[dict[str, float]]] = {f"{tree} {kind}": [] for tree, kind in runs}
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir, ProcessGroup() as group:
        server = group.start([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                              "--port", str(port), "--disable", "scheduler,controller-manager", *OPEN_FLAGS],
                             stdout=subprocess.DEVNULL)
        wait_healthy(f"http://127.0.0.1:{port}", server, timeout=60)
        asyncio.run(create_leases(port, args.leases))
        for round_number in range(args.rounds):
            for tree, kind in runs:
                print(f"round {round_number + 1}, {tree} {kind}:", flush=True)
                results[f"{tree} {kind}"].extend(run_client(args, tree, kind, port, server.pid))
    print("\nclient CPU per renewal (µs): median [min-max] over windows; server's; PUT p50 / p99 medians (ms)")
    for name, windows in results.items():
        figures = [w["cpu"] / max(1, w["renewals"]) * 1e6 for w in windows]
        server_figures = [w["server_cpu"] / max(1, w["renewals"]) * 1e6 for w in windows]
        print(f"  {name:<28} {statistics.median(figures):6.0f} [{min(figures):.0f}-{max(figures):.0f}]  "
              f"server {statistics.median(server_figures):6.0f}  "
              f"p50 {statistics.median(w['p50'] for w in windows) * 1000:.1f}  "
              f"p99 {statistics.median(w['p99'] for w in windows) * 1000:.1f}  "
              f"({sum(w['renewals'] for w in windows):.0f} renewals)")


if __name__ == "__main__":
    main()
