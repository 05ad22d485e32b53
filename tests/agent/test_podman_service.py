"""The podman service the agent starts and owns when it is given no engine endpoint."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from pilothouse.components.agent.runtime.podman_service import (
    EXEC_SESSION_DELAY,
    PodmanService,
    containers_conf_with_exec_delay,
    podman_available,
)
from tests.agent.conftest import _busybox_rootfs, _unix_request


def test_exec_delay_joins_the_hosts_configuration(tmp_path: Path) -> None:
    host = tmp_path / "containers.conf"
    host.write_text('[containers]\nlog_size_max = 100\n[engine]\nexit_command_delay = 300\n'
                    'events_logger = "file"\n[engine.runtimes]\nrunc = ["/usr/bin/runc"]\n')
    merged = tomllib.loads(containers_conf_with_exec_delay(12, (tmp_path / "missing.conf", host)))
    assert merged == {"containers": {"log_size_max": 100},
                      "engine": {"exit_command_delay": 12, "events_logger": "file",
                                 "runtimes": {"runc": ["/usr/bin/runc"]}}}
    host.write_text('[containers]\nlog_size_max = 100\n')
    assert tomllib.loads(containers_conf_with_exec_delay(12, (host,)))["engine"] == {"exit_command_delay": 12}
    assert tomllib.loads(containers_conf_with_exec_delay(12, ()))["engine"] == {"exit_command_delay": 12}


def _conmon_delays(container_id: str) -> list[str]:
    """The --exit-delay of every conmon serving ``container_id``'s exec sessions."""
    delays = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"conmon") and container_id.encode() in args and b"--exit-delay" in args:
            delays.append(args[args.index(b"--exit-delay") + 1].decode())
    return delays


async def test_owned_service_keeps_exec_sessions_briefly() -> None:
    """An exec's conmon waits EXEC_SESSION_DELAY seconds before cleaning up, not Docker's 5 minutes."""
    if not podman_available():
        pytest.skip("podman not installed")
    tmp_path = Path(tempfile.mkdtemp(prefix="phsvc-"))  # podman refuses a runroot path over 50 characters
    service = PodmanService(tmp_path / "podman.sock", storage_root=tmp_path / "storage", run_root=tmp_path / "run")
    await service.start()
    sock = service.socket_path
    container_id = ""
    try:
        def call(method: str, path: str, body: object = None, raw: bytes | None = None,
                 content_type: str = "application/json") -> tuple[int, bytes]:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            return _unix_request(sock, method, path, data, {"Content-Type": content_type} if data else {})
        status, body = await asyncio.to_thread(call, "POST", "/images/create?fromSrc=-&repo=localhost/phsvc",
                                               raw=_busybox_rootfs(), content_type="application/x-tar")
        assert status == 200, body
        limits = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]
        status, body = await asyncio.to_thread(call, "POST", "/containers/create?name=execdelay", {
            "Image": "localhost/phsvc:latest", "Cmd": ["/bin/sleep", "60"], "HostConfig": {"Ulimits": limits}})
        assert status == 201, body
        container_id = json.loads(body)["Id"]
        assert (await asyncio.to_thread(call, "POST", f"/containers/{container_id}/start"))[0] == 204
        status, body = await asyncio.to_thread(call, "POST", f"/containers/{container_id}/exec",
                                               {"Cmd": ["/bin/true"], "AttachStdout": True})
        assert status == 201, body
        exec_id = json.loads(body)["Id"]
        assert (await asyncio.to_thread(call, "POST", f"/exec/{exec_id}/start", {"Detach": False}))[0] == 200
        assert _conmon_delays(container_id) == [str(EXEC_SESSION_DELAY)] * len(_conmon_delays(container_id))
        assert _conmon_delays(container_id), "the exec session's conmon is there, waiting to clean up"
    finally:
        if container_id:
            await asyncio.to_thread(_unix_request, sock, "DELETE", f"/containers/{container_id}?force=true&t=0")
        await service.stop()
        for line in Path("/proc/self/mounts").read_text().splitlines():
            if line.split()[1].startswith(str(tmp_path)):
                subprocess.run(["umount", "-l", line.split()[1]], check=False, capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
