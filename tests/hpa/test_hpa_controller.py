"""The HPA controller against a real server without nodes (so no metrics): the official client creates
an autoscaling/v2 HPA with two metrics, and the controller reports upstream's error path: a Warning
event per failed metric, FailedComputeMetricsReplicas, ScalingActive=False with the first metric's
reason, the replica count left alone; ``kubectl get hpa`` shows both targets as unknown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from tests.agent.conftest import wait_for
from tests.conftest import ServerProcess, start_server_process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server_process(tmp_path_factory.mktemp("server"),
                                extra=("--horizontal-pod-autoscaler-sync-period", "1"))
    yield proc
    proc.stop()


def test_every_metric_failing_is_reported_as_upstream_does(server: ServerProcess) -> None:
    server.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2")
    api = k8s.AutoscalingV2Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
    api.create_namespaced_horizontal_pod_autoscaler("default", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [
                     {"type": "Resource", "resource": {"name": "cpu",
                                                       "target": {"type": "Utilization", "averageUtilization": 60}}},
                     {"type": "Pods", "pods": {"metric": {"name": "requests_per_second"},
                                               "target": {"type": "AverageValue", "averageValue": "10"}}}]}})

    def active() -> Any:
        hpa = api.read_namespaced_horizontal_pod_autoscaler("web", "default")
        found = [c for c in (hpa.status.conditions or []) if c.type == "ScalingActive"]
        return (hpa, found[0]) if found else None

    hpa, condition = wait_for(active, 30, "ScalingActive")
    assert (condition.status, condition.reason) == ("False", "FailedGetResourceMetric")
    assert condition.message == ("the HPA was unable to compute the replica count: unable to get metrics for "
                                 "resource cpu: no metrics returned from resource metrics API")
    assert hpa.status.current_replicas == 2 and not hpa.status.current_metrics

    def reasons() -> Any:
        listed = json.loads(server.kubectl("get", "events", "--field-selector", "involvedObject.name=web",
                                           "-o", "json").stdout)["items"]
        got = {e["reason"]: e["message"] for e in listed if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"}
        return got if {"FailedGetResourceMetric", "FailedGetPodsMetric", "FailedComputeMetricsReplicas"} <= set(got) \
            else None

    events = wait_for(reasons, 30, "the events")
    assert events["FailedComputeMetricsReplicas"] == (
        "invalid metrics (2 invalid out of 2), first error is: failed to get cpu utilization: unable to get "
        "metrics for resource cpu: no metrics returned from resource metrics API")
    row = server.kubectl("get", "hpa", "web").stdout.splitlines()[1]
    assert "cpu: <unknown>/60%, <unknown>/10" in row, row
    deployment = json.loads(server.kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 2


POOLS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "pools.hpa.example.com"},
    "spec": {"group": "hpa.example.com", "scope": "Namespaced",
             "names": {"plural": "pools", "singular": "pool", "kind": "Pool"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}, "scale": {
                               "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                               "labelSelectorPath": ".status.selector"}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                               "status": {"type": "object", "properties": {
                                   "replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}}}]},
}


def test_a_custom_resource_with_a_scale_subresource_is_scaled(server: ServerProcess) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(POOLS_CRD))
    server.kubectl("wait", "--for=condition=Established", "crd/pools.hpa.example.com", "--timeout=30s")
    wait_for(lambda: server.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "hpa.example.com/v1", "kind": "Pool", "metadata": {"name": "p"},
        "spec": {"replicas": 1}})).returncode == 0, 30, "Pool created")
    server.kubectl("autoscale", "pool.hpa.example.com", "p", "--min=3", "--max=5", "--cpu-percent=50")

    def replicas() -> Any:
        pool = json.loads(server.kubectl("get", "pool", "p", "-o", "json").stdout)
        return pool["spec"]["replicas"] == 3

    wait_for(replicas, 30, "the Pool scaled to minReplicas")
    events = server.kubectl("get", "events", "--field-selector",
                            "involvedObject.name=p,reason=SuccessfulRescale").stdout
    assert "New size: 3; reason: Current number of replicas below Spec.MinReplicas" in events, events
