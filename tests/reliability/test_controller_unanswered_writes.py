"""A pod delete that gets no answer (the API server killed under it: ``ConnectionFailed``, not an
``APIError``) must still lower the ReplicaSet controller's expectations, as upstream lowers them on
any error (``DeletionObserved`` in ``manageReplicas``). Found by bench/chaos.py --etcd 3
(CHAOS_SEED=1959049020): after the API server was killed during a scale-down, a Deployment at 0
replicas kept a pod of its old ReplicaSet, whose controller waited for a deletion that never came
(until the expectations' 5-minute TTL), so the rollout never finished in the convergence window.

The controller is driven directly (no informers): what is under test is its bookkeeping when the
write's fate is unknown, which a real cluster produces only at the whim of a SIGKILL.
"""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.components.controllers.podcontrol import UIDTrackingExpectations
from pilothouse.components.controllers.replicaset import ReplicaSetController


class _UnansweredDeletes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def delete_pod(self, namespace: str, name: str, owner: Any, uid: str = "") -> None:
        self.calls.append(name)
        raise errors.ConnectionFailed("server disconnected")


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "creationTimestamp": "2026-12-03T19:00:00Z"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


async def test_unanswered_pod_delete_lowers_replicaset_expectations() -> None:
    controller = object.__new__(ReplicaSetController)
    controller.expectations = UIDTrackingExpectations()
    controller.pod_control = _UnansweredDeletes()  # type: ignore[assignment]
    controller._related_pods = lambda rs: []  # type: ignore[method-assign]
    rs = {"metadata": {"name": "rs", "namespace": "ns", "uid": "rs-uid"}, "spec": {"replicas": 0}}
    with pytest.raises(errors.ConnectionFailed):
        await controller._manage_replicas("ns/rs", [_pod("a")], rs)
    assert controller.pod_control.calls == ["a"]  # type: ignore[attr-defined]
    # The next sync may act again (the pod is still there, so it deletes it again).
    assert controller.expectations.satisfied("ns/rs")
