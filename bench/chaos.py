"""Chaos rounds, the long version of tests/chaos/ (issue 15): each round a fresh cluster (API server,
scheduler, controller manager, simulated-node agents; ``--etcd 3`` for a three-member etcd whose
members are victims too) runs the harness's workload while processes are SIGKILLed and restarted at
random moments, then must converge: nothing lost, nothing duplicated, no 5xx outside a server outage.
``--real-agent`` adds a node run by a real ``pilothouse agent`` driving a podman service of its own
(both victims; tests/chaos/realnode.py): converged then also means podman holds exactly the pods bound
to that node, each container adopted, not recreated, across the agent's restarts.

    .venv/bin/python bench/chaos.py --minutes 10 [--round-seconds 60] [--seed S] [--etcd 3] [--real-agent]

Prints each round's seed (``--seed S`` replays a round's decisions), kills and convergence time, and
at the end the figures the issue asks for: rounds run and divergences found.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.cluster import ChaosCluster
from tests.chaos.harness import ChaosReport, run_chaos
from tests.chaos.realnode import RealNode, podman_missing


def _round(base: Path, args: argparse.Namespace, seed: int) -> ChaosReport:
    """One fresh cluster under ``base``, its chaos and its convergence."""
    real = RealNode.start() if args.real_agent else None
    cluster = ChaosCluster(base, agents=args.agents, nodes=args.nodes, etcd_members=args.etcd, real=real)
    try:
        cluster.start()
        return asyncio.run(run_chaos(cluster, seed, seconds=args.round_seconds))
    finally:
        cluster.stop()
        if real is not None:
            real.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="total time for the rounds (bounded)")
    parser.add_argument("--round-seconds", type=float, default=60.0, help="chaos time per round")
    parser.add_argument("--seed", type=int, default=0, help="first round's seed (default: random)")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=10, help="simulated nodes per agent")
    parser.add_argument("--etcd", type=int, default=0, help="etcd members (0: SQLite)")
    parser.add_argument("--real-agent", action="store_true", help="one more node: a real agent driving podman")
    parser.add_argument("--keep-logs", default="", help="copy a divergent round's process logs under this directory")
    args = parser.parse_args()
    if args.real_agent and (missing := podman_missing()):
        parser.error(missing)

    seeds = random.Random(args.seed or None)
    deadline = time.monotonic() + args.minutes * 60
    rounds, diverged, kills, writes, unstarted = 0, 0, 0, 0, 0
    converge_times: list[float] = []
    seed = args.seed or seeds.randrange(1, 2**31)
    while time.monotonic() + args.round_seconds < deadline or rounds == 0:
        with tempfile.TemporaryDirectory(prefix="chaos-") as base:
            try:
                report = _round(Path(base), args, seed)
            except (AssertionError, RuntimeError, OSError) as error:
                # The cluster did not come up (a loaded machine): no chaos ran, so no round either.
                print(f"chaos seed {seed}: the cluster did not start: {error}", flush=True)
                unstarted += 1
                report = None
            if report is not None and not (report.ok and report.converged_after is not None) and args.keep_logs:
                kept = Path(args.keep_logs) / f"seed-{seed}"
                shutil.copytree(base, kept, ignore=lambda where, names: [
                    n for n in names if not n.endswith(".log") and not Path(where, n).is_dir()])
                print(f"  logs kept in {kept}", flush=True)
        seed = seeds.randrange(1, 2**31)
        if report is None:
            continue
        rounds += 1
        kills += len(report.kills)
        writes += report.writes
        print(report.summary(), flush=True)
        if report.ok and report.converged_after is not None:
            converge_times.append(report.converged_after)
        else:
            diverged += 1
    converge_times.sort()
    median = converge_times[len(converge_times) // 2] if converge_times else float("nan")
    print(f"\nrounds {rounds}, divergent rounds {diverged}, kills {kills}, writes {writes}, "
          f"clusters that did not start {unstarted}, "
          f"convergence median {median:.1f}s, worst {max(converge_times, default=float('nan')):.1f}s")
    sys.exit(1 if diverged else 0)


if __name__ == "__main__":
    main()
