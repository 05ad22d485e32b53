"""The scheduler's, the controller manager's and the agent's /metrics: each runs as its own process
(``pilothouse scheduler|controller-manager|agent``) against a real server, on a free port; the tests
make work with the real kubectl and watch kube's series move (a pod scheduled, a queue drained, a pod
start observed). The agent hosts simulated nodes, so pods "run" without containers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, start_server_process, terminate
from tests.metrics.scrape import Scrape, fetch, parse, wait_for


@dataclass
class Component:
    name: str
    url: str  # https://127.0.0.1:PORT
    process: subprocess.Popen[bytes]

    def scrape(self) -> Scrape:
        status, content_type, body = fetch(self.url + "/metrics")
        assert status == 200, body
        assert content_type.startswith("text/plain; version=0.0.4")
        return parse(body)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "pilothouse", *args], stdout=handle, stderr=subprocess.STDOUT)


def _wait_serving(component: Component, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component.process.poll() is not None:
            raise RuntimeError(f"{component.name} exited with {component.process.returncode}")
        try:
            if fetch(component.url + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{component.name} did not serve /healthz")


@dataclass
class Cluster:
    server: ServerProcess
    scheduler: Component
    controllers: Component
    agent: Component


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("components")
    server = start_server_process(directory / "data", extra=("--disable", "scheduler,controller-manager"))
    components: list[Component] = []
    try:
        for name, args in (
                ("scheduler", ["scheduler", "--leader-elect=false"]),
                ("controller-manager", ["controller-manager", "--leader-elect=false",
                                        "--controllers", "replicaset,deployment,serviceaccount"]),
                ("agent", ["agent", "--simulate", "2", "--node-name", "sim", "--address", "127.0.0.1",
                           "--root-dir", str(directory / "agent")])):
            port = free_port()
            serving = ["--port", str(port)] if name == "agent" else ["--secure-port", str(port)]
            process = _start([*args, "--server", server.url, *serving], directory / f"{name}.log")
            components.append(Component(name, f"https://127.0.0.1:{port}", process))
        for component in components:
            _wait_serving(component)
        yield Cluster(server, *components)
    finally:
        for component in components:
            terminate(component.process)
        server.stop()


def test_health_endpoints_answer_without_credentials(cluster: Cluster) -> None:
    for component in (cluster.scheduler, cluster.controllers, cluster.agent):
        for path in ("/healthz", "/livez", "/readyz"):
            assert fetch(component.url + path)[:3:2] == (200, "ok"), (component.name, path)
        scrape = component.scrape()
        assert scrape.value("process_cpu_seconds_total") > 0, component.name
        assert scrape.value("process_open_fds") > 0, component.name


def test_a_deployment_moves_every_components_metrics(cluster: Cluster) -> None:
    before = {c.name: c.scrape() for c in (cluster.scheduler, cluster.controllers, cluster.agent)}
    cluster.server.kubectl("create", "deployment", "web", "--image=registry.local/web:1", "--replicas=3")
    cluster.server.kubectl("rollout", "status", "deployment/web", "--timeout=60s")

    # The scheduler: three attempts that scheduled, timed, for the default profile.
    profile = {"result": "scheduled", "profile": "default-scheduler"}
    scheduler = wait_for(cluster.scheduler.scrape, lambda s: s.value("scheduler_schedule_attempts_total", **profile)
                         >= before["scheduler"].value("scheduler_schedule_attempts_total", **profile) + 3)
    assert scheduler.value("scheduler_scheduling_attempt_duration_seconds_count", **profile) >= 3
    assert scheduler.has("scheduler_scheduling_attempt_duration_seconds_bucket", le="0.001", **profile)
    assert scheduler.has("scheduler_scheduling_attempt_duration_seconds_bucket", le="16.384", **profile)
    assert {s["queue"] for s in scheduler.label_sets("scheduler_pending_pods")} == \
        {"active", "backoff", "unschedulable", "gated"}

    # The controller manager: each controller's queue took keys and handed them out; it drains.
    controllers = wait_for(cluster.controllers.scrape,
                           lambda s: s.value("workqueue_depth", name="replicaset") == 0
                           and s.value("workqueue_adds_total", name="deployment")
                           > before["controller-manager"].value("workqueue_adds_total", name="deployment"))
    for name in ("deployment", "replicaset"):
        assert controllers.value("workqueue_work_duration_seconds_count", name=name) >= 1, name
        assert controllers.value("workqueue_queue_duration_seconds_count", name=name) >= 1, name
        assert controllers.has("workqueue_unfinished_work_seconds", name=name)
        assert controllers.has("workqueue_longest_running_processor_seconds", name=name)
        assert controllers.has("workqueue_retries_total", name=name)

    # The agent: three pod starts observed, and three pods with three containers running.
    agent = wait_for(cluster.agent.scrape, lambda s: s.value("kubelet_running_pods") >= 3)
    assert agent.value("kubelet_pod_start_sli_duration_seconds_count") \
        >= before["agent"].value("kubelet_pod_start_sli_duration_seconds_count") + 3
    assert agent.has("kubelet_pod_start_sli_duration_seconds_bucket", le="3600.0")
    assert agent.value("kubelet_running_containers", container_state="running") >= 3


def test_an_unschedulable_pod_is_counted_and_pending(cluster: Cluster) -> None:
    before = cluster.scheduler.scrape()
    cluster.server.kubectl("run", "nowhere", "--image=registry.local/web:1", "--restart=Never",
                           "--overrides", '{"spec": {"nodeSelector": {"disk": "none"}}}')
    labels = {"result": "unschedulable", "profile": "default-scheduler"}
    after = wait_for(cluster.scheduler.scrape,
                     lambda s: s.value("scheduler_schedule_attempts_total", **labels)
                     > before.value("scheduler_schedule_attempts_total", **labels)
                     and s.value("scheduler_pending_pods", queue="unschedulable") >= 1)
    assert after.value("scheduler_scheduling_attempt_duration_seconds_count", **labels) >= 1
    cluster.server.kubectl("delete", "pod", "nowhere", "--wait=false")
    wait_for(cluster.scheduler.scrape, lambda s: s.value("scheduler_pending_pods", queue="unschedulable") == 0)


def test_component_metrics_are_authorized_by_the_api_server(tmp_path: Path) -> None:
    """Under RBAC the component asks the API server: a TokenReview for the bearer token, then a
    SubjectAccessReview for ``get /metrics``; health checks need nobody."""
    from tests.apiserver.authcluster import auth_cluster

    with auth_cluster(tmp_path) as cluster:
        kubeconfig = tmp_path / "scheduler.conf"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: '{cluster.server.url}', "
            f"certificate-authority: '{cluster.ca}'}}}}]\n"
            "users: [{name: u, user: {token: admin-token}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
        port = free_port()
        process = _start(["scheduler", "--kubeconfig", str(kubeconfig), "--leader-elect=false",
                          "--secure-port", str(port)], tmp_path / "scheduler.log")
        scheduler = Component("scheduler", f"https://127.0.0.1:{port}", process)
        try:
            _wait_serving(scheduler)
            assert fetch(scheduler.url + "/readyz")[0] == 200
            status, _, body = fetch(scheduler.url + "/metrics")
            assert status == 403 and 'User \\"system:anonymous\\" cannot get path \\"/metrics\\"' in body
            status, _, body = fetch(scheduler.url + "/metrics", token="alice-token")
            assert status == 403 and 'User \\"alice\\" cannot get path \\"/metrics\\"' in body
            assert fetch(scheduler.url + "/metrics", token="no-such-token")[0] == 401
            cluster.kubectl("admin-token", "create", "clusterrolebinding", "bob-monitoring",
                            "--clusterrole=system:monitoring", "--user=bob")
            status, _, body = fetch(scheduler.url + "/metrics", token="bob-token")
            assert status == 200 and parse(body).has("scheduler_pending_pods", queue="active")
        finally:
            terminate(process)
