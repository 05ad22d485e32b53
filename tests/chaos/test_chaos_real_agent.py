"""Chaos with a real node (issue 15), CI-sized: beside two simulated agents, one ``pilothouse agent``
drives a podman service of its own; the real agent and podman are killed first, then any process at
random, while the workload scales and rolls the ``r0`` Deployment that runs on the real node (busybox
``sleep``). Converged includes podman agreeing with the API: each pod bound to the real node has
exactly its one sandbox and container running, the ones its status names, never restarted (a
restarted agent adopts what runs), and no container of any other pod is left (no orphans).
``CHAOS_SEED`` replays; ``bench/chaos.py --real-agent`` is the long version.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import ChaosCluster
from tests.chaos.harness import run_chaos, seed_from_env
from tests.chaos.realnode import RealNode, engine_divergences, podman_missing

SECONDS = float(os.environ.get("CHAOS_SECONDS", "45"))


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    missing = podman_missing()
    if missing:
        pytest.skip(missing)
    try:
        real = RealNode.start()
    except RuntimeError as error:
        pytest.skip(f"podman cannot run a container here: {error}")
    cluster = ChaosCluster(tmp_path / "cluster", agents=2, nodes=3, real=real)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        real.close()


async def test_chaos_with_a_real_podman_agent_converges(real_cluster: ChaosCluster) -> None:
    podman, agent = real_cluster.real_components
    report = await run_chaos(real_cluster, seed_from_env(), seconds=SECONDS, first=[agent, podman, agent])
    print(report.summary())
    killed = {kill.split()[1] for kill in report.kills}
    assert {"agent-real", "podman"} <= killed, report.summary()
    assert report.ok, report.summary() + "\n" + real_cluster.logs()

    # The engine check can fail: a container of no pod in podman is an orphan.
    real = real_cluster.real
    assert real is not None
    real.podman.cli("run", "-d", "--label", "io.kubernetes.pod.uid=no-such-pod", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=1024:1024", real.image, "sleep", "100")
    with urllib.request.urlopen(real_cluster.url + "/api/v1/pods", timeout=30) as response:
        pods = json.loads(response.read())["items"]
    found = await engine_divergences(real, pods)
    assert any("orphaned containers" in f and "no-such-pod" in f for f in found), found
