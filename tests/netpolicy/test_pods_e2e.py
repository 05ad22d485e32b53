"""End to end with real pods: a node agent on podman (pods on the agent's bridge, pilothouse0),
busybox ``httpd`` pods, and a policy controller for the node on a table of its own in the host's
namespace (in a thread of the test, with its own event loop, as the agent embeds it). A default-deny
blocks, an allow rule opens exactly the port and the pods it names, and the node's own HTTP
readiness probes keep passing through the deny."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.client.rest import APIClient
from pilothouse.components.netpolicy.controller import PolicyController
from tests.agent.conftest import PodmanFixture, start_ready_agent, wait_for
from tests.conftest import ServerProcess
from tests.netpolicy import netlab
from tests.netpolicy.builders import policy

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

NODE = "netpol-node"
SERVE = ("mkdir -p /www; echo $POD_NAME > /www/index.html; httpd -p 8081 -h /www; exec httpd -f -p 8080 -h /www")


def pod(name: str, image: str, labels: dict[str, str], probe: bool = False) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", SERVE],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    if probe:  # from the node (the agent), over the pod network
        container["readinessProbe"] = {"httpGet": {"port": 8081}, "periodSeconds": 1, "failureThreshold": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}


class ControllerThread:
    """The controller on an event loop of its own, so the test's blocking kubectl calls never stall it."""

    def __init__(self, server: ServerProcess, table: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.table = table
        self.controller: PolicyController | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start(server.url))

    def call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    async def _start(self, url: str) -> None:
        self.controller = PolicyController(APIClient(url), NODE, table=self.table)
        await self.controller.start()

    async def _stop(self) -> None:
        assert self.controller is not None
        await self.controller.stop()
        await self.controller.cleanup()
        await self.controller.client.close()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def node(server: ServerProcess, podman: PodmanFixture, tmp_path: Path) -> Iterator[ControllerThread]:
    agent = start_ready_agent(server, podman, tmp_path / "agent", NODE)
    controller = ControllerThread(server, f"pnt-{secrets.token_hex(3)}")
    try:
        yield controller
    finally:
        controller.stop()
        server.kubectl("delete", "pods", "--all", "--wait=false", check=False)
        agent.stop()


def fetch(server: ServerProcess, source: str, ip: str, port: int) -> str:
    # busybox-static's wget crashes with -T: bound it with timeout(1) instead; a dropped SYN times out
    result = server.kubectl("exec", source, "--", "timeout", "3", "wget", "-qO-", f"http://{ip}:{port}/",
                            check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else "failed"


def test_default_deny_blocks_and_an_allow_rule_opens_exactly_what_it_names(
        server: ServerProcess, node: ControllerThread, busybox_image: str) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        pod("web", busybox_image, {"app": "web"}, probe=True), pod("client", busybox_image, {"app": "client"}),
        pod("intruder", busybox_image, {"app": "other"})]}))

    def ready(name: str) -> bool:
        conditions = server.kubectl("get", "pod", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')]"
                                    ".status}", check=False).stdout
        return conditions == "True"

    for name in ("web", "client", "intruder"):
        wait_for(lambda name=name: ready(name), 90, f"{name} Ready", interval=0.5)  # type: ignore[misc]
    web = server.kubectl("get", "pod", "web", "-o", "jsonpath={.status.podIP}").stdout
    assert fetch(server, "intruder", web, 8080) == "web"  # nothing isolated yet

    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        policy("default", "deny"),
        policy("default", "web", {"matchLabels": {"app": "web"}}, ingress=[
            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
             "ports": [{"port": 8080, "protocol": "TCP"}]}])]}))
    wait_for(lambda: fetch(server, "intruder", web, 8080) == "failed", 30, "the default deny in place")
    assert fetch(server, "client", web, 8080) == "web"  # the pod and port the rule names
    assert fetch(server, "client", web, 8081) == "failed"  # not another port
    client = server.kubectl("get", "pod", "client", "-o", "jsonpath={.status.podIP}").stdout
    assert fetch(server, "web", client, 8080) == "failed"  # nor the other way round
    # the node's probes of web's port 8081 still pass (every second, one failure unreadies it): still Ready
    time.sleep(3)
    assert ready("web")

    server.kubectl("delete", "networkpolicy", "deny", "web")
    wait_for(lambda: fetch(server, "intruder", web, 8081) == "web", 30, "policies gone, traffic back")
