"""The real kubectl on ReplicationControllers: get (columns), scale, describe, delete with each cascade.

The ``server`` fixture runs the embedded controller manager (so the replication manager and the
garbage collector) and the scheduler; no node joins, so pods stay Pending and READY stays 0.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")


def create_rc(server: ServerProcess, tmp_path: Path, name: str, namespace: str, replicas: int) -> None:
    """An RC without a selector (defaulted from the template's labels), then wait for its pods."""
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: ReplicationController
        metadata:
          name: {name}
        spec:
          replicas: {replicas}
          template:
            metadata:
              labels: {{app: {name}, tier: fe}}
            spec:
              containers:
              - name: nginx
                image: nginx:1.25
        """))
    if server.kubectl("get", "namespace", namespace, check=False).returncode:
        server.kubectl("create", "namespace", namespace)
    assert server.kubectl("apply", "-n", namespace, "-f", str(manifest)).stdout == \
        f"replicationcontroller/{name} created\n"
    wait_replicas(server, name, namespace, replicas)


def wait_replicas(server: ServerProcess, name: str, namespace: str, replicas: int) -> None:
    server.kubectl("wait", "-n", namespace, f"rc/{name}", f"--for=jsonpath={{.status.replicas}}={replicas}",
                   "--timeout=30s")


def pods_of(server: ServerProcess, app: str, namespace: str) -> list[dict[str, Any]]:
    out = server.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def test_get_columns_wide_and_all(server: ServerProcess, tmp_path: Path) -> None:
    create_rc(server, tmp_path, "web", "rc-get", 2)
    lines = server.kubectl("get", "rc", "-n", "rc-get").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert lines[1].split()[:4] == ["web", "2", "2", "0"]
    wide = server.kubectl("get", "replicationcontrollers", "web", "-n", "rc-get", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[5:] == ["nginx", "nginx:1.25", "app=web,tier=fe"]
    everything = server.kubectl("get", "all", "-n", "rc-get").stdout
    assert re.search(r"^replicationcontroller/web\s+2\s+2\s+0\s", everything, re.MULTILINE)
    assert everything.count("pod/web-") == 2


def test_scale(server: ServerProcess, tmp_path: Path) -> None:
    create_rc(server, tmp_path, "scaled", "rc-scale", 1)
    assert server.kubectl("scale", "rc", "scaled", "-n", "rc-scale", "--replicas=3").stdout == \
        "replicationcontroller/scaled scaled\n"
    wait_replicas(server, "scaled", "rc-scale", 3)
    assert len(pods_of(server, "scaled", "rc-scale")) == 3
    # --current-replicas is checked against the Scale subresource, as kubectl does against Kubernetes.
    refused = server.kubectl("scale", "rc", "scaled", "-n", "rc-scale", "--current-replicas=5", "--replicas=1",
                             check=False)
    assert refused.returncode == 1 and refused.stderr.strip() == "error: Expected replicas to be 5, was 3"
    server.kubectl("scale", "rc/scaled", "-n", "rc-scale", "--current-replicas=3", "--replicas=1")
    wait_replicas(server, "scaled", "rc-scale", 1)


def test_describe(server: ServerProcess, tmp_path: Path) -> None:
    create_rc(server, tmp_path, "described", "rc-describe", 2)
    text = server.kubectl("describe", "rc", "described", "-n", "rc-describe").stdout
    assert re.search(r"^Name:\s+described$", text, re.MULTILINE)
    assert re.search(r"^Selector:\s+app=described,tier=fe$", text, re.MULTILINE)
    assert re.search(r"^Replicas:\s+2 current / 2 desired$", text, re.MULTILINE)
    assert re.search(r"^Pods Status:\s+0 Running / 2 Waiting / 0 Succeeded / 0 Failed$", text, re.MULTILINE)
    assert re.search(r"^\s+Image:\s+nginx:1.25$", text, re.MULTILINE)
    created = re.findall(r"Normal\s+SuccessfulCreate\s+\S+\s+replication-controller\s+Created pod: described-",
                         text)
    assert len(created) == 2


def test_delete_cascades(server: ServerProcess, tmp_path: Path) -> None:
    ns = "rc-delete"
    for name in ("bg", "fg", "kept"):
        create_rc(server, tmp_path, name, ns, 2)
    assert server.kubectl("delete", "rc", "bg", "-n", ns).stdout == 'replicationcontroller "bg" deleted\n'
    server.kubectl("wait", "-n", ns, "pods", "-l", "app=bg", "--for=delete", "--timeout=30s")
    # Foreground: kubectl waits for the RC, which the garbage collector removes after its pods.
    server.kubectl("delete", "rc", "fg", "-n", ns, "--cascade=foreground")
    assert pods_of(server, "fg", ns) == []
    server.kubectl("delete", "rc", "kept", "-n", ns, "--cascade=orphan")
    kept = pods_of(server, "kept", ns)
    assert len(kept) == 2 and all(not p["metadata"].get("ownerReferences") for p in kept)
    assert "No resources found" in server.kubectl("get", "rc", "-n", ns).stderr
