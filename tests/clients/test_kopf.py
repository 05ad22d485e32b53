"""An operator written with kopf, running as its own process against a pilothouse server.

kopf (from PyPI) is the operator framework most Python users reach for. It lists and watches custom
resources, keeps its progress in annotations and status, adds a finalizer for delete handlers, posts
Events, and coordinates operator instances through its peering custom resources. The operator here
makes a ConfigMap for each Widget, mirrors the Widget's spec into its status on update, and records
a delete through its finalizer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, terminate

pytest.importorskip("kopf", reason="kopf is not installed (pip install -e '.[test]')")

CRDS = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.ops.example.com}
    spec:
      group: ops.example.com
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  size: {type: integer}
              status: {type: object, x-kubernetes-preserve-unknown-fields: true}
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: clusterkopfpeerings.kopf.dev}
    spec:
      group: kopf.dev
      scope: Cluster
      names: {plural: clusterkopfpeerings, singular: clusterkopfpeering, kind: ClusterKopfPeering}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              status: {type: object, x-kubernetes-preserve-unknown-fields: true}
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: kopfpeerings.kopf.dev}
    spec:
      group: kopf.dev
      scope: Namespaced
      names: {plural: kopfpeerings, singular: kopfpeering, kind: KopfPeering}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              status: {type: object, x-kubernetes-preserve-unknown-fields: true}
    """)

OPERATOR = textwrap.dedent("""\
    import kopf
    import kubernetes

    kubernetes.config.load_kube_config()
    core = kubernetes.client.CoreV1Api()


    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.peering.name = "widgets"
        settings.peering.mandatory = True
        settings.watching.server_timeout = 30


    @kopf.on.create("ops.example.com", "v1", "widgets")
    def created(name, namespace, spec, body, **_):
        child = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{name}-child"}, "data": {"size": str(spec.get("size"))}}
        kopf.adopt(child, owner=body)
        core.create_namespaced_config_map(namespace, child)
        return {"child": f"{name}-child"}


    @kopf.on.update("ops.example.com", "v1", "widgets")
    def updated(spec, patch, **_):
        patch.status["observedSize"] = spec.get("size")


    @kopf.on.delete("ops.example.com", "v1", "widgets")
    def deleted(name, namespace, **_):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"{name}-deleted"}})
    """)


def eventually(check: Callable[[], Any], timeout: float = 45, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, KeyError, subprocess.CalledProcessError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def get(server: ServerProcess, *args: str) -> dict[str, Any] | None:
    result = server.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


@pytest.fixture
def operator(server: ServerProcess, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    server.kubectl("apply", "-f", "-", input=CRDS)
    server.kubectl("wait", "--for=condition=Established", "crd/widgets.ops.example.com",
                   "crd/clusterkopfpeerings.kopf.dev", "--timeout=30s")
    server.kubectl("apply", "-f", "-", input="apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\n"
                                            "metadata: {name: widgets}\n")
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115 - lives as long as the process
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    process = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--all-namespaces", "--verbose", str(script)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    yield process
    terminate(process)
    log.close()
    if process.returncode not in (0, -15):
        print((tmp_path / "operator.log").read_text()[-5000:])


def test_kopf_operator_handles_its_custom_resource(server: ServerProcess,
                                                   operator: subprocess.Popen[bytes]) -> None:
    # Peering: the running operator announces itself in the ClusterKopfPeering's status.
    peers = eventually(lambda: (get(server, "clusterkopfpeering", "widgets") or {}).get("status"),
                       what="the operator in the peering object")
    assert len(peers) == 1 and next(iter(peers.values()))["priority"] == 0

    server.kubectl("apply", "-f", "-", input="apiVersion: ops.example.com/v1\nkind: Widget\n"
                                            "metadata: {name: w1, namespace: default}\nspec: {size: 3}\n")
    # On create: a child ConfigMap owned by the Widget, and the handler's result in status.
    child = eventually(lambda: get(server, "configmap", "w1-child"), what="the child ConfigMap")
    assert child["data"] == {"size": "3"}
    assert [o["kind"] for o in child["metadata"]["ownerReferences"]] == ["Widget"]
    widget = eventually(lambda: (w := get(server, "widget", "w1")) and "created" in w.get("status", {}) and w,
                        what="the create handler's status")
    assert widget["status"]["created"] == {"child": "w1-child"}
    assert any(f.startswith("kopf.zalando.org/") for f in widget["metadata"]["finalizers"])

    # On update: the handler patches the status.
    server.kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec": {"size": 5}}')
    eventually(lambda: (get(server, "widget", "w1") or {}).get("status", {}).get("observedSize") == 5,
               what="the update handler's status")

    # On delete: the finalizer holds the object until the delete handler ran, then it goes.
    server.kubectl("delete", "widget", "w1", "--wait=false")
    eventually(lambda: get(server, "configmap", "w1-deleted"), what="the delete handler's marker")
    eventually(lambda: get(server, "widget", "w1") is None, what="the widget to go")
    # The garbage collector removes the child the Widget owned.
    eventually(lambda: get(server, "configmap", "w1-child") is None, what="the child to be collected")
    assert operator.poll() is None, "the operator exited"
