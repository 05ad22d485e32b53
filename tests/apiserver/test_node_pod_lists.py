"""Pod lists by ``spec.nodeName`` (what every kubelet lists), served from the SQLite store's node
index (issue 16): through the official client and kubectl they must equal a full list filtered by
node, including pods bound after creation, pages with continue tokens (read at the first page's
revision while pods are bound, created and deleted between pages), and a label named ``nodeName``."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes import config

from tests.conftest import ServerProcess

NAMESPACE = "nodelists"


def pod(name: str, node: str | None = None, decoy: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "registry.local/app:1"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": {"nodeName": decoy} if decoy else {}}, "spec": spec}


def by_node(core: k8s.CoreV1Api, node: str, limit: int, between: Any = None) -> tuple[list[str], str]:
    names: list[str] = []
    token = None
    revision = ""
    while True:
        page = core.list_namespaced_pod(NAMESPACE, field_selector=f"spec.nodeName={node}", limit=limit,
                                        _continue=token)
        revision = revision or page.metadata.resource_version
        assert page.metadata.resource_version == revision  # every page at the first page's revision
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            return names, revision
        if between is not None:
            between()


def test_node_filtered_pages_equal_the_filtered_full_list(server: ServerProcess) -> None:
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    nodes = ["node-a", "node-b"]
    for i in range(24):
        core.create_namespaced_pod(NAMESPACE, pod(f"p{i:02d}", nodes[i % 2] if i % 3 == 0 else None,
                                                  decoy="node-a" if i % 5 == 0 else None))
    for i in range(24):
        if i % 3 == 1:  # bound after creation, as the scheduler binds
            core.create_namespaced_binding(NAMESPACE, {"metadata": {"name": f"p{i:02d}"},
                                                       "target": {"kind": "Node", "name": nodes[i % 2]}},
                                           _preload_content=False)

    def expected() -> dict[str, list[str]]:
        pods = core.list_namespaced_pod(NAMESPACE).items
        return {n: sorted(p.metadata.name for p in pods if p.spec.node_name == n) for n in nodes}

    before = expected()
    assert len(before["node-a"]) == 8 and len(before["node-b"]) == 8
    for node in nodes:
        assert by_node(core, node, 0)[0] == before[node]
        assert by_node(core, node, 3)[0] == before[node]

    changes = iter(range(100))

    def churn() -> None:  # between pages: create one on node-a, delete one of node-a, bind one
        step = next(changes)
        core.create_namespaced_pod(NAMESPACE, pod(f"q{step:02d}", "node-a"))
        if step < len(before["node-a"]):
            core.delete_namespaced_pod(before["node-a"][step], NAMESPACE, grace_period_seconds=0)
    paged, _ = by_node(core, "node-a", 2, churn)
    assert paged == before["node-a"]  # as of the first page: none of the churn shows
    after = expected()
    assert after != before
    assert by_node(core, "node-a", 2)[0] == after["node-a"]
    listed = server.kubectl("get", "pods", "-n", NAMESPACE, "--field-selector", "spec.nodeName=node-a",
                            "--chunk-size", "2", "-o", "name").stdout.split()
    assert listed == [f"pod/{name}" for name in after["node-a"]]
