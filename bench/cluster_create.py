"""``pilothouse cluster create``: time to every node Ready, and what an idle host costs.

For the seed's five hosts (``examples/seed-cluster.yaml``) and for a generated 20-host cluster (one
server, 19 agents, each a network namespace with its own podman service and agent), it times
``cluster create --wait`` (network, processes, server up, every Node Ready), lets the cluster idle,
then reads the resident memory (VmRSS) of every agent and podman service and the CPU they used while
idle, and times ``cluster delete``. Run as root on a machine with podman:

    .venv/bin/python bench/cluster_create.py [--sizes 5,20] [--idle 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pilothouse.cli.cluster.layout import Layout  # noqa: E402

SEED = ROOT / "examples" / "seed-cluster.yaml"


def topology(size: int, directory: Path) -> Path:
    if size == 5:
        return SEED
    hosts = [{"name": "server", "role": "server", "address": "10.241.0.1"}]
    hosts += [{"name": f"node-{i:02d}", "role": "agent", "address": f"10.241.0.{i + 1}",
               "labels": {"bench": "yes"}} for i in range(1, size)]
    document = {"apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": f"bench{size}"},
                "network": {"hostSubnet": "10.241.0.0/24", "podCIDR": "10.242.0.0/16",
                            "serviceRange": "10.243.0.0/16"},
                "hosts": hosts}
    path = directory / f"bench{size}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pilothouse", "cluster", *args, "--state-dir", str(state)],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"cluster {' '.join(args)} failed:\n{result.stderr}")
    return result


def processes(layout: Layout) -> dict[str, list[int]]:
    """Agent and podman service pids, found in the hosts' namespaces."""
    found: dict[str, list[int]] = {"agent": [], "podman": []}
    for host in layout.cluster().hosts:
        pids = subprocess.run(["ip", "netns", "pids", layout.netns(host)], capture_output=True, text=True).stdout
        for pid in map(int, pids.split()):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pilothouse" in args and b"agent" in args:
                found["agent"].append(pid)
            elif args[0].endswith(b"podman") and b"service" in args:
                found["podman"].append(pid)
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(size: int, idle: float, directory: Path) -> None:
    state = directory / "state"
    name = f"bench{size}"
    started = time.monotonic()
    cli(state, "create", "-f", str(topology(size, directory)), "--name", name, "--wait", "900")
    ready = time.monotonic() - started
    layout = Layout(state / name)
    try:
        time.sleep(idle / 2)  # let start-up settle before measuring idle
        pids = processes(layout)
        before = {pid: cpu_seconds(pid) for kind in pids.values() for pid in kind}
        time.sleep(idle / 2)
        print(f"{size} hosts: all nodes Ready {ready:.1f}s after `cluster create` started")
        for kind, kind_pids in pids.items():
            rss = [rss_mib(pid) for pid in kind_pids]
            cpu = [(cpu_seconds(pid) - before[pid]) / (idle / 2) * 100 for pid in kind_pids]
            if rss:
                print(f"  idle {kind:<6} x{len(rss)}: RSS median {statistics.median(rss):.0f} MiB "
                      f"(max {max(rss):.0f}), CPU median {statistics.median(cpu):.1f}% of a core")
    finally:
        deleting = time.monotonic()
        cli(state, "delete", name)
        print(f"  cluster delete: {time.monotonic() - deleting:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idling before and while measuring")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pilothouse-bench-"))
    try:
        for size in map(int, options.sizes.split(",")):
            run(size, options.idle, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
