"""Start and own a ``podman system service`` when the agent is given no engine endpoint.

The seed ran dockerd as a system service; on a host with only podman the agent starts podman's
Docker-compatible API itself, with the flags this kind of host needs (runc, cgroupfs), on a socket
under its root dir. The service is only the API: containers are run by conmon and survive the
service (and the agent) going away, which is what lets a restarted agent adopt them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

__all__ = ["PodmanService", "containers_conf_with_exec_delay", "podman_available"]

log = logging.getLogger("pilothouse.agent.podman")


#: How long podman keeps a finished exec session (its conmon process) for clients to inspect. Its
#: Docker-compatible API uses Docker's 5 minutes, which under an exec probe every second means ~300
#: idle conmon processes per probed container; the agent reads an exec's exit code as soon as its
#: output ends, so seconds are enough.
EXEC_SESSION_DELAY = 30
_SYSTEM_CONFS = (Path("/etc/containers/containers.conf"), Path("/usr/share/containers/containers.conf"))


def containers_conf_with_exec_delay(delay: int = EXEC_SESSION_DELAY, sources: tuple[Path, ...] = _SYSTEM_CONFS) -> str:
    """The host's containers.conf with ``[engine] exit_command_delay`` set.

    ``CONTAINERS_CONF`` replaces the configuration files (podman 4.3 has no drop-in override), so
    the service gets a copy of the one the host uses, plus the setting.
    """
    text = ""
    for source in sources:
        with contextlib.suppress(OSError):
            text = source.read_text()
            break
    setting = f"exit_command_delay = {delay}"
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "[engine]":
            lines.insert(index + 1, setting)  # a later exit_command_delay in the section would clash: drop it
            lines = [x for i, x in enumerate(lines) if i <= index + 1 or not x.strip().startswith("exit_command_delay")]
            return "\n".join(lines) + "\n"
    return text + ("\n" if text and not text.endswith("\n") else "") + f"[engine]\n{setting}\n"


def podman_available() -> bool:
    return shutil.which("podman") is not None


class PodmanService:
    """``podman --runtime runc --cgroup-manager=cgroupfs system service --time=0 unix://SOCKET``."""

    def __init__(self, socket_path: Path, *, storage_root: Path | None = None, run_root: Path | None = None,
                 log_path: Path | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.socket_path = socket_path
        self.storage_root = storage_root
        self.run_root = run_root
        self.log_path = log_path or socket_path.with_suffix(".log")
        self.extra_env = extra_env or {}
        self.process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        command = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
        if self.storage_root:
            command += ["--root", str(self.storage_root)]
        if self.run_root:
            command += ["--runroot", str(self.run_root)]
        return [*command, "system", "service", "--time=0", self.endpoint]

    async def start(self, timeout: float = 20.0) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        env = {**os.environ, **self.extra_env}
        if "CONTAINERS_CONF" not in env:  # the operator's own choice wins
            conf = self.socket_path.with_name("containers.conf")
            conf.write_text(containers_conf_with_exec_delay())
            env["CONTAINERS_CONF"] = str(conf)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            # own session: a Ctrl-C aimed at the agent must not reach the service first
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), stdout=log_file, stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
                env=env, start_new_session=True,
                # conmon writes an empty "oom" file into its working directory when a container is
                # OOM-killed: the socket's directory, not wherever the agent was started from
                cwd=self.socket_path.parent)
        finally:
            log_file.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"podman system service exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            if self.socket_path.exists() and await self._answers():
                log.info("podman service listening on %s", self.endpoint)
                return
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"podman system service did not answer within {timeout}s; see {self.log_path}")

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError:
            return False
        try:
            writer.write(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(64), 2)
            return data.startswith(b"HTTP/1.") and b" 200" in data
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stop the API service only; containers keep running under conmon."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
