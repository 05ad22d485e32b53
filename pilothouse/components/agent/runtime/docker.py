"""The ContainerRuntime over the Docker Engine API (podman's service or dockerd), via aiodocker.

Everything the agent does to containers goes through here, so the quirks of the engines stay in one
place: podman wants explicit ``nofile``/``nproc`` ulimits on this kind of host, reports
``FinishedAt`` a little before ``StartedAt``, and says ``OOMKilled: false`` for a container the
kernel killed at its memory limit (the kernel log says otherwise: see :func:`oom_killed_ids`).
A pull error arrives inside the progress stream, not as an HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import re
import struct
import tarfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from pilothouse.components.agent.runtime.interface import (
    LABEL_POD_IP,
    LABEL_ROLE,
    ContainerEvent,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    ImagePullError,
    RuntimeError_,
)

__all__ = ["PAUSE_IMAGE", "DockerExecSession", "DockerRuntime", "build_pause_rootfs", "oom_killed_ids"]

log = logging.getLogger("pilothouse.agent.runtime")

PAUSE_IMAGE = "localhost/pilothouse/pause:latest"
#: The sandbox's process: sleeps forever and exits at once on SIGTERM (busybox sh has no PID-1 default).
PAUSE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]
DEFAULT_ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 4096, "Hard": 4096}]
_ZERO_TIME = "0001-01-01T00:00:00Z"
_OOM_RE = re.compile(rb"oom-kill:.*?(?:libpod-|docker[-/])([0-9a-f]{64})")
#: podman's answer to a list that includes a container whose removal was cut short after its storage
#: went (podman issue 15526): the whole list fails, for good, until that container is removed.
_HALF_REMOVED_RE = re.compile(r'getting container from store "([0-9a-f]{64})": container not known')
#: podman's answer to a list (and to an inspect) of a container whose storage record is left without
#: its read-write layer (podman SIGKILLed mid-removal a moment earlier): the error names the layer only.
_LAYER_GONE_RE = re.compile(r'reading information about layer "([0-9a-f]{64})": layer not known')
#: half-removed containers finished per list (each one a kill of the engine mid-removal)
_HALF_REMOVED_PER_LIST = 8


def build_pause_rootfs(busybox: str = "/bin/busybox") -> bytes:
    """A tar of a minimal rootfs: a static busybox and the applets the pause command needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "sleep"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return buf.getvalue()


def oom_killed_ids() -> set[str]:
    """Container ids the kernel's OOM killer named in its log (podman 4.3 does not report OOMKilled)."""
    found: set[str] = set()
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return found
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the record was overwritten while reading; go on
                continue
            if not record:
                break
            if b"oom-kill" in record:
                found.update(m.decode() for m in _OOM_RE.findall(record))
    finally:
        os.close(fd)
    return found


def _clean_time(value: str | None) -> str:
    if not value or value.startswith("0001-01-01"):
        return ""
    # RFC 3339 with seconds precision, as Kubernetes serializes metav1.Time
    return value.split(".")[0].rstrip("Z") + "Z" if "T" in value else value


def _state_from_inspect(info: dict[str, Any]) -> ContainerState:
    state = info.get("State") or {}
    config = info.get("Config") or {}
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (info.get("NetworkSettings") or {}).get("IPAddress") or ""
    if not ip:
        for network in networks.values():
            if network.get("IPAddress"):
                ip = network["IPAddress"]
                break
    labels = dict(config.get("Labels") or {})
    ip = ip or labels.get(LABEL_POD_IP, "")  # a sandbox the agent wired itself (NetworkMode none)
    status = str(state.get("Status") or "unknown").lower()
    if status in ("configured", "initialized"):
        status = "created"
    elif status in ("stopped", "dead"):
        status = "exited"
    started = _clean_time(state.get("StartedAt"))
    finished = _clean_time(state.get("FinishedAt"))
    if finished and started and finished < started:
        finished = started  # podman stamps FinishedAt a hair before StartedAt for quick exits
    return ContainerState(
        id=info["Id"], name=str(info.get("Name") or "").lstrip("/"), labels=labels,
        image=str(config.get("Image") or ""), image_id=str(info.get("Image") or ""), state=status,
        exit_code=int(state.get("ExitCode") or 0), started_at=started, finished_at=finished,
        oom_killed=bool(state.get("OOMKilled")), error=str(state.get("Error") or ""), ip=ip,
        pid=int(state.get("Pid") or 0))


