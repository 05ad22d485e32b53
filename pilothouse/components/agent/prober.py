"""The probes of one pod's running containers and what they say (the kubelet's prober manager).

One ``ContainerProbes`` (see :mod:`.probes`) per running container attempt that has probes, by
engine id: begun when the container is first seen running, stopped when it is stopped or the pod
goes. The status reads readiness and startup from here.
"""

from __future__ import annotations

from collections.abc import Callable

from pilothouse.components.agent.probes import ContainerProbes
from pilothouse.components.agent.runtime.interface import ContainerRuntime, ContainerState
from pilothouse.machinery.meta import Object

__all__ = ["PROBE_KINDS", "PodProbes", "Readiness"]

PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")

#: (ready by container id, started by container id, whether probes are due to begin at once)
Readiness = tuple[dict[str, bool], dict[str, bool], bool]


class PodProbes:
    def __init__(self, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        self._by_id: dict[str, ContainerProbes] = {}

    def ensure(self, container: Object, state: ContainerState, pod_ip: str, on_change: Callable[[], None],
               report: Callable[[str, str, str], None]) -> ContainerProbes | None:
        """The probes of a running container, begun the first time it is seen (None: it has none)."""
        probes = self._by_id.get(state.id)
        if probes is None and any(k in container for k in PROBE_KINDS):
            probes = ContainerProbes(self.runtime, state.id, container, pod_ip, on_change, report)
            self._by_id[state.id] = probes
            probes.start()
        return probes

    def stop(self, container_id: str) -> None:
        probes = self._by_id.pop(container_id, None)
        if probes is not None:
            probes.stop()

    def stop_all(self) -> None:
        for probes in self._by_id.values():
            probes.stop()
        self._by_id.clear()

    def readiness(self, pod: Object, attempts: dict[str, list[ContainerState]]) -> Readiness:
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        begin_now = False
        specs = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        for name, items in attempts.items():
            if items and items[0].state == "running":
                probes = self._by_id.get(items[0].id)
                if probes is not None:
                    ready[items[0].id], started[items[0].id] = probes.ready, probes.started
                    continue
                # Running but its probes not begun yet (it started during this sync): not ready
                # until a readiness probe says so, not started until a startup probe does.
                spec = specs.get(name) or {}
                ready[items[0].id] = "readinessProbe" not in spec and "startupProbe" not in spec
                started[items[0].id] = "startupProbe" not in spec
                begin_now = begin_now or any(k in spec for k in PROBE_KINDS)
        return ready, started, begin_now
