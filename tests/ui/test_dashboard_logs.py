"""A pod's logs streaming in the dashboard (issue 14): the page follows
``/api/v1/namespaces/NS/pods/P/log?follow=true`` through the secure API server to a real agent on podman
(simulated nodes have no container output to stream). Skips, with podman's reason, where podman cannot
run a container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.agent.conftest import TEST_IMAGE, busybox_image, podman, start_ready_agent, wait_for
from tests.ui.conftest import ADMIN_TOKEN, DashboardCluster, sign_in

__all__ = ["busybox_image", "podman"]  # the agent tests' session fixtures, used here too

NODE = "ui-podman"


def test_pod_logs_stream(cluster: DashboardCluster, page: Any, podman: Any, busybox_image: str,
                         tmp_path: Path) -> None:
    agent = start_ready_agent(cluster.server, podman, tmp_path / "agent", NODE,
                              kubeconfig=str(cluster.server.kubeconfig))
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "namespace": "default"},
               "spec": {"nodeName": NODE, "containers": [{
                   "name": "talk", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent",
                   "command": ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.3; done"]}]}}
        cluster.server.kubectl("--token", ADMIN_TOKEN, "create", "-f", "-", input=json.dumps(pod))

        def running() -> bool:
            out = cluster.kubectl("get", "pod", "talker", "-o", "jsonpath={.status.phase}", check=False).stdout
            return out == "Running"
        wait_for(running, 90, "the talker pod Running")
        sign_in(page, cluster.ui, ADMIN_TOKEN)
        page.wait_for_selector("#map .pod[data-key='default/talker'].running")
        page.click("#map .pod[data-key='default/talker']")
        page.wait_for_function("document.querySelector('#detail-body').textContent.includes('kind: Pod')")
        page.keyboard.press("l")
        page.wait_for_function("document.querySelector('#detail-body').textContent.includes('tick-')",
                               timeout=15_000)
        # Still streaming: lines written after the stream opened arrive too.
        first = page.inner_text("#detail-body").strip().splitlines()[-1]
        later = int(first.removeprefix("tick-")) + 5
        page.wait_for_function(f"document.querySelector('#detail-body').textContent.includes('tick-{later}\\n')",
                               timeout=15_000)
        page.screenshot(path=str(tmp_path / "logs-streaming.png"))
        page.keyboard.press("Escape")
        cluster.kubectl("delete", "pod", "talker", "--grace-period=1", "--wait=false")
    finally:
        agent.stop()