class DockerExecSession:
    """An exec or attach stream: aiodocker's multiplexed Stream behind the ExecSession protocol."""

    def __init__(self, docker: aiodocker.Docker, stream: Any, exec_obj: Any | None, tty: bool) -> None:
        self._docker = docker
        self._stream = stream
        self._exec = exec_obj
        self._tty = tty

    async def write_stdin(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def close_stdin(self) -> None:
        # aiodocker's Stream has no half-close; the underlying transport does.
        resp = getattr(self._stream, "_resp", None)
        conn = getattr(resp, "connection", None) if resp is not None else None
        transport = getattr(conn, "transport", None) if conn is not None else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            message = await self._stream.read_out()
            if message is None:
                return
            yield (1 if self._tty else int(message.stream), bytes(message.data))

    async def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(DockerError):
            if self._exec is not None:
                await self._exec.resize(h=height, w=width)

    async def exit_code(self) -> int | None:
        if self._exec is None:
            return None
        info = await self._exec.inspect()
        code = info.get("ExitCode")
        return None if code is None else int(code)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.close()


class DockerRuntime:
    """Docker Engine API client shaped as :class:`ContainerRuntime`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        #: the last inspection of each container (see ``_inspect_listed``)
        self._inspected: dict[str, ContainerState] = {}
        self.docker: aiodocker.Docker | None = None
        self._version: dict[str, Any] = {}

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.docker = aiodocker.Docker(url=self.endpoint)
        self._version = await self._d.version()

    async def close(self) -> None:
        if self.docker is not None:
            await self.docker.close()
            self.docker = None

    @property
    def _d(self) -> aiodocker.Docker:
        if self.docker is None:
            raise RuntimeError_("runtime not started")
        return self.docker

    @property
    def _podman(self) -> bool:
        return any(c.get("Name") == "Podman Engine" for c in self._version.get("Components") or [])

    async def info(self) -> dict[str, str]:
        version = self._version or await self._d.version()
        components = {c.get("Name", ""): c.get("Version", "") for c in version.get("Components") or []}
        name = "podman" if "Podman Engine" in components else "docker"
        os_image = ""
        with contextlib.suppress(OSError), open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip().strip('"')
        return {"name": name, "version": str(version.get("Version") or components.get("Podman Engine", "")),
                "kernelVersion": str(version.get("KernelVersion") or os.uname().release),
                "operatingSystem": str(version.get("Os") or "linux"), "osImage": os_image,
                "architecture": str(version.get("Arch") or "amd64")}

    async def ensure_pause_image(self) -> str:
        """The sandbox image, built from the host's busybox-static when absent (no registry needed)."""
        existing = await self.image_id(PAUSE_IMAGE)
        if existing:
            return existing
        data = await asyncio.to_thread(build_pause_rootfs)
        await self._d._query_json("images/create", method="POST",
                                  params={"fromSrc": "-", "repo": PAUSE_IMAGE.rsplit(":", 1)[0], "tag": "latest"},
                                  data=data, headers={"Content-Type": "application/x-tar"})
        image = await self.image_id(PAUSE_IMAGE)
        if not image:
            raise RuntimeError_("could not import the pause image")
        return image

    # --------------------------------------------------------------- images

    async def image_id(self, image: str) -> str | None:
        try:
            info = await self._d.images.inspect(image)
        except DockerError as error:
            if error.status == 404:
                return None
            raise RuntimeError_(str(error.message)) from error
        return str(info["Id"])

    async def image_size(self, image: str) -> int:
        try:
            info = await self._d.images.inspect(image)
        except DockerError:
            return 0
        return int(info.get("Size") or 0)

    async def pull_image(self, image: str, auth: dict[str, str] | None) -> str:
        try:
            kwargs: dict[str, Any] = {}
            if auth and "/" in image:
                kwargs["auth"] = auth
            async for item in self._d.images.pull(image, stream=True, **kwargs):
                if isinstance(item, dict) and item.get("error"):
                    raise ImagePullError(str(item["error"]).strip())
        except ImagePullError:
            raise
        except (DockerError, aiodocker.exceptions.DockerContainerError) as error:
            raise ImagePullError(str(getattr(error, "message", error)).strip()) from error
        except Exception as error:  # DockerStreamError in older aiodocker is not a DockerError
            if type(error).__name__ == "DockerStreamError":
                raise ImagePullError(str(error).strip()) from error
            raise
        found = await self.image_id(image)
        if not found:
            raise ImagePullError(f"image {image} not present after pull")
        return found

    # ------------------------------------------------------------ containers

    def _config(self, spec: ContainerSpec) -> dict[str, Any]:
        host: dict[str, Any] = {"Ulimits": DEFAULT_ULIMITS, "Binds": [
            f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts]}
        if spec.sandbox_id:
            host["NetworkMode"] = f"container:{spec.sandbox_id}"
            host["IpcMode"] = f"container:{spec.sandbox_id}"
            if self._podman:
                # the pod's hostname: dockerd gives a container joining another's network that one's
                # hostname by itself (and refuses a UTSMode "container:"); podman needs to be told
                host["UTSMode"] = f"container:{spec.sandbox_id}"
        elif spec.host_network:
            host["NetworkMode"] = "host"
        elif spec.no_network:
            host["NetworkMode"] = "none"
        if spec.labels.get(LABEL_ROLE) == "sandbox":
            # dockerd lets other containers join a container's IPC namespace only when it was made
            # shareable (podman accepts the same); the pod's containers share the sandbox's
            host["IpcMode"] = "shareable"
        if spec.memory_limit:
            host["Memory"] = spec.memory_limit
            host["MemorySwap"] = spec.memory_limit  # no swap beyond the limit, as the kubelet does
        if spec.cpu_quota_millis:
            host["CpuPeriod"] = 100_000
            host["CpuQuota"] = max(1000, spec.cpu_quota_millis * 100)
        if spec.cpu_shares:
            host["CpuShares"] = spec.cpu_shares
        if spec.host_ports:
            host["PortBindings"] = {f"{c}/{p.lower()}": [{"HostPort": str(h)}] for c, h, p in spec.host_ports}
        config: dict[str, Any] = {
            "Image": spec.image, "Labels": spec.labels, "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "Tty": spec.tty, "OpenStdin": spec.stdin, "StdinOnce": spec.stdin_once,
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "HostConfig": host,
        }
        if spec.command is not None:
            config["Entrypoint"] = spec.command
        if spec.args is not None:
            config["Cmd"] = spec.args
        elif spec.command is not None:
            config["Cmd"] = []
        if spec.working_dir:
            config["WorkingDir"] = spec.working_dir
        if spec.hostname and not spec.sandbox_id:
            config["Hostname"] = spec.hostname
        if spec.user:
            config["User"] = spec.user
        if spec.host_ports:
            config["ExposedPorts"] = {f"{c}/{p.lower()}": {} for c, _, p in spec.host_ports}
        return config

    async def create_container(self, spec: ContainerSpec) -> str:
        try:
            container = await self._d.containers.create(self._config(spec), name=spec.name)
        except DockerError as error:
            # a leftover with the same name (a crash mid-create; podman answers 500 "already in use")
            if error.status == 409 or "already in use" in str(error.message):
                with contextlib.suppress(DockerError):
                    await self._d.containers.container(spec.name).delete(force=True)
                container = await self._d.containers.create(self._config(spec), name=spec.name)
            else:
                raise RuntimeError_(str(error.message)) from error
        return str(container.id)

    async def start_container(self, container_id: str) -> None:
        await self._call(container_id, "start")

    async def stop_container(self, container_id: str, timeout: float) -> None:
        try:
            async with self._d._query(f"containers/{container_id}/stop", method="POST",
                                      params={"t": max(0, int(timeout))},
                                      timeout=aiohttp.ClientTimeout(total=timeout + 30)):
                pass
        except DockerError as error:
            if error.status == 404:
                raise ContainerNotFound(container_id) from error
            if error.status != 304:  # already stopped
                raise RuntimeError_(str(error.message)) from error

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        await self._call(container_id, "kill", signal=signal)

    async def remove_container(self, container_id: str) -> None:
        self._inspected.pop(container_id, None)
        try:
            await self._d.containers.container(container_id).delete(force=True, v=True)
        except DockerError as error:
            if error.status != 404:
                raise RuntimeError_(str(error.message)) from error

    async def _call(self, container_id: str, action: str, **kwargs: Any) -> None:
        try:
            await getattr(self._d.containers.container(container_id), action)(**kwargs)
        except DockerError as error:
            if error.status == 404:
                raise ContainerNotFound(container_id) from error
            if error.status == 304:
                return
            # killing a container that already exited is not an error for us
            if action == "kill" and error.status == 409:
                return
            raise RuntimeError_(str(error.message)) from error

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]} if labels else None
        items = await self._list(filters)
        states = await asyncio.gather(*(self._inspect_listed(item) for item in items))
        return [s for s in states if s is not None]

    async def _list(self, filters: dict[str, list[str]] | None) -> list[Any]:
        """The engine's list, finishing the removal of a container podman half removed.

        A podman SIGKILLed while it removed a container can leave the container's record (state
        ``removing``) without its storage; podman's Docker-compatible list then fails whole with a
        500 naming it, so nothing of this agent's could be listed again (the chaos found it). A
        ``DELETE ?force=true`` of the container named completes the removal podman began. podman
        filters by label before it fails, and the agent lists by its own labels, so the container
        named is one of the agent's. A container left without its storage layer fails the list the
        same way, naming only the layer: :meth:`_without_layer` finds it, and it is removed too."""
        finished = 0
        while True:
            try:
                items: list[Any] = await self._d.containers.list(all=True, **({"filters": filters} if filters else {}))
                return items
            except DockerError as error:  # the engine away (900) or failing: the interface's error
                message = str(error.message)
                half_removed = _HALF_REMOVED_RE.search(message)
                layer_gone = _LAYER_GONE_RE.search(message)
                if finished == _HALF_REMOVED_PER_LIST or (half_removed is None and layer_gone is None):
                    raise RuntimeError_(message) from error
                if half_removed is not None:
                    broken, why = [half_removed.group(1)], "half removed"
                else:
                    assert layer_gone is not None
                    broken = await self._without_layer(filters, layer_gone.group(1))
                    why = f"without its storage layer {layer_gone.group(1)[:12]}"
                if not broken:
                    raise RuntimeError_(message) from error
            for container_id in broken:
                log.warning("removing container %s, which the engine left %s", container_id[:12], why)
                await self.remove_container(container_id)
            finished += 1

    async def _without_layer(self, filters: dict[str, list[str]] | None, layer: str) -> list[str]:
        """The containers in ``filters`` whose storage layer ``layer`` podman lost (none: not podman).

        podman SIGKILLed during a removal, after the container's layer went and before its storage
        record did, leaves the record without its layer (state ``removing``; the chaos met it, and a
        kill 24 ms into a DELETE made it by hand). podman's Docker-compatible list then fails whole
        with a 500 naming the layer, not the container, and so does the container's inspect, for good.
        podman's own list (served under the Docker API's version prefix too) does not read the layer:
        it gives the candidates, and an inspect failing on the same layer picks the broken one. The
        removal it was in is finished the same way as the half-removed one's, ``DELETE ?force=true``."""
        if not self._podman:
            return []
        try:
            items = await self._d._query_json("libpod/containers/json",
                                              params={"all": "true", **({"filters": json.dumps(filters)}
                                                                        if filters else {})})
        except DockerError:
            return []

        async def broken(container_id: str) -> bool:
            try:
                await self._d.containers.container(container_id).show()
            except DockerError as error:
                found = _LAYER_GONE_RE.search(str(error.message))
                return found is not None and found.group(1) == layer
            return False

        ids = [str(item["Id"]) for item in items or [] if isinstance(item, dict) and item.get("Id")]
        flags = await asyncio.gather(*(broken(i) for i in ids))
        return [i for i, bad in zip(ids, flags, strict=True) if bad]

    async def _inspect_listed(self, item: Any) -> ContainerState | None:
        """Inspect a listed container, reusing the last inspection while its state is unchanged.

        A container's inspected facts (start/finish times, exit code, IP) only change with its
        state; inspecting every container on every pod sync made up most of the engine calls when
        many pods start at once."""
        listed_state = item._container.get("State")
        if isinstance(listed_state, dict):
            listed_state = listed_state.get("Status")
        cached = self._inspected.get(item.id)
        if cached is not None and listed_state and cached.state == listed_state:
            return cached
        return await self._inspect_or_none(item.id)

    async def _inspect_or_none(self, container_id: str) -> ContainerState | None:
        with contextlib.suppress(ContainerNotFound):
            return await self.inspect_container(container_id)
        return None

    async def inspect_container(self, container_id: str) -> ContainerState:
        try:
            info = await self._d.containers.container(container_id).show()
        except DockerError as error:
            # podman answers 500 "no such container" for one removed while it was being looked up
            if error.status == 404 or "no such container" in str(error.message):
                self._inspected.pop(container_id, None)
                raise ContainerNotFound(container_id) from error
            raise RuntimeError_(str(error.message)) from error
        state = _state_from_inspect(info)
        self._inspected[container_id] = state
        return state

    async def stats(self, container_id: str) -> ContainerStats:
        """``GET /containers/{id}/stats?stream=0``: one reading (podman's service answered an empty
        body to ``one-shot=true``, so the engine's single non-streamed sample it is)."""
        try:
            readings = await self._d.containers.container(container_id).stats(stream=False)
        except DockerError as error:
            if error.status == 404 or "no such container" in str(error.message):
                raise ContainerNotFound(container_id) from error
            raise RuntimeError_(str(error.message)) from error
        raw: dict[str, Any] = (readings[0] if readings else {}) if isinstance(readings, list) else readings
        cpu = ((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        memory = raw.get("memory_stats") or {}
        details = memory.get("stats") or {}
        # cgroup v2 calls it inactive_file, v1 total_inactive_file: the kubelet's working set subtracts it.
        inactive = details.get("inactive_file", details.get("total_inactive_file", 0)) or 0
        usage = memory.get("usage") or 0
        # "read" has nanoseconds, which datetime cannot parse; the reading is from this moment anyway.
        return ContainerStats(cpu_seconds=cpu / 1e9, memory_working_set=max(usage - inactive, 0),
                              timestamp=time.time())

    # -------------------------------------------------------------- streams

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   since: float | None = None, timestamps: bool = False) -> AsyncIterator[bytes]:
        """Raw log bytes, stdout and stderr interleaved as the engine stored them."""
        try:
            info = await self._d.containers.container(container_id).show()
        except DockerError as error:
            raise ContainerNotFound(container_id) from error
        tty = bool((info.get("Config") or {}).get("Tty"))
        params: dict[str, Any] = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false",
                                  "timestamps": "true" if timestamps else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = str(int(since))
        async with self._d._query(f"containers/{container_id}/logs", params=params,
                                  timeout=aiohttp.ClientTimeout(total=None)) as response:
            if tty:
                async for chunk in response.content.iter_any():
                    yield chunk
                return
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while len(buffer) >= 8:
                    size = struct.unpack(">I", buffer[4:8])[0]
                    if len(buffer) < 8 + size:
                        break
                    yield buffer[8:8 + size]
                    buffer = buffer[8 + size:]

    async def exec(self, container_id: str, command: list[str], *, tty: bool, stdin: bool,
                   stdout: bool = True, stderr: bool = True) -> DockerExecSession:
        try:
            exec_obj = await self._d.containers.container(container_id).exec(
                command, stdout=stdout, stderr=stderr, stdin=stdin, tty=tty)
        except DockerError as error:
            if error.status == 404:
                raise ContainerNotFound(container_id) from error
            raise RuntimeError_(str(error.message)) from error
        stream = exec_obj.start(detach=False)
        await stream._init()
        return DockerExecSession(self._d, stream, exec_obj, tty)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> DockerExecSession:
        stream = self._d.containers.container(container_id).attach(stdout=True, stderr=True, stdin=stdin)
        await stream._init()
        return DockerExecSession(self._d, stream, None, tty)

    async def events(self) -> AsyncIterator[ContainerEvent]:
        """Container events from the engine until it goes away (the caller reconnects)."""
        params = {"filters": '{"type":["container"]}'}
        async with self._d._query("events", params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
            decoder_buffer = b""
            async for chunk in response.content.iter_any():
                decoder_buffer += chunk
                while b"\n" in decoder_buffer:
                    line, decoder_buffer = decoder_buffer.split(b"\n", 1)
                    event = _parse_event(line)
                    if event is not None:
                        yield event


def _parse_event(line: bytes) -> ContainerEvent | None:
    import orjson

    if not line.strip():
        return None
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    actor = raw.get("Actor") or {}
    attributes = dict(actor.get("Attributes") or {})
    code = attributes.pop("exitCode", None)
    action = str(raw.get("Action") or raw.get("status") or "")
    return ContainerEvent(id=str(actor.get("ID") or raw.get("id") or ""), action=action, labels=attributes,
                          exit_code=int(code) if code not in (None, "") else None)


def registry_auth(username: str, password: str, server: str) -> dict[str, str]:
    """The X-Registry-Auth payload aiodocker expects."""
    return {"username": username, "password": password, "serveraddress": server}


def decode_auth(value: str) -> tuple[str, str]:
    """A dockercfg ``auth`` field (base64 ``user:password``)."""
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password
