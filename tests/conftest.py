"""Shared fixtures: a real ``pilothouse server`` process and a real kubectl pointed at it."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

KUBECTL = "/usr/bin/kubectl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    kubeconfig: Path
    process: subprocess.Popen[bytes]
    port: int

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server."""
        full_env = dict(os.environ)
        full_env["KUBECONFIG"] = str(self.kubeconfig)
        full_env["HOME"] = str(self.data_dir / "home")  # kubectl's discovery cache stays per server
        full_env.update(env or {})
        result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                                env=full_env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def stop(self) -> None:
        terminate(self.process)


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30, ca: Path | None = None) -> None:
    """Until ``/readyz`` answers ok; over HTTPS verified with ``ca`` (read at each try: the server
    writes it on its first start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
            with urllib.request.urlopen(url + "/readyz", timeout=1, context=context) as response:
                if response.read() == b"ok":
                    return
        except OSError:  # ssl.SSLError too
            time.sleep(0.05)
    raise RuntimeError("server did not become ready")


def create_default_service_account(url: str, namespace: str = "default", *,
                                   context: ssl.SSLContext | None = None) -> None:
    """For a server run without its controller manager: the ``default`` ServiceAccount that
    ServiceAccount admission wants before it admits a pod in ``namespace``."""
    body = b'{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}'
    request = urllib.request.Request(f"{url}/api/v1/namespaces/{namespace}/serviceaccounts", body,
                                     {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        response.read()


#: The explicit opt-outs of the closed defaults (HTTPS, ``--authorization-mode=Node,RBAC``) for the
#: generic API tests: they test API semantics, not authentication or authorization, over plain HTTP as
#: ``system:admin``. The auth tests and the end-to-end ones (tests/test_secure_up.py) run on the defaults.
OPEN_FLAGS = ("--secure=false", "--authorization-mode=AlwaysAllow")


def server_flags(secure: bool, extra: tuple[str, ...]) -> list[str]:
    """``pilothouse server``'s flags: the defaults when ``secure`` (unless ``extra`` names its own
    ``--authorization-mode``); else plain HTTP, allowing all unless ``extra`` names a mode."""
    if secure:
        return list(extra)
    if any(flag.startswith("--authorization-mode") for flag in extra):
        return [OPEN_FLAGS[0], *extra]
    return [*OPEN_FLAGS, *extra]


def start_server_process(data_dir: Path, port: int | None = None, extra: tuple[str, ...] = (), *,
                         secure: bool = False, ca: Path | None = None) -> ServerProcess:
    """``secure``: HTTPS and Node,RBAC (the defaults), checked against ``ca`` (default: the cluster CA it
    creates); else the API-semantics opt-outs (:data:`OPEN_FLAGS`)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir), "--port", str(port),
         *server_flags(secure, extra)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"{'https' if secure else 'http'}://127.0.0.1:{port}"
    wait_healthy(url, process, ca=(ca or data_dir / "pki" / "ca.crt") if secure else None)
    return ServerProcess(url, data_dir, data_dir / "kubeconfig.yaml", process, port)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A pilothouse API server process of its own for each test module."""
    proc = start_server_process(tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()


T = TypeVar("T")


async def write_burst(write: Callable[[str], Awaitable[T]], name: Callable[[int, int], str], seconds: float,
                      writers: int, transient: tuple[type[BaseException], ...]) -> tuple[dict[str, T], int]:
    """``writers`` tasks calling ``write(name(writer, i))`` for ``seconds``: (acknowledged name → what
    ``write`` returned, failures). A ``transient`` error is a write not acknowledged, which is allowed
    while the tests take a member or server away."""
    acked: dict[str, T] = {}
    failures = 0
    deadline = time.monotonic() + seconds

    async def writer(w: int) -> None:
        nonlocal failures
        i = 0
        while time.monotonic() < deadline:
            key = name(w, i)
            i += 1
            try:
                acked[key] = await write(key)
            except transient:
                failures += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return acked, failures



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (``CI=true``, as ``.ci/run`` runs) a skipped test is a failure: a skip there means a real
    part (kubectl, podman, etcd, helm, ...) that the setup should have installed is missing."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, where every real part must be present: {reason}"
