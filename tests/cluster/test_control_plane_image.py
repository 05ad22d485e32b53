"""The pilothouse image built from this machine's interpreter (cli/cluster/image.py), the first step of a
control plane run as static pods: imported into a podman storage of the test's own, it runs
``pilothouse server`` in a container (host network, its data dir a bind mount), which answers ``/healthz``
over HTTPS with the CA it created there."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster.image import SITE, interpreter, write_image_tar

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TAG = "localhost/pilothouse-test:image"


@pytest.fixture()
def podman() -> Iterator[list[str]]:
    if shutil.which("podman") is None or shutil.which("runc") is None or os.geteuid() != 0:
        pytest.skip("needs root, podman and runc")
    directory = Path(tempfile.mkdtemp(prefix="pilothouse-image-"))
    base = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "--root", str(directory / "storage"),
            "--runroot", str(directory / "run")]
    try:
        yield base
    finally:
        subprocess.run([*base, "rm", "--all", "--force", "--time", "0"], capture_output=True, check=False)
        subprocess.run([*base, "rmi", "--all", "--force"], capture_output=True, check=False)
        for line in Path("/proc/self/mounts").read_text().splitlines():  # podman's overlay mounts
            if line.split()[1].startswith(str(directory)):
                subprocess.run(["umount", "-l", line.split()[1]], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthz(url: str, ca: Path) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3, context=ssl.create_default_context(cafile=str(ca))) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def test_the_image_runs_the_api_server(podman: list[str], tmp_path: Path) -> None:
    tar = write_image_tar(tmp_path / "image.tar")
    with tarfile.open(tar) as archive:
        names = set(archive.getnames())
    assert interpreter().lstrip("/") in names
    assert f"{SITE}/pilothouse/__main__.py".lstrip("/") in names
    assert not any(name.startswith(f"{SITE.lstrip('/')}/pytest/") for name in names)  # test-only: left out
    imported = subprocess.run([*podman, "import", str(tar), TAG], capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr

    data = tmp_path / "data"
    data.mkdir()
    port = _free_port()
    started = subprocess.run([*podman, "run", "-d", "--name", "apiserver", "--network", "host",
                              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",  # runtime-notes.md
                              "-e", f"PYTHONPATH={SITE}", "-v", f"{data}:/data", TAG, interpreter(), "-m", "pilothouse",
                              "server", "--data-dir", "/data", "--bind-address", "127.0.0.1", "--port", str(port),
                              "--disable", "scheduler,controller-manager"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    while _healthz(f"https://127.0.0.1:{port}/healthz", data / "pki" / "ca.crt") != "ok":
        logs = subprocess.run([*podman, "logs", "apiserver"], capture_output=True, text=True).stderr
        assert time.monotonic() < deadline, logs
        time.sleep(1)
