"""The agent's kubelet metrics with real containers under podman: ``/metrics/resource`` (what
metrics-server reads for ``kubectl top``) shows a busy container using more CPU than an idle one, the
real ``kubectl top`` shows it through the API server's metrics.k8s.io, and ``/metrics`` counts the
pods' starts and running containers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.agent.conftest import AgentProcess, PodmanFixture, get_pod, module_agent, wait_for
from tests.conftest import ServerProcess
from tests.metrics.scrape import Scrape, parse

NODE = "resource-node"


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from module_agent(server, podman, tmp_path_factory, NODE)


def _run(server: ServerProcess, name: str, image: str, command: str) -> None:
    overrides = json.dumps({"spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1}})
    server.kubectl("run", name, f"--image={image}", "--image-pull-policy=IfNotPresent", "--restart=Never",
                   f"--overrides={overrides}", "--command", "--", "/bin/sh", "-c", f"trap 'exit 0' TERM; {command}")


def _scrape(agent: AgentProcess, path: str) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.options['port']}{path}", timeout=30) as response:
        return parse(response.read().decode())


def test_busy_container_uses_more_cpu_than_idle(server: ServerProcess, agent: AgentProcess,
                                                busybox_image: str) -> None:
    _run(server, "busy", busybox_image, "while :; do :; done")
    _run(server, "idle", busybox_image, "while :; do sleep 1; done")
    try:
        for name in ("busy", "idle"):
            wait_for(lambda name=name: (get_pod(server, name) or {}).get("status", {}).get("phase") == "Running",
                     60, f"{name} Running")

        def cpu(scrape: Scrape, pod: str) -> float:
            return scrape.value("container_cpu_usage_seconds_total", pod=pod, namespace="default", container=pod)

        def listed() -> Scrape | None:
            scrape = _scrape(agent, "/metrics/resource")
            return scrape if all(scrape.has("container_cpu_usage_seconds_total", pod=pod)
                                 for pod in ("busy", "idle")) else None

        try:
            first = wait_for(listed, 30, "both listed")
        except AssertionError:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent.options['port']}/metrics/resource") as page:
                raise AssertionError(page.read().decode() + agent.log()) from None
        time.sleep(3)
        second = _scrape(agent, "/metrics/resource")
        busy, idle = cpu(second, "busy") - cpu(first, "busy"), cpu(second, "idle") - cpu(first, "idle")
        assert busy > 0.15 and busy > 5 * idle, (busy, idle, agent.log())
        for pod in ("busy", "idle"):
            assert second.value("container_memory_working_set_bytes", pod=pod) > 0
            assert second.value("pod_memory_working_set_bytes", pod=pod, namespace="default") > 0
            assert second.value("container_start_time_seconds", pod=pod) > time.time() - 600
        assert second.value("node_cpu_usage_seconds_total") > 0
        assert second.value("node_memory_working_set_bytes") > 0
        assert second.value("resource_scrape_error") == 0
        assert second.types["container_cpu_usage_seconds"] == "counter"

        # kubectl top through the API server's metrics.k8s.io (metrics-server's API, answered here).
        def millicores(text: str, row: str) -> int:
            line = next(line.split() for line in text.splitlines() if line.split()[:1] == [row])
            return int(line[1].removesuffix("m"))

        top = server.kubectl("top", "pods").stdout
        assert millicores(top, "busy") > 5 * max(millicores(top, "idle"), 1) and millicores(top, "busy") >= 50, top
        selected = server.kubectl("top", "pods", "-l", "run=idle").stdout
        assert [line.split()[0] for line in selected.splitlines()[1:]] == ["idle"], selected
        containers = server.kubectl("top", "pods", "--containers").stdout
        assert any(line.split()[:2] == ["busy", "busy"] for line in containers.splitlines()), containers
        nodes = server.kubectl("top", "nodes").stdout
        assert nodes.splitlines()[0].split()[:3] == ["NAME", "CPU(cores)", "CPU(%)"], nodes
        assert millicores(nodes, NODE) > 0, nodes
        missing = server.kubectl("top", "pod", "no-such-pod", check=False)
        assert missing.returncode != 0

        kubelet = _scrape(agent, "/metrics")
        assert kubelet.value("kubelet_pod_start_sli_duration_seconds_count") >= 2
        assert kubelet.value("kubelet_running_pods") >= 2
        assert kubelet.value("kubelet_running_containers", container_state="running") >= 2
    finally:
        server.kubectl("delete", "pod", "busy", "idle", "--wait=false", check=False)
