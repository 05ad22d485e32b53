"""A real node in the chaos: a ``pilothouse agent`` driving a podman service of its own, both victims.

The node ``real0`` registers with the taint ``chaos/real=true:NoSchedule`` and the label
``chaos/real=true``, so only the workload's ``r0`` Deployment (busybox ``sleep``, tolerating the taint
and selecting the label) runs there: the simulated nodes keep the rest of the workload fast. podman's
service runs in a session of its own; SIGKILLing it leaves the containers running under their conmon
processes, as a dockerd or containerd restart leaves them under their shims.

After convergence, :func:`engine_divergences` compares podman with the API: every pod bound to
``real0`` has exactly one running sandbox and one running container, the one its status names, never
restarted (``sleep`` does not exit, so a restart means the agent recreated what it should have
adopted); and podman holds no container of any other pod (no orphans, no duplicates).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.agent.conftest import BUSYBOX, PodmanFixture, import_busybox, remove_podman
from tests.chaos.cluster import Component

__all__ = ["REAL_LABEL", "REAL_NODE", "RealNode", "engine_divergences", "podman_missing"]

REAL_NODE = "real0"
REAL_LABEL = "chaos/real"

_LABEL_UID = "io.kubernetes.pod.uid"
_LABEL_ROLE = "io.pilothouse.role"
_LABEL_CONTAINER = "io.kubernetes.container.name"


def podman_missing() -> str | None:
    """Why a real node cannot run here (None: it can), naming what to install."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install -y podman runc busybox-static)"
    if not Path(BUSYBOX).exists():
        return "busybox-static not installed (/bin/busybox)"
    return None


class _PodmanComponent(Component):
    """podman's API service as a victim (the containers live on under conmon)."""

    def __init__(self, podman: PodmanFixture) -> None:
        super().__init__("podman", [], podman.directory / "service.log")
        self.podman = podman

    @property
    def running(self) -> bool:
        return self.podman.process is not None and self.podman.process.poll() is None

    def start(self) -> None:
        if not self.running:  # RealNode.start started it before the cluster's first start
            self.podman.start()

    def kill(self) -> None:
        process = self.podman.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        self.podman.stop()


@dataclass
class RealNode:
    """podman (started, the busybox image imported) and what the agent needs to use it."""

    podman: PodmanFixture
    image: str

    @classmethod
    def start(cls) -> RealNode:
        # A short path of its own: podman refuses a --runroot longer than 50 characters.
        directory = Path(tempfile.mkdtemp(prefix="chaos-podman-"))
        podman = PodmanFixture(directory, directory / "podman.sock")
        podman.start()
        try:
            return cls(podman, import_busybox(podman))
        except BaseException:
            remove_podman(podman)
            raise

    def close(self) -> None:
        remove_podman(self.podman)
        shutil.rmtree(self.podman.directory, ignore_errors=True)

    @property
    def component(self) -> Component:
        return _PodmanComponent(self.podman)

    def agent_args(self) -> list[str]:
        # No embedded proxy or NetworkPolicy controller: they program this host's nftables, which
        # the chaos is not about (and other tests on the machine share).
        return ["--node-name", REAL_NODE, "--runtime-endpoint", self.podman.endpoint,
                "--node-labels", f"{REAL_LABEL}=true", "--register-with-taints", f"{REAL_LABEL}=true:NoSchedule",
                "--disable", "proxy,network-policy"]

    def pod_spec(self) -> dict[str, Any]:
        """The ``r0`` Deployment's pod spec: busybox sleeping on the real node only."""
        return {"nodeSelector": {REAL_LABEL: "true"},
                "tolerations": [{"key": REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                # ``sleep`` as PID 1 ignores SIGTERM: a short grace keeps scale-downs from taking 30 s.
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "c", "image": self.image, "command": ["sleep", "100000"]}]}

    def containers(self) -> list[dict[str, Any]]:
        """Every container in podman that an agent made (a pod uid label), running or not."""
        return self.podman.containers(_LABEL_UID)


async def engine_divergences(real: RealNode, pods: list[dict[str, Any]]) -> list[str]:
    """How podman differs from the pods the API binds to the real node (empty: it agrees)."""
    try:
        containers = await asyncio.to_thread(real.containers)
    except AssertionError as error:  # the fixture's answer to a list podman fails (a 500)
        # A divergence, not the end of the check: podman killed mid-removal can fail every list of the
        # agent's containers until the agent removes the container it broke (runtime/docker.py ``_list``);
        # the convergence loop checks again, and reports it if it never clears.
        return [f"podman: the list of the agent's containers fails: {str(error).splitlines()[0][:300]}"]
    found: list[str] = []
    bound = {p["metadata"]["uid"]: p for p in pods if p["spec"].get("nodeName") == REAL_NODE}
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for container in containers:
        by_uid.setdefault(container["Labels"].get(_LABEL_UID, ""), []).append(container)
    for uid, mine in sorted(by_uid.items()):
        if uid not in bound:
            found.append(f"podman: orphaned containers of pod {mine[0]['Labels'].get('io.kubernetes.pod.name')} "
                         f"({uid}): {_describe(mine)}")
    for uid, pod in sorted(bound.items()):
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            found.append(f"pod {name} on {REAL_NODE} still terminating")
            continue
        mine = by_uid.get(uid, [])
        sandboxes = [c for c in mine if c["Labels"].get(_LABEL_ROLE) == "sandbox"]
        apps = [c for c in mine if c["Labels"].get(_LABEL_ROLE) == "container"]
        if len(sandboxes) != 1 or len(apps) != 1 or any(c["State"] != "running" for c in mine):
            found.append(f"podman: pod {name} has {_describe(mine)} (want one running sandbox and container)")
            continue
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        want = statuses[0].get("containerID", "").partition("://")[2]
        if want != apps[0]["Id"]:
            found.append(f"pod {name}: status names container {want[:12] or None}, podman runs {apps[0]['Id'][:12]}")
        if statuses[0].get("restartCount", 0):
            found.append(f"pod {name}: restartCount {statuses[0]['restartCount']} (a container recreated, "
                         f"not adopted)")
    return found


def _describe(containers: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['Labels'].get(_LABEL_ROLE)}/{c['Labels'].get(_LABEL_CONTAINER, '')}:{c['Id'][:12]}:"
                     f"{c['State']}" for c in containers) or "no containers"
