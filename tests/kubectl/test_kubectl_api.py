"""The real kubectl against a real pilothouse server: the API surface of issue 2.

Every test runs /usr/bin/kubectl as a user would and checks what it prints; the server is a separate
process started by the ``server`` fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")

MANIFEST = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
    spec:
      replicas: 2
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: nginx
            image: nginx:1.25
            ports:
            - containerPort: 80
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: web
    spec:
      selector: {app: web}
      ports:
      - port: 80
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: web-config
    data:
      key: value
    """)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_version_and_api_resources(server: ServerProcess) -> None:
    out = server.kubectl("version").stdout
    assert "Server Version: v1.32" in out
    resources = server.kubectl("api-resources").stdout
    for line in ("deployments", "deploy", "apps/v1", "pods", "po", "poddisruptionbudgets", "leases"):
        assert line in resources
    cluster_scoped = set(server.kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split())
    assert {"namespaces", "nodes", "priorityclasses.scheduling.k8s.io", "storageclasses.storage.k8s.io",
            "clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
            "customresourcedefinitions.apiextensions.k8s.io"} <= cluster_scoped
    assert "pods" not in cluster_scoped


def test_namespace_lifecycle_in_get(server: ServerProcess) -> None:
    out = server.kubectl("get", "namespaces").stdout
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert name in out
    assert "Active" in out


