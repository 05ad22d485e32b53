"""The dashboard's watches survive the API server going away: when it is back, the page resumes (or,
if its resourceVersion is gone, lists again) and shows what changed while it was down, without a reload."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import ADMIN_TOKEN, DashboardCluster, sign_in
from tests.ui.test_dashboard import COUNT_PODS


def test_page_follows_through_a_server_restart(cluster: DashboardCluster, page: Any) -> None:
    cluster.kubectl("create", "deployment", "survivor", "--image=busybox", "--replicas=2")
    sign_in(page, cluster.ui, ADMIN_TOKEN)
    page.wait_for_function(f"({COUNT_PODS})('default/survivor-').length === 2", timeout=30_000)
    cluster.restart_server()
    cluster.kubectl("scale", "deployment", "survivor", "--replicas=4")
    page.wait_for_function(f"({COUNT_PODS})('default/survivor-').length === 4", timeout=30_000)
    page.wait_for_selector("#workloads tr[data-key='Deployment/default/survivor'] td:nth-child(2)")
    assert page.url.endswith("/ui/")  # the same page, never reloaded
