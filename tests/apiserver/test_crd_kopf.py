"""An operator written with kopf (from PyPI), running as its own process against pilothouse.

On create it makes a child ConfigMap (adopted: the garbage collector removes it with its owner), on
update it patches the resource's status, on delete its finalizer runs; it takes part in kopf's
peering through a KopfPeering custom resource.
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

import kopf  # noqa: F401  (a test dependency: the operator below runs as `python -m kopf`)
import pytest

from tests.conftest import ServerProcess, terminate

OPERATOR = textwrap.dedent('''
    import kopf
    import kubernetes


    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.peering.mandatory = True
        kubernetes.config.load_kube_config()


    @kopf.on.create("example.com", "v1", "gizmos")
    def created(spec, name, namespace, **_):
        child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-child"},
                 "data": {"size": spec.get("size", "")}}
        kopf.adopt(child)
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)


    @kopf.on.update("example.com", "v1", "gizmos")
    def updated(spec, patch, **_):
        patch.status["observedSize"] = spec.get("size")


    @kopf.on.delete("example.com", "v1", "gizmos")
    def deleted(name, namespace, **_):
        kubernetes.client.CoreV1Api().create_namespaced_config_map(
            namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-farewell"}})
''')

GIZMOS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"size": {"type": "string"}}},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}
# kopf's peering resource, as its documentation ships it.
PEERINGS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {"group": "kopf.dev", "scope": "Namespaced",
             "names": {"plural": "kopfpeerings", "singular": "kopfpeering", "kind": "KopfPeering"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {
                     "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def operator(server: ServerProcess, tmp_path: Path) -> Iterator[Path]:
    for crd in (GIZMOS, PEERINGS):
        server.kubectl("apply", "-f", "-", input=json.dumps(crd))
        server.kubectl("wait", "--for", "condition=established", "--timeout=20s", f"crd/{crd['metadata']['name']}")
    server.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default", "namespace": "default"}}))
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    log_path = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--namespace", "default", "--verbose",
             str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield log_path
    finally:
        terminate(process)


def test_kopf_operator_handles_its_custom_resource(server: ServerProcess, operator: Path) -> None:
    def peering_seen() -> bool:
        status = json.loads(server.kubectl("get", "kopfpeering", "default", "-o", "json").stdout).get("status")
        return bool(status)

    wait_for(peering_seen, what="the operator to announce itself in the KopfPeering")
    server.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"size": "small"}}))

    def child() -> dict[str, Any] | None:
        got = server.kubectl("get", "configmap", "g1-child", "-o", "json", check=False)
        return json.loads(got.stdout) if got.returncode == 0 else None

    made = wait_for(child, what="the child ConfigMap")
    assert made["data"] == {"size": "small"}
    assert made["metadata"]["ownerReferences"][0]["kind"] == "Gizmo"
    gizmo = json.loads(server.kubectl("get", "gizmo", "g1", "-o", "json").stdout)
    assert "kopf.zalando.org/KopfFinalizerMarker" in gizmo["metadata"]["finalizers"]

    server.kubectl("patch", "gizmo", "g1", "--type=merge", "-p", '{"spec":{"size":"large"}}')

    def observed() -> bool:
        obj = json.loads(server.kubectl("get", "gizmo", "g1", "-o", "json").stdout)
        return bool((obj.get("status") or {}).get("observedSize") == "large")

    wait_for(observed, what="the operator to patch the status")

    server.kubectl("delete", "gizmo", "g1", "--timeout=30s")
    assert server.kubectl("get", "configmap", "g1-farewell", check=False).returncode == 0
    wait_for(lambda: server.kubectl("get", "configmap", "g1-child", check=False).returncode != 0,
             what="the garbage collector to remove the adopted child")
    assert "Traceback" not in operator.read_text()