def test_apply_multi_document_then_changed_then_unchanged(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "namespace", "apply-test")
    path = write(tmp_path, "app.yaml", MANIFEST)
    first = server.kubectl("apply", "-n", "apply-test", "-f", path).stdout
    assert "deployment.apps/web created" in first
    assert "service/web created" in first
    assert "configmap/web-config created" in first

    unchanged = server.kubectl("apply", "-n", "apply-test", "-f", path).stdout
    assert "deployment.apps/web unchanged" in unchanged

    changed_path = write(tmp_path, "app2.yaml", MANIFEST.replace("nginx:1.25", "nginx:1.26")
                         .replace("replicas: 2", "replicas: 3"))
    changed = server.kubectl("apply", "-n", "apply-test", "-f", changed_path).stdout
    assert "deployment.apps/web configured" in changed
    assert "service/web unchanged" in changed
    deployment = json.loads(server.kubectl("get", "deploy", "web", "-n", "apply-test", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert deployment["metadata"]["generation"] == 2
    # Defaults a real server fills in, which kubectl's describe relies on.
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["protocol"] == "TCP"
    assert container["imagePullPolicy"] == "IfNotPresent"
    service = json.loads(server.kubectl("get", "svc", "web", "-n", "apply-test", "-o", "json").stdout)
    assert service["spec"]["clusterIP"].startswith("10.")
    assert service["spec"]["ports"][0]["targetPort"] == 80


def test_apply_refuses_unknown_field_and_stores_nothing(server: ServerProcess, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: strict-check}
        data: {a: b}
        datum: {c: d}
        """))
    result = server.kubectl("apply", "-f", bad, check=False)
    assert result.returncode != 0
    assert 'unknown field "datum"' in result.stderr
    missing = server.kubectl("get", "configmap", "strict-check", check=False)
    assert "NotFound" in missing.stderr


def test_server_side_apply_and_conflicts(server: ServerProcess, tmp_path: Path) -> None:
    path = write(tmp_path, "ssa.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n")
    assert "serverside-applied" in server.kubectl("apply", "--server-side", "-f", path).stdout
    server.kubectl("patch", "configmap", "ssa", "--type", "merge", "-p", '{"data":{"a":"2"}}')
    conflict = server.kubectl("apply", "--server-side", "-f", path, check=False)
    assert conflict.returncode != 0
    assert 'conflict with "kubectl-patch"' in conflict.stderr
    server.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    data = json.loads(server.kubectl("get", "cm", "ssa", "-o", "jsonpath={.data}").stdout)
    assert data == {"a": "1"}
    managed = json.loads(server.kubectl("get", "cm", "ssa", "-o", "json", "--show-managed-fields").stdout)
    managers = {entry["manager"]: entry["operation"] for entry in managed["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"


def test_get_output_formats(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "namespace", "formats")
    server.kubectl("apply", "-n", "formats", "-f", write(tmp_path, "app.yaml", MANIFEST))
    table = server.kubectl("get", "deploy", "-n", "formats").stdout
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "0/2" in table
    wide = server.kubectl("get", "deploy", "-n", "formats", "-o", "wide").stdout
    assert "CONTAINERS" in wide and "nginx:1.25" in wide and "app=web" in wide
    all_namespaces = server.kubectl("get", "configmaps", "-A").stdout
    assert "formats" in all_namespaces.split("\n")[1] or "formats" in all_namespaces
    assert all_namespaces.split("\n")[0].split()[0] == "NAMESPACE"
    as_yaml = yaml.safe_load(server.kubectl("get", "cm", "web-config", "-n", "formats", "-o", "yaml").stdout)
    assert as_yaml["data"] == {"key": "value"}
    jsonpath = server.kubectl("get", "svc", "-n", "formats", "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert jsonpath == "web"
    labels = server.kubectl("get", "deploy", "-n", "formats", "--show-labels").stdout
    assert "app=web" in labels
    selected = server.kubectl("get", "cm", "-n", "formats", "-l", "app=web").stdout
    assert "No resources found" in selected.strip() or selected.strip() == ""
    by_field = server.kubectl("get", "cm", "-n", "formats", "--field-selector", "metadata.name=web-config").stdout
    assert "web-config" in by_field
    excluded = server.kubectl("get", "cm", "-n", "formats", "--field-selector",
                              "metadata.name!=web-config", "-o", "name").stdout
    assert "web-config" not in excluded


def test_watch_sees_change_from_another_command(server: ServerProcess) -> None:
    env = {"KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir / "home")}
    import os

    watcher = subprocess.Popen(["/usr/bin/kubectl", "get", "configmaps", "-w", "-n", "default",
                                "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **env})
    try:
        time.sleep(1.5)
        server.kubectl("create", "configmap", "watched-one", "--from-literal=a=b")
        server.kubectl("label", "configmap", "watched-one", "seen=yes")
        deadline = time.monotonic() + 10
        lines: list[str] = []
        assert watcher.stdout is not None
        while time.monotonic() < deadline and len([x for x in lines if "watched-one" in x]) < 2:
            line = watcher.stdout.readline()
            if line:
                lines.append(line)
        events = [line.split()[0] for line in lines if "watched-one" in line]
        assert events[:2] == ["ADDED", "MODIFIED"]
    finally:
        watcher.terminate()
        watcher.wait(5)


def test_label_annotate_patch_all_types(server: ServerProcess) -> None:
    server.kubectl("create", "deployment", "patchme", "--image=busybox", "--replicas=1")
    assert "labeled" in server.kubectl("label", "deployment", "patchme", "tier=back").stdout
    assert "annotated" in server.kubectl("annotate", "deployment", "patchme", "owner=ops").stdout
    server.kubectl("patch", "deployment", "patchme", "-p", '{"spec":{"replicas":2}}')
    server.kubectl("patch", "deployment", "patchme", "--type", "merge", "-p", '{"spec":{"replicas":3}}')
    server.kubectl("patch", "deployment", "patchme", "--type", "json",
                   "-p", '[{"op":"replace","path":"/spec/replicas","value":4}]')
    server.kubectl("patch", "deployment", "patchme", "--type", "strategic", "-p",
                   '{"spec":{"template":{"spec":{"containers":[{"name":"busybox","image":"busybox:1.36"}]}}}}')
    obj = json.loads(server.kubectl("get", "deploy", "patchme", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["labels"]["tier"] == "back"
    assert obj["metadata"]["annotations"]["owner"] == "ops"
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["busybox:1.36"]
    bad = server.kubectl("patch", "deployment", "patchme", "--type", "json",
                         "-p", '[{"op":"test","path":"/spec/replicas","value":9}]', check=False)
    assert bad.returncode != 0


def test_edit_with_scripted_editor(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "configmap", "editme", "--from-literal=key=before")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/key: before/key: after/' \"$1\"\n")
    editor.chmod(0o755)
    out = server.kubectl("edit", "configmap", "editme", env={"EDITOR": str(editor)}).stdout
    assert "edited" in out
    assert server.kubectl("get", "cm", "editme", "-o", "jsonpath={.data.key}").stdout == "after"


def test_explain_and_describe(server: ServerProcess) -> None:
    explained = server.kubectl("explain", "deployment.spec").stdout
    assert "replicas" in explained and "DeploymentSpec" in explained
    explained_pod = server.kubectl("explain", "pods.spec.containers.image").stdout
    assert "Container image name" in explained_pod
    server.kubectl("create", "deployment", "described", "--image=nginx:1.25")
    described = server.kubectl("describe", "deployment", "described").stdout
    assert re.search(r"StrategyType:\s+RollingUpdate", described)
    assert "nginx:1.25" in described


def test_scale(server: ServerProcess) -> None:
    server.kubectl("create", "deployment", "scaled", "--image=nginx")
    assert "scaled" in server.kubectl("scale", "deployment", "scaled", "--replicas=5").stdout
    assert server.kubectl("get", "deploy", "scaled", "-o", "jsonpath={.spec.replicas}").stdout == "5"


def test_delete_by_name_label_and_file(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "namespace", "deletes")
    path = write(tmp_path, "app.yaml", MANIFEST)
    server.kubectl("apply", "-n", "deletes", "-f", path)
    assert 'configmap "web-config" deleted' in server.kubectl("delete", "-n", "deletes", "cm", "web-config").stdout
    for index in range(3):
        server.kubectl("create", "configmap", f"labelled-{index}", "-n", "deletes")
        server.kubectl("label", "configmap", f"labelled-{index}", "-n", "deletes", "group=a")
    out = server.kubectl("delete", "configmaps", "-n", "deletes", "-l", "group=a").stdout
    assert out.count("deleted") == 3
    out = server.kubectl("delete", "-n", "deletes", "-f", path, "--ignore-not-found").stdout
    assert 'deployment.apps "web" deleted' in out
    assert "No resources found" in server.kubectl("get", "deploy,cm", "-n", "deletes").stderr


def test_errors_print_as_against_kubernetes(server: ServerProcess, tmp_path: Path) -> None:
    missing = server.kubectl("get", "deployment", "nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    server.kubectl("create", "configmap", "twice")
    again = server.kubectl("create", "configmap", "twice", check=False)
    # kubectl's generator commands print the error this way against Kubernetes too.
    assert again.stderr.strip() == 'error: failed to create configmap: configmaps "twice" already exists'
    twice = write(tmp_path, "twice.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice}\n")
    again_file = server.kubectl("create", "-f", twice, check=False)
    assert again_file.stderr.strip() == (f'Error from server (AlreadyExists): error when creating "{twice}": '
                                         'configmaps "twice" already exists')
    bad_name = write(tmp_path, "badname.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n")
    invalid = server.kubectl("create", "-f", bad_name, check=False)
    assert invalid.stderr.startswith('The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
                                     "a lowercase RFC 1123 subdomain must consist of")
    no_ns = server.kubectl("create", "configmap", "x", "-n", "does-not-exist", check=False)
    assert no_ns.stderr.strip() == 'error: failed to create configmap: namespaces "does-not-exist" not found'
    no_ns_file = server.kubectl("create", "-f", twice, "-n", "does-not-exist", check=False)
    assert no_ns_file.stderr.strip() == (f'Error from server (NotFound): error when creating "{twice}": '
                                         'namespaces "does-not-exist" not found')
