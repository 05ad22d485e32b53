"""The HPA's replica arithmetic (pure functions), against the cases of upstream's
replica_calculator_test.go and horizontal_test.go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.components.controllers.hpa import pod_samples
from pilothouse.components.controllers.hpa_behavior import History, normalize
from pilothouse.components.controllers.hpa_replicas import (
    MetricsError,
    PodSample,
    group_pods,
    raw_replicas,
    utilization_replicas,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def _pod(name: str, request: str = "1", *, phase: str = "Running", ready: str = "True",
         started: datetime = LONG_AGO, deleted: bool = False) -> dict[str, Any]:
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    meta: dict[str, Any] = {"name": name}
    if deleted:
        meta["deletionTimestamp"] = stamp
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": request}}}]},
            "status": {"phase": phase, "startTime": stamp,
                       "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": stamp}]}}


def _samples(**millis: int) -> dict[str, PodSample]:
    return {name: PodSample(value, NOW - timedelta(seconds=5), timedelta(seconds=1)) for name, value in millis.items()}


def test_scale_up_on_utilization() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c")]
    got = utilization_replicas(3, 30, pods, _samples(a=500, b=500, c=500), "cpu", NOW)
    # 50% used against a 30% target: ceil(50/30 * 3) = 5.
    assert (got.replicas, got.utilization, got.average) == (5, 50, 500)


def test_scale_down_and_tolerance() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c"), _pod("d")]
    got = utilization_replicas(4, 50, pods, _samples(a=100, b=100, c=100, d=100), "cpu", NOW)
    assert got.replicas == 1 and got.utilization == 10
    # 52% against 50%: within the 0.1 tolerance, nothing changes.
    within = utilization_replicas(4, 50, pods, _samples(a=520, b=520, c=520, d=520), "cpu", NOW)
    assert within.replicas == 4 and within.utilization == 52


def test_unready_pods_count_as_idle_on_scale_up() -> None:
    started = NOW - timedelta(seconds=30)
    pods = [_pod("a"), _pod("b"), _pod("new", ready="False", started=started)]
    # Ready pods at 90% of a 50% target; the starting pod's burst is not counted, it counts as 0.
    got = utilization_replicas(3, 50, pods, _samples(a=900, b=900, new=1000), "cpu", NOW)
    assert got.utilization == 90
    assert got.replicas == 4  # ceil(1800/3000*100/50 * 3) = ceil(1.2 * 3)


def test_missing_pods_are_full_on_scale_down_and_ignored_pods_left_out() -> None:
    pods = [_pod("a"), _pod("b"), _pod("gone", deleted=True), _pod("failed", phase="Failed"), _pod("nometric")]
    # Without metrics for "nometric", the scale-down assumes it uses its whole request: (100+100+1000)/3000 = 40%.
    got = utilization_replicas(3, 50, pods, _samples(a=100, b=100, gone=5000, failed=5000), "cpu", NOW)
    assert got.utilization == 10
    assert got.replicas == 3  # 40% vs 50%: ceil(0.8 * 3) = 3


def test_missing_request_and_no_metrics_are_errors() -> None:
    pod = _pod("a")
    del pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod a"):
        utilization_replicas(1, 50, [pod], _samples(a=100), "cpu", NOW)
    with pytest.raises(MetricsError, match="did not receive metrics"):
        utilization_replicas(1, 50, [_pod("a")], {}, "cpu", NOW)


def test_average_value_target() -> None:
    pods = [_pod("a"), _pod("b")]
    got = raw_replicas(2, 200, pods, _samples(a=300, b=500), "cpu", NOW)
    assert (got.replicas, got.utilization, got.average) == (4, None, 400)


def test_pod_samples_sum_containers_in_milli_units() -> None:
    items = [{"metadata": {"name": "p"}, "timestamp": "2026-01-01T12:00:00Z", "window": "1.500s",
              "containers": [{"name": "x", "usage": {"cpu": "250000000n", "memory": "1Ki"}},
                             {"name": "y", "usage": {"cpu": "1m", "memory": "1Ki"}}]}]
    assert pod_samples(items, "cpu")["p"].value == 251
    assert pod_samples(items, "memory", "y")["p"] == PodSample(1024000, NOW, timedelta(seconds=1.5))


def test_scale_down_waits_for_the_stabilization_window() -> None:
    spec: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 10,
                            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}
    history = History()
    assert normalize(spec, 1, 4, history, 0.0).replicas == 4
    history.record_rescale(0.0, 1, 4)
    held = normalize(spec, 4, 1, history, 30.0)
    assert (held.replicas, held.able_reason) == (4, "ScaleDownStabilized")
    assert normalize(spec, 4, 1, history, 61.0).replicas == 1


def test_rate_limits_and_bounds() -> None:
    # Without spec.behavior: at most max(2*current, 4); within maxReplicas.
    up = normalize({"minReplicas": 1, "maxReplicas": 100}, 3, 50, History(), 0.0)
    assert (up.replicas, up.limited_reason, up.limited) == (6, "ScaleUpLimit", True)
    top = normalize({"minReplicas": 1, "maxReplicas": 5}, 3, 50, History(), 0.0)
    assert (top.replicas, top.limited_reason) == (5, "TooManyReplicas")
    # A policy of one pod a minute: the second scale-up within the minute is held.
    spec = {"minReplicas": 1, "maxReplicas": 10,
            "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}
    history = History()
    first = normalize(spec, 2, 5, history, 0.0)
    assert first.replicas == 3
    history.record_rescale(0.0, 2, 3)
    assert normalize(spec, 3, 5, history, 10.0).replicas == 3
    assert normalize(spec, 3, 5, history, 61.0).replicas == 4
    # Default scale-down policy 100% per 15 s, never below minReplicas.
    immediate = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    down = normalize({"minReplicas": 2, "maxReplicas": 10, "behavior": immediate}, 6, 1, History(), 0.0)
    assert (down.replicas, down.limited_reason) == (2, "TooFewReplicas")


def test_a_new_hpa_without_behavior_waits_the_default_window_before_scaling_down() -> None:
    history = History()
    history.record_initial(0.0, 5)
    spec = {"minReplicas": 1, "maxReplicas": 10}
    held = normalize(spec, 5, 2, history, 100.0)
    assert (held.replicas, held.able_reason, held.limited) == (5, "ScaleDownStabilized", False)
    assert normalize(spec, 5, 2, history, 301.0).replicas == 2


def test_cpu_sample_taken_before_one_window_after_readiness_is_unready() -> None:
    started = NOW - timedelta(seconds=60)
    pod = _pod("a", started=started)
    pod["status"]["conditions"][0]["lastTransitionTime"] = (NOW - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    early = {"a": PodSample(900, NOW - timedelta(seconds=1), timedelta(seconds=15))}
    assert group_pods([pod], early, "cpu", NOW).unready == {"a"}
    # Memory has no start-up burst: the same pod counts.
    assert group_pods([pod], early, "memory", NOW).ready == 1
    later = {"a": PodSample(900, NOW, timedelta(seconds=1))}
    assert group_pods([pod], later, "cpu", NOW).ready == 1
    # Long started, unready and never been ready since: unready; ready once and now not: still counted.
    old = _pod("b", ready="False")
    assert group_pods([old], {"b": later["a"]}, "cpu", NOW).unready == {"b"}
    flapped = _pod("c", ready="False")
    flapped["status"]["conditions"][0]["lastTransitionTime"] = (NOW - timedelta(seconds=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert group_pods([flapped], {"c": later["a"]}, "cpu", NOW).ready == 1


def test_server_hands_the_hpa_flags_given_to_its_controller_manager() -> None:
    from click.testing import CliRunner

    from pilothouse.cli.main import HPA_FLAGS, hpa_args, main

    given = {**HPA_FLAGS, "horizontal_pod_autoscaler_sync_period": 2.0}
    assert hpa_args(given) == ["--horizontal-pod-autoscaler-sync-period", "2.0"]
    assert hpa_args(dict(HPA_FLAGS)) == []
    for command in ("server", "controller-manager"):
        shown = CliRunner().invoke(main, [command, "--help"]).output
        assert "--horizontal-pod-autoscaler-sync-period" in shown and "--horizontal-pod-autoscaler-tolerance" in shown
