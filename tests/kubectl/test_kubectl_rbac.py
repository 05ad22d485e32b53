"""The real kubectl's RBAC commands against a real server: create, get (-o wide), describe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_create_and_get_roles(server: ServerProcess) -> None:
    out = server.kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods,deployments.apps",
                         "--resource-name=web").stdout
    assert out == "role.rbac.authorization.k8s.io/pod-reader created\n"
    out = server.kubectl("create", "clusterrole", "log-reader", "--verb=get", "--non-resource-url=/logs/*").stdout
    assert out == "clusterrole.rbac.authorization.k8s.io/log-reader created\n"
    out = server.kubectl("create", "clusterrole", "monitoring", "--aggregation-rule=example.com/mon=true").stdout
    assert out == "clusterrole.rbac.authorization.k8s.io/monitoring created\n"

    role = json.loads(server.kubectl("get", "role", "pod-reader", "-o", "json").stdout)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"],
         "verbs": ["get", "list", "watch"]}]
    lines = server.kubectl("get", "roles", "-o", "wide").stdout.splitlines()
    assert columns(lines[0]) == ["NAME", "CREATED AT"]
    row = columns(next(line for line in lines if line.startswith("pod-reader ")))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[1])
    names = [columns(line)[0] for line in server.kubectl("get", "clusterroles").stdout.splitlines()[1:]]
    assert {"cluster-admin", "log-reader", "monitoring", "system:node"} <= set(names)
    assert names == sorted(names)

    # A refused role: kubectl prints Kubernetes' validation message.
    result = server.kubectl("create", "role", "bad", "--verb=get", "--resource=pods",
                            "--dry-run=server", "-o", "name")
    assert result.stdout == "role.rbac.authorization.k8s.io/bad\n"
    manifest = json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                           "metadata": {"name": "bad"}, "rules": [{"resources": ["pods"], "apiGroups": [""]}]})
    result = server.kubectl("create", "-f", "-", input=manifest, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ('The Role "bad" is invalid: rules[0].verbs: Required value: '
                                     "verbs must contain at least one value")


def test_create_and_get_bindings(server: ServerProcess) -> None:
    out = server.kubectl("create", "rolebinding", "readers", "--clusterrole=view", "--user=alice", "--group=devs",
                         "--serviceaccount=default:web").stdout
    assert out == "rolebinding.rbac.authorization.k8s.io/readers created\n"
    out = server.kubectl("create", "clusterrolebinding", "ops", "--clusterrole=edit", "--user=bob", "--user=carol",
                         "--serviceaccount=kube-system:ops").stdout
    assert out == "clusterrolebinding.rbac.authorization.k8s.io/ops created\n"

    lines = server.kubectl("get", "rolebindings", "-o", "wide").stdout.splitlines()
    assert columns(lines[0]) == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    row = columns(next(line for line in lines if line.startswith("readers ")))
    assert row[0:2] == ["readers", "ClusterRole/view"] and row[3:] == ["alice", "devs", "default/web"]
    lines = server.kubectl("get", "clusterrolebinding", "ops", "-o", "wide").stdout.splitlines()
    assert columns(lines[0]) == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    row = columns(lines[1])
    assert row[0:2] == ["ops", "ClusterRole/edit"] and row[3] == "bob, carol" and row[4] == "kube-system/ops"
    lines = server.kubectl("get", "clusterrolebinding", "ops").stdout.splitlines()
    assert columns(lines[0]) == ["NAME", "ROLE", "AGE"]

    # roleRef cannot change; kubectl shows Kubernetes' message.
    result = server.kubectl("patch", "rolebinding", "readers", "--type=merge", "-p",
                            '{"roleRef":{"name":"edit"}}', check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'The RoleBinding "readers" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:'
        '"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef')


def test_describe(server: ServerProcess) -> None:
    server.kubectl("create", "role", "cm-editor", "--verb=get,update", "--resource=configmaps",
                   "--resource-name=settings")
    out = server.kubectl("describe", "role", "cm-editor").stdout
    assert out.startswith("Name:         cm-editor\nLabels:       <none>\nAnnotations:  <none>\nPolicyRule:\n")
    assert re.search(r"\n  configmaps\s+\[\]\s+\[settings\]\s+\[get update\]\n", out)

    out = server.kubectl("describe", "clusterrole", "system:discovery").stdout
    assert "Labels:       kubernetes.io/bootstrapping=rbac-defaults\n" in out
    assert "Annotations:  rbac.authorization.kubernetes.io/autoupdate: true\n" in out
    assert re.search(r"\n\s+\[/version\]\s+\[\]\s+\[get\]\n", out)

    server.kubectl("create", "rolebinding", "cm-editors", "--role=cm-editor", "--user=dana",
                   "--serviceaccount=default:builder")
    out = server.kubectl("describe", "rolebinding", "cm-editors").stdout
    assert "Role:\n  Kind:  Role\n  Name:  cm-editor\n" in out
    assert re.search(r"\n  User\s+dana\s*\n", out)
    assert re.search(r"\n  ServiceAccount\s+builder\s+default\n", out)

    out = server.kubectl("describe", "clusterrolebinding", "cluster-admin").stdout
    assert "Role:\n  Kind:  ClusterRole\n  Name:  cluster-admin\n" in out
    assert re.search(r"\n  Group\s+system:masters\s*\n", out)
