"""Start real etcd processes on loopback ports in a temp dir, for the etcd backend's tests and bench.

A single member (:class:`EtcdCluster` with ``size=1``) backs the conformance suite: each test gets a
fresh one, because the suite asserts an empty store's revision (etcd revisions never go back, so a
shared server cannot be reset). Short heartbeat/election timeouts make a new member lead in ~0.1 s.
A three-member cluster backs the failure tests (stop members, check quorum loss and recovery).

With ``tls=EtcdTLS(...)`` the client port serves HTTPS and demands a client certificate signed by the
given CA (``--client-cert-auth``), as a production etcd behind kube-apiserver does; peers stay plain HTTP.

Needs the ``etcd`` binary (Debian package ``etcd-server``); :func:`etcd_binary` returns None if absent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EtcdCluster", "EtcdMember", "EtcdTLS", "etcd_binary", "free_port"]


def etcd_binary() -> str | None:
    """Path of the etcd server binary, or None when it is not installed."""
    return os.environ.get("ETCD_BIN") or shutil.which("etcd") or (
        "/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class EtcdTLS:
    """PEM paths for a TLS client port: etcd's own cert/key, the CA that signs clients, and a client
    cert/key (signed by that CA) that the harness itself uses for health checks."""

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        return ctx


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    tls: EtcdTLS | None = None

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """``size`` etcd members on 127.0.0.1, data under a temp dir removed by :meth:`stop`."""

    def __init__(self, size: int = 1, *, base_dir: str | os.PathLike[str] | None = None,
                 heartbeat_ms: int = 10, election_ms: int = 100, tls: EtcdTLS | None = None) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd binary not found (apt-get install etcd-server)")
        self.binary = binary
        self._own_dir = base_dir is None
        self.base = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="etcd-"))
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.token = f"pilothouse-{os.getpid()}-{time.monotonic_ns()}"
        self.tls = tls
        self.members = [
            EtcdMember(f"m{i}", free_port(), free_port(), self.base / f"m{i}", tls=tls) for i in range(size)
        ]
        self._initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoint(self) -> str:
        """The store endpoint (``etcd://h:p,h:p``, ``etcd+https://`` with TLS) of every member."""
        hosts = ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)
        return ("etcd+https://" if self.tls else "etcd://") + hosts

    def start(self, timeout: float = 20.0) -> EtcdCluster:
        for m in self.members:
            self.start_member(m, wait=False)
        self.wait_healthy(timeout)
        return self

    def start_member(self, m: EtcdMember, *, wait: bool = True, timeout: float = 20.0) -> None:
        """Start (or restart, keeping its data dir) one member."""
        if m.running:
            return
        m.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"{m.name}.log", "ab")  # noqa: SIM115 - handed to the child
        args = [
            self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self._initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--log-level", "warn", "--logger", "zap",
        ]
        if m.tls is not None:
            args += ["--cert-file", m.tls.cert_file, "--key-file", m.tls.key_file,
                     "--trusted-ca-file", m.tls.ca_file, "--client-cert-auth"]
        env = dict(os.environ)
        env.pop("ETCD_UNSUPPORTED_ARCH", None)
        m.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self._wait_member(m, timeout)

    def stop_member(self, m: EtcdMember, *, kill: bool = False) -> None:
        """Stop one member (SIGTERM, or SIGKILL with ``kill``); its data dir stays for a restart."""
        p = m.process
        if p is None:
            return
        if p.poll() is None:
            if kill:
                p.kill()
            else:
                p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        m.process = None

    def stop(self) -> None:
        for m in self.members:
            self.stop_member(m, kill=True)
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until some running member answers a linearizable read (so a leader exists)."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.members:
                if m.running and _healthy(m):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd not healthy after {timeout}s; logs in {self.base}")
            self._check_alive()
            time.sleep(0.02)

    def _wait_member(self, m: EtcdMember, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _healthy(m):
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd member {m.name} not healthy after {timeout}s")
            self._check_alive()
            time.sleep(0.02)

    def _check_alive(self) -> None:
        for m in self.members:
            if m.process is not None and m.process.poll() is not None:
                log = (self.base / f"{m.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"etcd member {m.name} exited ({m.process.returncode}):\n{log}")

    def leader(self) -> EtcdMember | None:
        """The running member that is the raft leader, if any member knows one."""
        ids: dict[str, EtcdMember] = {}
        leader_id = ""
        for m in self.members:
            if not m.running:
                continue
            status = _post(m, "/v3/maintenance/status", b"{}")
            if status is None:
                continue
            ids[str(status["header"]["member_id"])] = m
            leader_id = str(status.get("leader", "")) or leader_id
        return ids.get(leader_id)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _post(m: EtcdMember, path: str, body: bytes) -> dict[str, Any] | None:
    req = urllib.request.Request(m.client_url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        ctx = m.tls.client_context() if m.tls is not None else None
        with urllib.request.urlopen(req, timeout=1.0, context=ctx) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _healthy(m: EtcdMember) -> bool:
    # A linearizable range through the JSON gateway succeeds only once a leader is elected.
    return _post(m, "/v3/kv/range", b'{"key":"AA=="}') is not None
