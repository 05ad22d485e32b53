"""The issue-16 memory reproduction: N simulated nodes, per-node pod watches and Leases, no pods.

Starts ``pilothouse server`` (open flags) and ``pilothouse agent --simulate`` processes, then samples
the server's RSS, the open pod watches (``apiserver_longrunning_requests{verb="WATCH",resource="pods"}``)
and the Nodes stored, every few seconds, until ``--duration`` passes or the RSS passes ``--rss-limit``
(the machine is shared: the run stops there, marked). ``--tracemalloc FILE`` runs the server under
``PILOTHOUSE_TRACEMALLOC`` and takes a snapshot into FILE at each RSS step of ``--dump-every`` MB and at
the end (see pilothouse/apiserver/memdump.py). Every process runs in its own process group, killed
in a ``finally`` whatever ends the run (SIGINT, SIGTERM, an error).

    .venv/bin/python bench/watch_memory.py --nodes 3000 --agents 2 --duration 240
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import ProcessGroup, rss_bytes
from tests.conftest import OPEN_FLAGS, free_port, wait_healthy


def get(url: str) -> bytes | None:
    """The body, or None when the server does not answer within 5 s (it is saturated)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body
    except (OSError, ValueError):
        return None


def open_pod_watches(url: str) -> int | None:
    body = get(url + "/metrics")
    if body is None:
        return None
    text = body.decode()
    for family in text_string_to_metric_families(text):
        if family.name == "apiserver_longrunning_requests":
            return int(sum(s.value for s in family.samples
                           if s.labels.get("verb") == "WATCH" and s.labels.get("resource") == "pods"))
    return 0


def stored_nodes(url: str) -> int | None:
    body = get(url + "/api/v1/nodes?limit=1")
    try:
        meta = json.loads(body)["metadata"] if body is not None else None
    except (KeyError, ValueError):
        return None
    if meta is None:
        return None
    return 1 + int(meta.get("remainingItemCount", 0)) if meta.get("continue") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--watch", choices=["per-node", "shared"], default="per-node")
    parser.add_argument("--duration", type=float, default=240.0, help="seconds after the agents start")
    parser.add_argument("--rss-limit", type=float, default=3000.0, help="MB: stop the run above this")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--tracemalloc", default="", help="file for the server's tracemalloc snapshots")
    parser.add_argument("--dump-every", type=float, default=500.0, help="MB of RSS between snapshots")
    parser.add_argument("--log", default=os.devnull)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if args.tracemalloc:
        env["PILOTHOUSE_TRACEMALLOC"] = str(Path(args.tracemalloc).resolve())
    print(f"watch_memory: {args.nodes} nodes, {args.agents} agent(s), watch {args.watch}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as data_dir, open(args.log, "ab") as log, ProcessGroup() as group:
        server = group.start([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                              "--port", str(port), *OPEN_FLAGS], stdout=log, env=env)
        wait_healthy(url, server)
        share = -(-args.nodes // args.agents)
        for i in range(args.agents):
            count = min(share, args.nodes - i * share)
            group.start([sys.executable, "-m", "pilothouse", "agent", "--server", url, "--simulate", str(count),
                         "--simulate-watch", args.watch, "--node-name", f"sim{i}", "--port", str(free_port()),
                         "--root-dir", f"{data_dir}/agent{i}"], stdout=log)
        start = time.perf_counter()
        next_dump = args.dump_every
        peak = 0.0
        print("   t  rss MB  nodes  pod watches", flush=True)
        while (elapsed := time.perf_counter() - start) < args.duration:
            rss = rss_bytes(server.pid) / 2**20
            peak = max(peak, rss)
            nodes, watches = stored_nodes(url), open_pod_watches(url)
            print(f"{elapsed:4.0f}  {rss:6.0f}  {'-' if nodes is None else nodes:>5}  "
                  f"{'-' if watches is None else watches:>5}", flush=True)
            if args.tracemalloc and rss >= next_dump:
                server.send_signal(signal.SIGUSR2)
                next_dump += args.dump_every
            if rss > args.rss_limit:
                print(f"STOPPED: server RSS {rss:.0f} MB > {args.rss_limit:.0f} MB", flush=True)
                break
            time.sleep(max(0.0, args.interval - (time.perf_counter() - start - elapsed)))
        if args.tracemalloc:
            server.send_signal(signal.SIGUSR2)
            time.sleep(min(30.0, 5 + peak / 100))  # a snapshot of GBs takes a while
        print(f"peak RSS {peak:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
