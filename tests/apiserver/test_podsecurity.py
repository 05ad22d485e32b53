"""PodSecurity admission against a real server, through the real kubectl and the official client:
namespace labels, enforce refusals with Kubernetes' text, ``Warning:`` lines for warn mode and
for workload templates, and the warnings a tightened namespace earns from its existing pods.
The checks themselves are tested table-driven in tests/machinery/test_podsecurity_checks.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, config

from tests.conftest import ServerProcess

ENFORCE = "pod-security.kubernetes.io/enforce"
WARN = "pod-security.kubernetes.io/warn"

RESTRICTED_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                 "seccompProfile": {"type": "RuntimeDefault"}}

PRIVILEGED_REFUSAL = (
    'Error from server (Forbidden): pods "p" is forbidden: violates PodSecurity "restricted:latest": '
    'privileged (container "p" must not set securityContext.privileged=true), allowPrivilegeEscalation != false '
    '(container "p" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
    '(container "p" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container '
    '"p" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "p" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def labelled(server: ServerProcess, name: str, *labels: str) -> str:
    server.kubectl("create", "namespace", name)
    if labels:
        server.kubectl("label", "namespace", name, *labels)
    return name


def test_restricted_namespace_refuses_a_privileged_pod(server: ServerProcess) -> None:
    ns = labelled(server, "ps-restricted", f"{ENFORCE}=restricted")
    refused = server.kubectl("-n", ns, "run", "p", "--image=busybox", "--privileged", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == PRIVILEGED_REFUSAL
    # A pod that meets the level is admitted, without warnings.
    overrides = {"spec": {"containers": [{"name": "ok", "image": "busybox", "securityContext": RESTRICTED_SC}]}}
    ok = server.kubectl("-n", ns, "run", "ok", "--image=busybox", f"--overrides={json.dumps(overrides)}")
    assert ok.stdout.strip() == "pod/ok created" and "Warning" not in ok.stderr


def test_the_official_client_sees_a_403_with_the_status(server: ServerProcess) -> None:
    ns = labelled(server, "ps-client", f"{ENFORCE}=baseline")
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
    pod = {"metadata": {"name": "hostnet"}, "spec": {"hostNetwork": True, "containers": [
        {"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(ns, pod)
    assert refused.value.status == 403
    status: dict[str, Any] = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    assert status["details"] == {"name": "hostnet", "kind": "pods"}
    assert status["message"] == ('pods "hostnet" is forbidden: violates PodSecurity "baseline:latest": host '
                                 'namespaces (hostNetwork=true), hostPort (container "c" uses hostPort 8080)')


def test_warn_mode_prints_kubectl_warnings(server: ServerProcess) -> None:
    ns = labelled(server, "ps-warn", f"{ENFORCE}=baseline", f"{WARN}=restricted")
    created = server.kubectl("-n", ns, "run", "w", "--image=busybox")
    assert created.stdout.strip() == "pod/w created"
    assert created.stderr.strip() == (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "w" '
        'must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "w" must '
        'set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "w" must set '
        'securityContext.runAsNonRoot=true), seccompProfile (pod or container "w" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    # Updates that cannot change what the pod may do are not evaluated again.
    relabelled = server.kubectl("-n", ns, "label", "pod", "w", "x=y")
    assert "Warning" not in relabelled.stderr


def test_workload_templates_are_warned_about_not_refused(server: ServerProcess) -> None:
    ns = labelled(server, "ps-deploy", f"{ENFORCE}=restricted")
    created = server.kubectl("-n", ns, "create", "deployment", "web", "--image=nginx")
    assert created.stdout.strip() == "deployment.apps/web created"
    # Without a warn label, warn follows the enforce level.
    assert created.stderr.startswith('Warning: would violate PodSecurity "restricted:latest": '
                                     'allowPrivilegeEscalation != false (container "nginx" must set ')
    job = server.kubectl("-n", ns, "create", "cronjob", "tick", "--image=busybox", "--schedule=* * * * *")
    assert 'Warning: would violate PodSecurity "restricted:latest"' in job.stderr
    assert 'container "tick" must set securityContext.allowPrivilegeEscalation=false' in job.stderr


def test_tightening_a_namespace_warns_about_existing_pods(server: ServerProcess) -> None:
    ns = labelled(server, "ps-tighten")
    for name in ("b", "a"):
        server.kubectl("-n", ns, "run", name, "--image=busybox", "--privileged")
    tightened = server.kubectl("label", "namespace", ns, f"{ENFORCE}=baseline")
    assert tightened.stdout.strip() == f"namespace/{ns} labeled"
    assert tightened.stderr.strip().splitlines() == [
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "baseline:latest"',
        "Warning: a (and 1 other pod): privileged"]
    # Relaxing warns about nothing.
    relaxed = server.kubectl("label", "--overwrite", "namespace", ns, f"{ENFORCE}=privileged")
    assert "Warning" not in relaxed.stderr


def test_bad_labels_are_invalid(server: ServerProcess) -> None:
    ns = labelled(server, "ps-labels")
    bad = server.kubectl("label", "namespace", ns, f"{ENFORCE}=strict", check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip() == (
        f'The Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
        'Invalid value: "strict": must be one of privileged, baseline, restricted')
    version = server.kubectl("label", "namespace", ns, f"{ENFORCE}-version=1.30", check=False)
    assert 'Invalid value: "1.30": must be "latest" or "v1.x"' in version.stderr


def test_versions_and_kube_system_is_not_exempt(server: ServerProcess) -> None:
    # runAsUser=0 joined the restricted level in 1.23; Kubernetes exempts no namespace by default.
    overrides = {"spec": {"containers": [{"name": "c", "image": "busybox",
                                          "securityContext": {**RESTRICTED_SC, "runAsUser": 0}}]}}
    old = labelled(server, "ps-v122", f"{ENFORCE}=restricted", f"{ENFORCE}-version=v1.22")
    assert server.kubectl("-n", old, "run", "root", "--image=busybox",
                          f"--overrides={json.dumps(overrides)}").returncode == 0
    server.kubectl("label", "namespace", "kube-system", f"{ENFORCE}=restricted")
    try:
        refused = server.kubectl("-n", "kube-system", "run", "root", "--image=busybox",
                                 f"--overrides={json.dumps(overrides)}", check=False)
        assert 'violates PodSecurity "restricted:latest": runAsUser=0 (container "c" must not set runAsUser=0)' \
            in refused.stderr
    finally:
        server.kubectl("label", "namespace", "kube-system", f"{ENFORCE}-")
