"""The API server's /metrics, scraped with the real kubectl (``get --raw /metrics``) and parsed with
prometheus-client: kube-apiserver's names, labels and buckets, moving with the requests that made them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from urllib3.exceptions import ProtocolError

from tests.apiserver.authcluster import auth_cluster
from tests.conftest import ServerProcess, start_server_process
from tests.metrics.scrape import Scrape, fetch, parse, wait_for

REQUEST_BUCKETS = ["0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1.0", "1.25", "1.5", "2.0",
                   "3.0", "4.0", "5.0", "6.0", "8.0", "10.0", "15.0", "20.0", "30.0", "45.0", "60.0", "+Inf"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server_process(tmp_path_factory.mktemp("server"), extra=(
        "--disable", "scheduler,controller-manager", "--etcd-count-metric-poll-period", "0.3"))
    yield proc
    proc.stop()


def scrape(server: ServerProcess) -> Scrape:
    return parse(server.kubectl("get", "--raw", "/metrics").stdout)


def requests(s: Scrape, **labels: str) -> float:
    return s.value("apiserver_request_total", **labels)


def test_requests_are_counted_with_kube_labels(server: ServerProcess) -> None:
    before = scrape(server)
    server.kubectl("create", "configmap", "counted", "--from-literal=a=b")
    server.kubectl("get", "configmaps")
    server.kubectl("get", "configmap", "counted")
    server.kubectl("get", "configmap", "missing", check=False)
    server.kubectl("create", "configmap", "dry", "--dry-run=server")
    server.kubectl("apply", "--server-side", "-f", "-", input=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {x: \"one\"}\n"))
    after = scrape(server)
    common = {"group": "", "version": "v1", "resource": "configmaps", "subresource": "", "component": "apiserver"}

    def moved(verb: str, scope: str, code: str, dry_run: str = "") -> float:
        labels = {**common, "verb": verb, "scope": scope, "code": code, "dry_run": dry_run}
        return requests(after, **labels) - requests(before, **labels)

    assert moved("POST", "resource", "201") == 1  # a create's scope is "resource" (CleanScope)
    assert moved("LIST", "namespace", "200") >= 1
    assert moved("GET", "resource", "200") >= 1
    assert moved("GET", "resource", "404") == 1
    assert moved("POST", "resource", "201", dry_run="All") == 1
    assert moved("APPLY", "resource", "201") == 1  # server-side apply is its own verb
    # Every series carries exactly kube-apiserver's label names.
    for labels in after.label_sets("apiserver_request_total"):
        assert set(labels) == {"verb", "dry_run", "group", "version", "resource", "subresource", "scope",
                               "component", "code"}
    assert after.types["apiserver_request"] == "counter"


def test_request_duration_histogram_has_kube_buckets(server: ServerProcess) -> None:
    server.kubectl("get", "namespaces")
    s = scrape(server)
    labels = {"verb": "LIST", "resource": "namespaces", "scope": "cluster"}
    assert s.value("apiserver_request_duration_seconds_count", **labels) >= 1
    buckets = {entry["le"] for entry in s.label_sets("apiserver_request_duration_seconds_bucket")
               if entry["resource"] == "namespaces" and entry["verb"] == "LIST"}
    assert buckets == set(REQUEST_BUCKETS)
    assert s.value("apiserver_request_duration_seconds_bucket", le="+Inf", **labels) == \
        s.value("apiserver_request_duration_seconds_count", **labels)
    assert s.value("process_cpu_seconds_total") > 0 and s.value("process_resident_memory_bytes") > 0


def test_storage_metrics_follow_the_store(server: ServerProcess) -> None:
    before = scrape(server)
    for i in range(3):
        server.kubectl("create", "secret", "generic", f"counted-{i}", "--from-literal=k=v")
    s = wait_for(lambda: scrape(server),
                 lambda s: s.value("apiserver_storage_objects", resource="secrets")
                 >= before.value("apiserver_storage_objects", resource="secrets") + 3)
    created = (s.value("etcd_request_duration_seconds_count", operation="create", type="secrets")
               - before.value("etcd_request_duration_seconds_count", operation="create", type="secrets"))
    assert created == 3
    assert s.has("etcd_request_duration_seconds_bucket", operation="create", type="secrets", le="0.005")
    assert not s.has("etcd_request_duration_seconds_created")  # kube's pages have no _created series
    # Answered, never stored: the review APIs have no object count.
    assert not s.has("apiserver_storage_objects", resource="tokenreviews.authentication.k8s.io")
    assert not s.has("apiserver_storage_objects", resource="pods.metrics.k8s.io")
    assert s.value("apiserver_storage_objects", resource="deployments.apps") == 0


def test_watches_are_long_running_requests(server: ServerProcess) -> None:
    """A watch from the official client shows in apiserver_longrunning_requests while it is open."""
    api = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
    watcher = watch.Watch()
    started = threading.Event()

    def run() -> None:
        try:
            for _ in watcher.stream(api.list_namespaced_pod, "default", timeout_seconds=30):
                started.set()
        except ProtocolError:
            # the client's stop() shuts the socket down under the blocked read, which then raises
            if not stopping.is_set():
                raise

    stopping = threading.Event()
    # No controller manager runs here, so ServiceAccount admission wants the default account made by hand.
    server.kubectl("create", "serviceaccount", "default")
    server.kubectl("run", "watched", "--image=registry.local/app:1", "--restart=Never")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    labels = {"verb": "WATCH", "resource": "pods", "scope": "namespace", "group": "", "version": "v1"}
    wait_for(lambda: scrape(server), lambda s: s.value("apiserver_longrunning_requests", **labels) == 1)
    assert started.wait(10)  # the pod's ADDED event came through the watch
    stopping.set()
    watcher.stop()
    thread.join(10)
    assert not thread.is_alive()
    s = wait_for(lambda: scrape(server), lambda s: s.value("apiserver_longrunning_requests", **labels) == 0)
    assert s.value("apiserver_request_total", code="200", **labels) >= 1  # counted once it ended


def test_metrics_needs_system_monitoring_under_rbac(tmp_path: Path) -> None:
    """/metrics is a non-resource URL: forbidden until RBAC grants it, as the bootstrap
    ``system:monitoring`` ClusterRole does."""
    with auth_cluster(tmp_path) as cluster:
        denied = cluster.kubectl("bob-token", "get", "--raw", "/metrics", check=False)
        assert denied.returncode != 0 and 'User "bob" cannot get path "/metrics"' in denied.stderr
        rules = cluster.kubectl("admin-token", "get", "clusterrole", "system:monitoring", "-o",
                                "jsonpath={.rules[0].nonResourceURLs}").stdout
        assert "/metrics" in rules
        cluster.kubectl("admin-token", "create", "clusterrolebinding", "bob-monitoring",
                        "--clusterrole=system:monitoring", "--user=bob")
        allowed = wait_for(lambda: parse(cluster.kubectl("bob-token", "get", "--raw", "/metrics", check=False).stdout),
                           lambda s: s.has("apiserver_request_total"))
        assert allowed.value("apiserver_request_total", resource="clusterrolebindings", verb="POST", code="201") == 1
        status, _, _ = fetch(cluster.server.url + "/metrics", token="alice-token")
        assert status == 403
