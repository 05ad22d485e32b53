"""Chaos, CI-sized (issue 15): a real cluster (API server, scheduler, controller manager, two agents of
five simulated nodes each) runs the harness's workload for ``CHAOS_SECONDS`` (45) while one process
after another is SIGKILLed and restarted; then it must converge with nothing lost, nothing
duplicated and no 5xx outside a server outage. The seed is printed (``CHAOS_SEED`` replays it);
``bench/chaos.py --minutes N`` is the long version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import ChaosCluster
from tests.chaos.harness import run_chaos, seed_from_env
from tests.store.etcd_server import etcd_binary

SECONDS = float(os.environ.get("CHAOS_SECONDS", "45"))


@pytest.fixture
def sqlite_cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(tmp_path / "cluster", agents=2, nodes=5)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def test_chaos_on_sqlite_converges(sqlite_cluster: ChaosCluster) -> None:
    report = await run_chaos(sqlite_cluster, seed_from_env(), seconds=SECONDS)
    print(report.summary())
    assert report.kills, "the chaos killed nothing"
    assert report.ok, report.summary() + "\n" + sqlite_cluster.logs()


@pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")
async def test_chaos_on_three_etcd_members_converges(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path / "cluster", agents=1, nodes=5, etcd_members=3)
    try:
        cluster.start()
        # One etcd member down at a time keeps the quorum, so only the API server's outages may 5xx.
        report = await run_chaos(cluster, seed_from_env(), seconds=SECONDS)
        print(report.summary())
        assert report.kills, "the chaos killed nothing"
        assert report.ok, report.summary() + "\n" + cluster.logs()
    finally:
        cluster.stop()
