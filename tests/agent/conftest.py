"""Shared fixtures for the node agent tests: a podman API service, a busybox image, a registry.

All session-scoped, because starting podman and a registry costs seconds; tests must leave them as
they found them (their own pods and containers only). Fixtures:

- ``podman`` -> :class:`PodmanFixture`: ``podman --runtime runc --cgroup-manager=cgroupfs system
  service`` on a socket in a temp dir with its own storage (``--root``/``--runroot``). Every test
  needing it SKIPS (with the reason) only when podman cannot run a container at all here.
  ``podman.cli(*args)`` runs the podman CLI against the same storage; ``podman.restart()``.
- ``busybox_image`` -> ``localhost/pilothouse-test/busybox:1.35`` (tagged, so the default
  pull policy is IfNotPresent), built from Debian's
  busybox-static (``/bin/busybox`` plus every applet as a symlink), imported through the API.
- ``registry`` -> :class:`RegistryFixture`: ``docker-registry`` on 127.0.0.1 with htpasswd (bcrypt)
  auth, declared insecure in ``/etc/containers/registries.conf.d`` (the service is restarted to read
  it), with the busybox image pushed as ``registry.image`` (``127.0.0.1:PORT/test/busybox:v1``).
- ``start_agent(server, **options)`` -> :class:`AgentProcess` (module code calls it): a node agent
  process against a ``server`` fixture, using the podman fixture's socket.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.conftest import ServerProcess, free_port, terminate

BUSYBOX = "/bin/busybox"
TEST_IMAGE = "localhost/pilothouse-test/busybox:1.35"
REGISTRY_USER = "pilot"
REGISTRY_PASSWORD = "s3cret-pass"


def _unix_request(socket_path: Path, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """A tiny HTTP/1.0 client over the engine's unix socket (no dependency on the code under test)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        head = f"{method} {path} HTTP/1.0\r\nHost: d\r\n"
        for key, value in (headers or {}).items():
            head += f"{key}: {value}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        sock.sendall(head.encode() + b"\r\n" + (body or b""))
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    return int(header.split(b" ", 2)[1]), payload


