"""Throughput of one TCP stream pod to pod across hosts (direct routes, then VXLAN) against the same
stream host to host, in one invocation (issue 13's "done means").

Network-namespace hosts A and B on one subnet, each with a pod (tests/podnetwork/hostlab.py), a real
API server holding their Nodes, and ``pilothouse pod-routes`` in each host's namespace: first with
``--backend auto`` (A and B share a subnet: a direct route), then with ``--backend vxlan`` (the
overlay). Each sample is one TCP connection sending for ``--seconds`` from a Python sender to a Python
sink (no iperf here); the report is the median of ``--samples`` in Gbit/s. All of it runs in veth pairs
on one machine, so the numbers compare paths (encapsulation, routing) on equal footing, not NICs.
Needs root.

    .venv/bin/python bench/pod_network.py [--seconds 3] [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netlab import enter, sh
from tests.podnetwork.conftest import HOSTS, lab_server
from tests.podnetwork.hostlab import HostLab

SINK = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(4)
while True:
    conn, _ = server.accept()
    buffer = bytearray(1 << 20)
    while conn.recv_into(buffer):
        pass
    conn.close()
"""
SEND = """
import socket, sys, time
seconds = float(sys.argv[3])
chunk = b"x" * (1 << 20)
sent = 0
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as conn:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        conn.sendall(chunk)
        sent += len(chunk)
    elapsed = time.monotonic() - started
print(sent * 8 / elapsed / 1e9)
"""
PORT = "7100"


class _Factory:
    """What ``lab_server`` wants from pytest's tmp_path_factory."""

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))


def _stream(lab: HostLab, client_netns: str, address: str, seconds: float, samples: int) -> float:
    rates = [float(sh(*enter(client_netns), sys.executable, "-c", SEND, address, PORT, str(seconds)).stdout)
             for _ in range(samples)]
    return statistics.median(rates)


def _routes(lab: HostLab, url: str, backend: str) -> list[subprocess.Popen[bytes]]:
    processes = [lab.start(host, sys.executable, "-m", "pilothouse", "pod-routes", "--server", url,
                           "--node-name", host, "--backend", backend) for host in ("ha", "hb")]
    wanted = "pilothouse.1" if backend == "vxlan" else "eth0"
    deadline = time.monotonic() + 30
    while True:
        out = sh(*enter(lab.host_netns("ha")), "ip", "-j", "route", "show", "proto", "199").stdout.strip()
        if [r.get("dev") for r in json.loads(out or "[]")] == [wanted]:
            return processes
        if time.monotonic() > deadline:
            raise RuntimeError(f"routes of A did not become {backend}: {out}")
        time.sleep(0.2)


def _stop(lab: HostLab, processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        process.wait(10)
        lab.processes.remove(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    lab = HostLab().create()
    server = None
    try:
        for name in ("ha", "hb"):
            address, cidr, far = HOSTS[name]
            lab.add_host(name, address, far=far)
            lab.add_pod(name, f"p{name[1]}", cidr)
        server = lab_server(_Factory())  # type: ignore[arg-type]
        for name in ("ha", "hb"):
            address, cidr, _ = HOSTS[name]
            server.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}))
            server.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(
                {"status": {"addresses": [{"type": "InternalIP", "address": address}]}}))
        for netns in (lab.host_netns("hb"), lab.pods["pb"][0]):
            lab.processes.append(subprocess.Popen([*enter(netns), sys.executable, "-c", SINK, PORT]))
        time.sleep(0.5)
        results = {"host to host": _stream(lab, lab.host_netns("ha"), HOSTS["hb"][0], args.seconds, args.samples)}
        for backend, label in (("auto", "pod to pod, direct route"), ("vxlan", "pod to pod, VXLAN")):
            processes = _routes(lab, server.url, backend)
            try:
                results[label] = _stream(lab, lab.pods["pa"][0], lab.pods["pb"][1], args.seconds, args.samples)
            finally:
                _stop(lab, processes)
        floor = results["host to host"]
        print(f"one TCP stream, median of {args.samples} x {args.seconds:g} s (Python sender and sink):")
        for label, rate in results.items():
            print(f"  {label:28} {rate:6.2f} Gbit/s  ({rate / floor:5.1%} of host to host)")
    finally:
        if server is not None:
            server.stop()
        lab.destroy()


if __name__ == "__main__":
    main()
