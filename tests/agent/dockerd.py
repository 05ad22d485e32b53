"""A private ``dockerd`` for the tests that run the agent on Docker's engine instead of podman.

Debian's ``docker.io`` (dockerd 20.10 with its own containerd, runc). The daemon gets everything of
its own under one temp directory (data root, exec root, socket, pid file) so it never touches a
system Docker, and is started without its bridge and iptables rules (``--bridge=none
--iptables=false``): it must not change the host's firewall, and the agent wires pod networking
itself. cgroupfs and explicit nofile/nproc limits for the same reasons as podman here.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tests.agent.conftest import EngineAPI, _busybox_rootfs, _unix_request
from tests.conftest import terminate


@dataclass
class DockerdFixture(EngineAPI):
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        d = self.directory
        return ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "dockerd.pid"), "-H", self.endpoint, "--bridge=none", "--iptables=false",
                "--ip-masq=false", "--exec-opt", "native.cgroupdriver=cgroupfs",
                "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=1024:1024"]

    def start(self, timeout: float = 30) -> None:
        log = open(self.directory / "dockerd.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log()}")
            if self.socket_path.exists():
                try:
                    if _unix_request(self.socket_path, "GET", "/_ping", timeout=2)[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dockerd did not answer: {self.log()}")

    def log(self) -> str:
        return (self.directory / "dockerd.log").read_text(errors="replace")[-2000:]

    def kill(self, container_id: str) -> None:
        status, body = self.api("POST", f"/containers/{container_id}/kill")
        assert status == 204, body

    def import_busybox(self, reference: str) -> None:
        repo, _, tag = reference.rpartition(":")
        status, body = self.api("POST", f"/images/create?fromSrc=-&repo={urllib.parse.quote(repo)}&tag={tag}",
                                raw=_busybox_rootfs(), headers={"Content-Type": "application/x-tar"})
        assert status == 200 and b'"error"' not in body, body

    def stop(self) -> None:
        terminate(self.process, 20)
        # containerd-shim mounts (rootfs, shm) outlive the daemon: release them so the temp dir can go
        with open("/proc/self/mounts") as mounts:
            targets = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.directory))]
        for target in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def dockerd_available() -> str:
    """Empty when dockerd can be tried here, else the reason it cannot."""
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        return "dockerd not installed (apt-get install -y docker.io)"
    if shutil.which("runc") is None:
        return "runc not installed"
    return ""
