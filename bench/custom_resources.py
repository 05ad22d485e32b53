"""What serving a custom resource costs next to a built-in: create/get/list of a CR and a ConfigMap.

Usage::

    .venv/bin/python bench/custom_resources.py [--requests 1000]

Starts a real ``pilothouse server`` subprocess (no scheduler or controllers, its own temp data
dir), applies a CRD whose schema has defaults, an enum, a minimum and a CEL rule, then drives
creates, gets and lists (limit 50) of that custom resource and of ConfigMaps of the same size at 1
and 100 concurrent clients over lean keep-alive connections (bench/leanhttp.py), in one run. Prints
throughput, p50/p99 latency and the server's CPU µs per request for each, and the custom
resource's cost relative to the ConfigMap's (issue 10 asks for no more than 1.5x). Every loop is
bounded by ``--requests`` and bench/api.py's time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import lean_level, row
from bench.leanhttp import LeanConnection
from tests.conftest import free_port, wait_healthy

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.bench.example.com"},
    "spec": {
        "group": "bench.example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "additionalPrinterColumns": [{"name": "Size", "type": "string", "jsonPath": ".spec.size"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object",
                         "x-kubernetes-validations": [{"rule": "self.replicas <= 100"}],
                         "properties": {
                             "size": {"type": "string", "enum": ["small", "medium", "large"], "default": "medium"},
                             "replicas": {"type": "integer", "minimum": 0, "default": 1},
                             "image": {"type": "string"},
                             "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "status": {"type": "object", "properties": {"ready": {"type": "integer"}}}}}},
        }],
    },
}
_PAYLOAD = {"image": "registry.local/app:1.0", "labels": {"app": "bench", "tier": "web"}}


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "bench.example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"replicas": 3, **_PAYLOAD}}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"replicas": "3", "image": _PAYLOAD["image"], "app": "bench", "tier": "web"}}


KINDS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "configmap": ("/api/v1/namespaces/default/configmaps", configmap),
    "custom": ("/apis/bench.example.com/v1/namespaces/default/widgets", widget),
}


async def install_crd(url: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = LeanConnection(host, int(port))
    status, body = await connection.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                            orjson.dumps(CRD))
    assert status == 201, body
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _ = await connection.request("GET", KINDS["custom"][0] + "?limit=1")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    await connection.close()


async def suite(url: str, total: int, server_pid: int) -> dict[tuple[str, str, int], float]:
    """CPU µs per request by (kind, operation, concurrency)."""
    cpu_by: dict[tuple[str, str, int], float] = {}
    for concurrency in (1, 100):
        for kind, (path, make) in KINDS.items():
            prefix = f"c{concurrency}"

            async def create(connection: LeanConnection, i: int, path: str = path, prefix: str = prefix,
                             make: Callable[[str], dict[str, Any]] = make) -> None:
                status, body = await connection.request("POST", path, orjson.dumps(make(f"{prefix}-{i}")))
                assert status == 201, body

            async def get(connection: LeanConnection, i: int, path: str = path, prefix: str = prefix) -> None:
                status, body = await connection.request("GET", f"{path}/{prefix}-{i % total}")
                assert status == 200, body

            async def list_small(connection: LeanConnection, _i: int, path: str = path) -> None:
                status, body = await connection.request("GET", f"{path}?limit=50")
                assert status == 200, body

            operations: tuple[tuple[str, Callable[[LeanConnection, int], Awaitable[None]], int], ...] = (
                ("create", create, total), ("get", get, total), ("list", list_small, max(total // 10, 50)))
            for name, op, count in operations:
                rate, latencies, cpu = await lean_level(url, concurrency, count, server_pid, op)
                print(row(f"{kind} {name}", concurrency, rate, latencies, cpu))
                cpu_by[(kind, name, concurrency)] = cpu
    return cpu_by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="creates and gets per level (lists: a tenth)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir, "--port", str(port),
             "--disable", "scheduler,controller-manager"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            asyncio.run(install_crd(url))
            print(f"{'operation':<22}{'conc':>5}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'cpu µs/req':>12}")
            cpu = asyncio.run(suite(url, args.requests, process.pid))
        finally:
            process.terminate()
            process.wait(10)
    print()
    print("custom resource / ConfigMap, server CPU per request:")
    for (kind, name, concurrency), value in sorted(cpu.items()):
        if kind == "custom":
            base = cpu[("configmap", name, concurrency)]
            print(f"  {name:<8}{concurrency:>5}  {value / base:>5.2f}x")


if __name__ == "__main__":
    main()