class EngineAPI:
    """Docker Engine API calls over an engine fixture's unix socket (podman's service or dockerd)."""

    socket_path: Path

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None, timeout: float = 60) -> tuple[int, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else (headers or {})
        return _unix_request(self.socket_path, method, path, data, hdrs, timeout=timeout)

    def containers(self, label: str) -> list[dict[str, Any]]:
        """Engine view of containers carrying ``label`` (k=v), running or not."""
        query = urllib.parse.quote(json.dumps({"label": [label]}))
        status, body = self.api("GET", f"/containers/json?all=true&filters={query}")
        assert status == 200, body
        result: list[dict[str, Any]] = json.loads(body)
        return result


@dataclass
class PodmanFixture(EngineAPI):
    directory: Path
    socket_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    def base(self) -> list[str]:
        return ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "--root", str(self.directory / "storage"),
                "--runroot", str(self.directory / "run")]

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.base(), *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr}")
        return result

    def start(self) -> None:
        with contextlib_suppress():
            self.socket_path.unlink()
        log = open(self.directory / "service.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen([*self.base(), "system", "service", "--time=0", self.endpoint],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        # conmon writes an empty "oom" file into its working directory
                                        # when a container is OOM-killed: keep it out of the checkout
                                        cwd=self.directory)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman service exited: {(self.directory / 'service.log').read_text()[-2000:]}")
            if self.socket_path.exists():
                with contextlib_suppress():
                    if _unix_request(self.socket_path, "GET", "/_ping", timeout=2)[0] == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError("podman service did not answer")

    def stop(self) -> None:
        terminate(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()



def contextlib_suppress() -> Any:
    import contextlib

    return contextlib.suppress(Exception)


import urllib.parse  # noqa: E402 - used by PodmanFixture.containers


def _busybox_rootfs() -> bytes:
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev", "root", "var", "var/www"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _kill_leftover_conmons(directory: Path) -> None:
    """Last resort: conmon processes (and the containers under them) still serving this storage."""
    marker = str(directory).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"conmon") and any(marker in arg for arg in args):
            pid = int(cmdline.parent.name)
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], capture_output=True, check=False)
            with contextlib_suppress():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanFixture]:
    """A podman API service of the test session's own; skips when podman cannot run here."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman/runc not installed (apt-get install -y podman runc busybox-static)")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static not installed (/bin/busybox)")
    directory = tmp_path_factory.mktemp("podman")
    fixture = PodmanFixture(directory, directory / "podman.sock")
    try:
        fixture.start()
    except RuntimeError as error:
        pytest.skip(f"podman cannot run here: {error}")
    yield fixture
    remove_podman(fixture)


def remove_podman(fixture: PodmanFixture) -> None:
    """Stop ``fixture``'s service leaving no container, process or mount of its storage behind."""
    # podman 4.3 removes in parallel and refuses a pod's sandbox while a container that joined its
    # namespaces is still there (even with --depend): repeat until the sandboxes' turn has come.
    for _ in range(4):
        with contextlib_suppress():
            if fixture.cli("rm", "--all", "--force", "--time", "0", check=False, timeout=120).returncode == 0:
                break
    fixture.stop()
    _kill_leftover_conmons(fixture.directory)
    # podman leaves its storage's overlay (and shm) mounts behind; unmount them so that pytest can
    # remove the temp directory instead of warning about busy mounts.
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(str(fixture.directory))]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def import_busybox(podman: PodmanFixture) -> str:
    """Build :data:`TEST_IMAGE` from busybox-static into ``podman`` and check that it runs (for
    code outside pytest too: bench/chaos.py --real-agent); a RuntimeError says why it cannot."""
    repo, _, tag = TEST_IMAGE.rpartition(":")
    query = f"fromSrc=-&repo={urllib.parse.quote(repo)}&tag=latest"
    status, body = podman.api("POST", f"/images/create?{query}",
                              raw=_busybox_rootfs(), headers={"Content-Type": "application/x-tar"})
    if status != 200:
        raise RuntimeError(f"podman cannot import an image: {body[:300]!r}")
    # podman's import ignores ``tag``: tag the imported :latest explicitly
    status, body = podman.api("POST", f"/images/{urllib.parse.quote(repo + ':latest', safe='')}/tag"
                                      f"?repo={urllib.parse.quote(repo)}&tag={tag}")
    assert status in (200, 201), body
    probe = podman.cli("run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                       TEST_IMAGE, "/bin/true", check=False)
    if probe.returncode != 0:
        raise RuntimeError(f"podman cannot run a container here: {probe.stderr.strip()[-300:]}")
    return TEST_IMAGE


@pytest.fixture(scope="session")
def busybox_image(podman: PodmanFixture) -> str:
    """``localhost/pilothouse-test/busybox:1.35`` (tagged, so the default
  pull policy is IfNotPresent) imported into the session's podman."""
    try:
        return import_busybox(podman)
    except RuntimeError as error:
        pytest.skip(str(error))


@dataclass
class RegistryFixture:
    port: int
    username: str
    password: str
    image: str  # the busybox image pushed there
    process: subprocess.Popen[bytes]
    conf: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def dockercfg(self, password: str | None = None) -> str:
        """The seed's legacy ``.dockercfg`` format: ``{"host": {"auth": b64(user:pass), "email": ""}}``."""
        auth = base64.b64encode(f"{self.username}:{password or self.password}".encode()).decode()
        return json.dumps({self.host: {"auth": auth, "email": ""}})


@pytest.fixture(scope="session")
def registry(podman: PodmanFixture, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RegistryFixture]:
    """A private registry with bcrypt htpasswd auth, trusted as insecure by podman, busybox pushed."""
    if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
        pytest.skip("docker-registry/apache2-utils not installed")
    directory = tmp_path_factory.mktemp("registry")
    port = free_port()
    htpasswd = directory / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), REGISTRY_USER, REGISTRY_PASSWORD], check=True,
                   capture_output=True)
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{directory / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: pilothouse-test\n    path: {htpasswd}\n")
    log = open(directory / "registry.log", "ab")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # 401: up, and asking for credentials
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.skip("docker-registry did not start")
            time.sleep(0.1)
    conf = Path(f"/etc/containers/registries.conf.d/pilothouse-test-{port}.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    podman.restart()  # the service reads registries.conf.d only when it starts
    repo = f"127.0.0.1:{port}/test/busybox"
    status, body = podman.api("POST", f"/images/{urllib.parse.quote(TEST_IMAGE, safe='')}/tag?repo={repo}&tag=v1")
    assert status in (200, 201), body
    auth = base64.urlsafe_b64encode(json.dumps({"username": REGISTRY_USER, "password": REGISTRY_PASSWORD,
                                                "serveraddress": f"127.0.0.1:{port}"}).encode()).decode()
    status, body = podman.api("POST", f"/images/{urllib.parse.quote(repo, safe='')}/push?tag=v1",
                              headers={"X-Registry-Auth": auth})
    assert status == 200 and b'"error"' not in body, body
    # drop the local copy so that the agent really pulls it
    podman.api("DELETE", f"/images/{urllib.parse.quote(repo + ':v1', safe='')}")
    yield RegistryFixture(port, REGISTRY_USER, REGISTRY_PASSWORD, f"{repo}:v1", process, conf)
    process.terminate()
    process.wait(10)
    conf.unlink(missing_ok=True)


@dataclass
class AgentProcess:
    options: dict[str, Any]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen([sys.executable, "-m", "tests.agent.agent_runner", json.dumps(self.options)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])

    def stop(self) -> None:
        """SIGTERM: the agent exits, its containers keep running (adoption on the next start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class Engine(Protocol):
    """What an agent needs of an engine fixture (podman's service, or dockerd)."""

    @property
    def endpoint(self) -> str: ...


def make_agent(server: ServerProcess, engine: Engine, directory: Path, node_name: str,
               **options: Any) -> AgentProcess:
    """An agent process for ``node_name`` (not started), on ``engine``'s socket."""
    opts = {"server": server.url, "node_name": node_name, "runtime_endpoint": engine.endpoint,
            "root_dir": str(directory / "root"), "port": free_port(), "relist_period": 5.0, **options}
    directory.mkdir(parents=True, exist_ok=True)
    return AgentProcess(opts, directory / "agent.log")


def start_ready_agent(server: ServerProcess, engine: Engine, directory: Path, node_name: str,
                      **options: Any) -> AgentProcess:
    """``make_agent`` started, once its Node is Ready (its log in the error if it never is)."""
    proc = make_agent(server, engine, directory, node_name, **options)
    proc.start()
    try:
        wait_for(lambda: node_ready(server, node_name), 30, "node Ready")
    except AssertionError:
        proc.stop()
        raise AssertionError(proc.log()) from None
    return proc


def module_agent(server: ServerProcess, engine: Engine, factory: pytest.TempPathFactory,
                 node_name: str) -> Iterator[AgentProcess]:
    """The body of a module's ``agent`` fixture: a ready agent for ``node_name``, stopped after."""
    proc = start_ready_agent(server, engine, factory.mktemp("agent"), node_name)
    yield proc
    proc.stop()


def node_ready(server: ServerProcess, node_name: str) -> bool:
    result = server.kubectl("get", "node", node_name, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def get_pod(server: ServerProcess, name: str) -> dict[str, Any] | None:
    result = server.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ready_pods(server: ServerProcess, selector: str, count: int) -> list[dict[str, Any]] | None:
    """The pods matching ``selector`` once ``count`` of them run, ready and with an address."""
    pods = json.loads(server.kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    ok = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")
          and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]
    return ok if len(ok) == count else None


def wait_for(predicate: Callable[[], Any], timeout: float, message: str = "", interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message} (last: {last!r})")
