"""Liveness, readiness and startup probes, one asyncio task per (running container, probe).

Kubernetes' prober semantics: nothing runs before ``initialDelaySeconds``; liveness and readiness
wait until the startup probe has succeeded; a result flips only after ``successThreshold``
consecutive successes or ``failureThreshold`` consecutive failures; readiness starts as failure,
liveness and startup as unknown. A flip calls back into the pod worker, which restarts the container
(liveness, startup) or rewrites the Ready condition (readiness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pilothouse.components.agent.runtime.interface import ContainerRuntime
from pilothouse.machinery.meta import Object

__all__ = ["ContainerProbes", "ProbeResult", "run_handler", "run_probe"]

log = logging.getLogger("pilothouse.agent.probes")

USER_AGENT = "kube-probe/1.32"


@dataclass
class ProbeResult:
    ok: bool
    output: str = ""


def _port(container: Object, port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item.get("containerPort", 0))
    raise ValueError(f"port {port!r} not found in container")


async def run_handler(handler: Object, *, runtime: ContainerRuntime, container_id: str, container: Object,
                      pod_ip: str, timeout: float) -> ProbeResult:
    """One probe attempt or lifecycle hook (exec, httpGet, tcpSocket)."""
    try:
        if "exec" in handler:
            session = await runtime.exec(container_id, list(handler["exec"].get("command") or []), tty=False,
                                         stdin=False)
            output = bytearray()

            async def drain() -> None:
                async for _, data in session.output():
                    if len(output) < 10240:
                        output.extend(data)
            try:
                await asyncio.wait_for(drain(), timeout)
                code = await session.exit_code()
            finally:
                await session.close()
            return ProbeResult(code == 0, output.decode(errors="replace"))
        if "httpGet" in handler:
            spec = handler["httpGet"]
            scheme = str(spec.get("scheme") or "HTTP").lower()
            host = spec.get("host") or pod_ip
            path = spec.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
            for header in spec.get("httpHeaders") or []:
                headers[header.get("name", "")] = header.get("value", "")
            url = f"{scheme}://{host}:{_port(container, spec.get('port'))}{path}"
            async with aiohttp.ClientSession() as session_http, session_http.get(
                    url, headers=headers, ssl=False, allow_redirects=True,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                body = await response.content.read(10240)
                return ProbeResult(200 <= response.status < 400,
                                   f"HTTP probe failed with statuscode: {response.status}"
                                   if response.status >= 400 else body.decode(errors="replace"))
        if "tcpSocket" in handler:
            spec = handler["tcpSocket"]
            host = spec.get("host") or pod_ip
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, _port(container, spec.get("port"))), timeout)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return ProbeResult(True)
        if "sleep" in handler:
            await asyncio.sleep(min(float(handler["sleep"].get("seconds", 0)), timeout))
            return ProbeResult(True)
    except TimeoutError:
        return ProbeResult(False, f"timeout: failed to probe after {timeout}s")
    except Exception as error:  # connection refused, unknown port, engine error: a failed probe
        return ProbeResult(False, str(error))
    return ProbeResult(True, "probe type not supported; assumed success")


async def run_probe(probe: Object, **kwargs: Any) -> ProbeResult:
    return await run_handler(probe, timeout=float(probe.get("timeoutSeconds") or 1), **kwargs)


@dataclass
class ContainerProbes:
    """The probes of one running container attempt, with their current results."""

    runtime: ContainerRuntime
    container_id: str
    container: Object
    pod_ip: str
    on_change: Callable[[], None]
    #: report(type, reason, message): the prober's events, one per failed probe as the kubelet records
    report: Callable[[str, str, str], None] = lambda _type, _reason, _message: None
    started: bool = False
    ready: bool = False
    #: set when liveness or startup failed: the worker kills and restarts the container
    failed: str = ""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _startup_done: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        container = self.container
        self.started = "startupProbe" not in container
        if self.started:
            self._startup_done.set()
        self.ready = "readinessProbe" not in container
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in container:
                self._tasks.append(asyncio.create_task(self._loop(kind, container[kind]),
                                                       name=f"probe-{kind}-{self.container_id[:12]}"))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _loop(self, kind: str, probe: Object) -> None:
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        if kind != "startupProbe":
            await self._startup_done.wait()
        period = max(1.0, float(probe.get("periodSeconds") or 10))
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        successes = failures = 0
        while True:
            result = await run_probe(probe, runtime=self.runtime, container_id=self.container_id,
                                     container=self.container, pod_ip=self.pod_ip)
            if result.ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                # prober.go: every failed probe is an Unhealthy event ("Liveness probe failed: ..."),
                # which the recorder counts up as one Event
                self.report("Warning", "Unhealthy",
                            f"{kind[:-len('Probe')].capitalize()} probe failed: {result.output}")
            if kind == "readinessProbe":
                if result.ok and successes >= success_threshold and not self.ready:
                    self.ready = True
                    self.on_change()
                elif not result.ok and failures >= failure_threshold and self.ready:
                    self.ready = False
                    self.on_change()
            elif kind == "startupProbe":
                if result.ok:
                    self.started = True
                    self._startup_done.set()
                    self.on_change()
                    return
                if failures >= failure_threshold:
                    self.failed = f"Startup probe failed: {result.output}".strip()
                    self.on_change()
                    return
            elif not result.ok and failures >= failure_threshold:
                self.failed = f"Liveness probe failed: {result.output}".strip()
                log.info("container %s: %s", self.container.get("name"), self.failed)
                self.on_change()
                return
            await asyncio.sleep(period)
