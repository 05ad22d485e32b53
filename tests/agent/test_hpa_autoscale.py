"""Issue 14's HPA with real containers under podman: a Deployment with a CPU request, an HPA at 50%
made by the real ``kubectl autoscale``, a busy loop in the container → the HPA reads the load from
metrics.k8s.io and scales the Deployment up; once the load stops and the (short) scale-down
stabilisation window of spec.behavior has passed, it scales back down. The load is switched off by a
file in a hostPath directory, so pods created by the scale-up stop too."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from tests.agent.conftest import AgentProcess, PodmanFixture, module_agent, wait_for
from tests.conftest import ServerProcess, start_server_process

NODE = "hpa-node"
SYNC = 2  # --horizontal-pod-autoscaler-sync-period, seconds
WINDOW = 10  # the HPA's behavior.scaleDown.stabilizationWindowSeconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server_process(tmp_path_factory.mktemp("server"),
                                extra=("--horizontal-pod-autoscaler-sync-period", str(SYNC)))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from module_agent(server, podman, tmp_path_factory, NODE)


def _deployment(image: str, switch: Path) -> dict[str, Any]:
    # Busy until /load/stop exists, then idle; stops at once on TERM.
    script = "trap 'exit 0' TERM; while [ ! -f /load/stop ]; do :; done; while :; do sleep 1; done"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "busy"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "busy"}}, "template": {
            "metadata": {"labels": {"app": "busy"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "busy", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", script],
                "resources": {"requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "load", "mountPath": "/load"}]}],
                "volumes": [{"name": "load", "hostPath": {"path": str(switch), "type": "Directory"}}]}}},
    }


def _hpa(server: ServerProcess) -> dict[str, Any]:
    return json.loads(server.kubectl("get", "hpa.v2.autoscaling", "busy", "-o", "json").stdout)


def _replicas(server: ServerProcess) -> int:
    deployment = json.loads(server.kubectl("get", "deployment", "busy", "-o", "json").stdout)
    return int(deployment["spec"]["replicas"])


def _condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in hpa["status"].get("conditions") or [] if c["type"] == kind)


def test_hpa_scales_up_under_cpu_load_and_back_down(server: ServerProcess, agent: AgentProcess,
                                                    busybox_image: str, tmp_path: Path) -> None:
    switch = tmp_path / "load"
    switch.mkdir()
    server.kubectl("apply", "-f", "-", input=json.dumps(_deployment(busybox_image, switch)))
    try:
        server.kubectl("autoscale", "deployment", "busy", "--cpu-percent=50", "--min=1", "--max=2")
        server.kubectl("patch", "hpa", "busy", "--type=merge",
                       "-p", json.dumps({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": WINDOW}}}}))

        def report() -> str:
            return (server.kubectl("get", "hpa", "busy", "-o", "yaml", check=False).stdout
                    + server.kubectl("get", "pods", "-o", "wide", check=False).stdout
                    + server.kubectl("get", "events", check=False).stdout + agent.log()[-3000:])

        try:
            wait_for(lambda: _replicas(server) == 2, 120, "scaled up", interval=1)
        except AssertionError:
            raise AssertionError(report()) from None
        hpa = _hpa(server)
        assert hpa["status"]["desiredReplicas"] == 2
        utilization = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
        assert utilization > 50, hpa["status"]
        assert _condition(hpa, "ScalingActive")["reason"] == "ValidMetricFound"
        events = server.kubectl("get", "events", "-o", "json",
                                "--field-selector", "involvedObject.name=busy,reason=SuccessfulRescale").stdout
        messages = [e["message"] for e in json.loads(events)["items"] if e["involvedObject"]["kind"] ==
                    "HorizontalPodAutoscaler"]
        assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in messages, \
            messages

        # The official client reads the status as typed objects.
        api = k8s.AutoscalingV2Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        typed = api.read_namespaced_horizontal_pod_autoscaler("busy", "default")
        assert typed.status.current_metrics[0].resource.name == "cpu"
        # (The figures move every sync period, so each read is checked on its own.)
        current = typed.status.current_metrics[0].resource.current
        # A whole number of cores is written without the "m" (Kubernetes' canonical quantity: 1000m is "1").
        assert current.average_utilization > 50 and re.fullmatch(r"\d+m?", current.average_value), current
        assert {c.type for c in typed.status.conditions} == {"AbleToScale", "ScalingActive", "ScalingLimited"}
        described = server.kubectl("describe", "hpa", "busy").stdout
        line = next((x for x in described.splitlines() if "resource cpu on pods  (as a percentage of request):" in x),
                    "")
        assert re.search(r"\(\d+m?\) / 50%$", line.rstrip()), described

        # kubectl's TARGETS column: "cpu: <current>%/50%".
        row = server.kubectl("get", "hpa", "busy").stdout.splitlines()
        assert row[0].split()[:3] == ["NAME", "REFERENCE", "TARGETS"], row
        assert "cpu:" in row[1] and "%/50%" in row[1] and "Deployment/busy" in row[1], row

        (switch / "stop").touch()
        stopped = time.monotonic()

        def low() -> bool:
            current = (_hpa(server)["status"].get("currentMetrics") or [{}])[0]
            return current.get("resource", {}).get("current", {}).get("averageUtilization", 100) < 25

        try:
            wait_for(low, 60, "load gone", interval=1)
            # The window holds the scale-down while its recommendations of 2 are recent.
            held, replicas = _hpa(server), _replicas(server)
            if time.monotonic() - stopped < WINDOW - SYNC:
                assert replicas == 2, held
                assert _condition(held, "AbleToScale")["reason"] == "ScaleDownStabilized", held
            wait_for(lambda: _replicas(server) == 1, 90, "scaled down", interval=1)
        except AssertionError:
            raise AssertionError(report()) from None
        hpa = _hpa(server)
        assert hpa["status"]["desiredReplicas"] == 1
        assert hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] < 50
    finally:
        (switch / "stop").touch()
        server.kubectl("delete", "hpa", "busy", check=False)
        server.kubectl("delete", "deployment", "busy", "--wait=false", check=False)
