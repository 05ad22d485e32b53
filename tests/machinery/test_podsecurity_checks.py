"""The Pod Security Standards checks and policies on plain dicts, table-driven: which pods each
level (and version) admits, with the reason and detail text k8s.io/pod-security-admission 1.32
writes (expected strings from its policy/check_*_test.go where it has them)."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery import podsecurity
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.podsecurity import LevelVersion, Policy

Object = dict[str, Any]

BASELINE = LevelVersion("baseline")
RESTRICTED = LevelVersion("restricted")

# A pod the restricted level admits; each case below breaks it in one way.
RESTRICTED_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def good_pod(**spec: Any) -> tuple[Object, Object]:
    base: Object = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": "busybox", "securityContext": dict(RESTRICTED_SC)}]}
    base.update(spec)
    return {}, base


def container(name: str, **sc: Any) -> Object:
    return {"name": name, "image": "busybox", "securityContext": {**RESTRICTED_SC, **sc}}


def detail(lv: LevelVersion, metadata: Object, spec: Object) -> str:
    return podsecurity.aggregate(podsecurity.evaluate(lv, metadata, spec))[1]


CASES: list[tuple[str, tuple[Object, Object], str, str]] = [
    # (case, pod, what baseline says, what restricted says); "" admits
    ("compliant", good_pod(), "", ""),
    ("privileged", good_pod(containers=[container("c", privileged=True)]),
     'privileged (container "c" must not set securityContext.privileged=true)',
     'privileged (container "c" must not set securityContext.privileged=true)'),
    ("host namespaces", good_pod(hostNetwork=True, hostPID=True, hostIPC=True),
     "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)",
     "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"),
    ("host ports", good_pod(containers=[
        container("a"), {**container("b"), "ports": [{"containerPort": 1, "hostPort": 20}]},
        {**container("c"), "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 30}]}]),
     'hostPort (containers "b", "c" use hostPorts 10, 20, 30)',
     'hostPort (containers "b", "c" use hostPorts 10, 20, 30)'),
    ("hostPath volume", good_pod(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
     'hostPath volumes (volume "h")',
     'restricted volume types (volume "h" uses restricted volume type "hostPath")'),
    ("restricted volume types", good_pod(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}},
                                                  {"name": "g", "gitRepo": {"repository": "r"}},
                                                  {"name": "ok", "emptyDir": {}}]),
     "", 'restricted volume types (volumes "n", "g" use restricted volume types "gitRepo", "nfs")'),
    ("baseline capabilities", good_pod(containers=[container("c", capabilities={"drop": ["ALL"],
                                                                                "add": ["SYS_ADMIN", "CHOWN"]})]),
     'non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)',
     'unrestricted capabilities (container "c" must not include "CHOWN", "SYS_ADMIN" in '
     "securityContext.capabilities.add)"),
    ("no drop ALL", good_pod(containers=[container("c", capabilities={"add": ["NET_BIND_SERVICE"]})]),
     "", 'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])'),
    ("privilege escalation", good_pod(containers=[container("a", allowPrivilegeEscalation=True),
                                                  {"name": "b", "image": "i", "securityContext": {
                                                      "capabilities": {"drop": ["ALL"]}}}]),
     "", 'allowPrivilegeEscalation != false (containers "a", "b" must set '
         "securityContext.allowPrivilegeEscalation=false)"),
    ("runAsNonRoot false", good_pod(securityContext={"runAsNonRoot": False,
                                                     "seccompProfile": {"type": "RuntimeDefault"}}),
     "", "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"),
    ("runAsNonRoot unset", good_pod(securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
     "", 'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)'),
    ("runAsUser 0", good_pod(containers=[container("c", runAsUser=0)]),
     "", 'runAsUser=0 (container "c" must not set runAsUser=0)'),
    ("seccomp unconfined", good_pod(securityContext={"runAsNonRoot": True,
                                                     "seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")',
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    ("seccomp unset", good_pod(securityContext={"runAsNonRoot": True}),
     "", 'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to '
         '"RuntimeDefault" or "Localhost")'),
    ("seccomp on the container", good_pod(securityContext={"runAsNonRoot": True}, containers=[
        container("c", seccompProfile={"type": "Localhost", "localhostProfile": "p"})]), "", ""),
    ("proc mount", good_pod(containers=[container("c", procMount="Unmasked")]),
     'procMount (container "c" must not set securityContext.procMount to "Unmasked")',
     'procMount (container "c" must not set securityContext.procMount to "Unmasked")'),
    ("selinux", good_pod(securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                          "seLinuxOptions": {"type": "foo", "user": "u", "role": "r"}},
                         containers=[container("e", seLinuxOptions={"type": "bar"})]),
     'seLinuxOptions (pod and container "e" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; '
     "user may not be set; role may not be set)",
     'seLinuxOptions (pod and container "e" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; '
     "user may not be set; role may not be set)"),
    ("apparmor", ({"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
                  good_pod(containers=[container("c", appArmorProfile={"type": "Unconfined"})])[1]),
     'forbidden AppArmor profiles (container "c" and annotation must not set AppArmor profile type to '
     '"Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined"")',
     'forbidden AppArmor profiles (container "c" and annotation must not set AppArmor profile type to '
     '"Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined"")'),
    ("sysctls", good_pod(securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                          "sysctls": [{"name": "a", "value": "1"}, {"name": "b", "value": "1"},
                                                      {"name": "net.ipv4.tcp_rmem", "value": "1"}]}),
     "forbidden sysctls (a, b)", "forbidden sysctls (a, b)"),
    ("windows hostProcess", good_pod(securityContext={"runAsNonRoot": True, "seccompProfile": {
        "type": "RuntimeDefault"}, "windowsOptions": {"hostProcess": True}}),
     "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
     "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"),
]


@pytest.mark.parametrize(("pod", "baseline", "restricted"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_levels(pod: tuple[Object, Object], baseline: str, restricted: str) -> None:
    metadata, spec = pod
    assert detail(BASELINE, metadata, spec) == baseline
    assert detail(RESTRICTED, metadata, spec) == restricted
    assert detail(LevelVersion("privileged"), metadata, spec) == ""


def test_a_bare_pod_fails_restricted_in_kubernetes_order() -> None:
    spec = {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}
    reason, text = podsecurity.aggregate(podsecurity.evaluate(RESTRICTED, {}, spec))
    assert reason == ("privileged, allowPrivilegeEscalation != false, unrestricted capabilities, "
                      "runAsNonRoot != true, seccompProfile")
    assert text.startswith('privileged (container "c" must not set securityContext.privileged=true), '
                           'allowPrivilegeEscalation != false (container "c" must set')


def test_versions_pick_the_checks_of_their_time() -> None:
    # runAsUser joined restricted in 1.23; tcp_rmem became a safe sysctl in 1.32; Windows pods
    # were spared the Linux-only restricted checks from 1.25.
    _, spec = good_pod(containers=[container("c", runAsUser=0)])
    assert detail(LevelVersion("restricted", 22), {}, spec) == ""
    assert detail(LevelVersion("restricted", 23), {}, spec) != ""
    sysctl = {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]},
              "containers": [{"name": "c", "image": "i"}]}
    assert detail(LevelVersion("baseline", 31), {}, sysctl) == "forbidden sysctls (net.ipv4.tcp_rmem)"
    assert detail(LevelVersion("baseline", 32), {}, sysctl) == ""
    assert detail(LevelVersion("baseline", 99), {}, sysctl) == ""  # a future version means the newest
    windows = {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True},
               "containers": [{"name": "c", "image": "i"}]}
    assert "allowPrivilegeEscalation" in detail(LevelVersion("restricted", 24), {}, windows)
    assert detail(LevelVersion("restricted", 25), {}, windows) == ""
    # Before 1.22 restricted used baseline's capabilities check, which allows no drop.
    _, no_drop = good_pod(containers=[{"name": "c", "image": "i", "securityContext": {
        "allowPrivilegeEscalation": False}}])
    assert detail(LevelVersion("restricted", 21), {}, no_drop) == ""


def test_namespace_labels_to_policy() -> None:
    policy, errors = podsecurity.parse_policy({"pod-security.kubernetes.io/enforce": "baseline",
                                               "pod-security.kubernetes.io/enforce-version": "v1.29"})
    # Without a warn label, warn follows a stricter enforce level and its version.
    assert policy == Policy(LevelVersion("baseline", 29), LevelVersion(), LevelVersion("baseline", 29))
    assert errors == []
    assert str(policy.enforce) == "baseline:v1.29" and str(policy.audit) == "privileged:latest"
    policy, errors = podsecurity.parse_policy({"pod-security.kubernetes.io/enforce": "strict",
                                               "pod-security.kubernetes.io/warn": "nope",
                                               "pod-security.kubernetes.io/warn-version": "1.30"})
    # A bad enforce level fails closed, a bad warn level open.
    assert policy.enforce.level == "restricted" and policy.warn == LevelVersion("privileged")
    assert [e.message() for e in errors] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "nope": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": '
        'must be "latest" or "v1.x"']
    assert all(isinstance(e, FieldError) for e in errors)
    assert podsecurity.parse_policy(None)[0].fully_privileged()


def test_pod_verdicts_and_template_warnings() -> None:
    policy = Policy(enforce=LevelVersion("baseline"), warn=RESTRICTED)
    spec = {"containers": [{"name": "c", "image": "i"}]}
    verdict = podsecurity.evaluate_pod(policy, {}, spec, enforce=True)
    assert verdict.refusal == ""
    assert verdict.warnings == ['would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
                                '(container "c" must set securityContext.allowPrivilegeEscalation=false), '
                                'unrestricted capabilities (container "c" must set '
                                'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
                                'container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod '
                                'or container "c" must set securityContext.seccompProfile.type to '
                                '"RuntimeDefault" or "Localhost")']
    privileged = {"hostPID": True, **spec}
    refused = podsecurity.evaluate_pod(policy, {}, privileged, enforce=True)
    assert refused.refusal == 'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)'
    assert refused.warnings == []  # no warnings on a request that is refused
    # Templates are never enforced, only warned about.
    template = podsecurity.evaluate_pod(policy, {}, privileged, enforce=False)
    assert template.refusal == "" and template.warnings[0].startswith(
        'would violate PodSecurity "restricted:latest": host namespaces (hostPID=true), ')
    assert podsecurity.pod_spec_of("batch", "cronjobs", {"spec": {"jobTemplate": {"spec": {"template": {
        "spec": spec}}}}}) == ({}, spec)
    assert podsecurity.pod_spec_of("", "replicationcontrollers", {"spec": {}}) is None
    assert podsecurity.pod_spec_of("", "configmaps", {}) is None


def test_significant_pod_updates() -> None:
    old = {"spec": {"containers": [{"name": "c", "image": "a"}]}}
    assert not podsecurity.significant_pod_update({"metadata": {"labels": {"x": "y"}}, **old}, old)
    assert podsecurity.significant_pod_update({"spec": {"containers": [{"name": "c", "image": "b"}]}}, old)
    assert podsecurity.significant_pod_update({"spec": {**old["spec"], "ephemeralContainers": [
        {"name": "debug", "image": "busybox"}]}}, old)


def test_existing_pods_against_a_tightened_enforce_level() -> None:
    def pod(name: str, owner: str | None = None, **spec: Any) -> Object:
        metadata: Object = {"name": name}
        if owner:
            metadata["ownerReferences"] = [{"uid": owner, "controller": True}]
        return {"metadata": metadata, "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}

    pods = [pod("web-2", "rs", hostNetwork=True), pod("web-1", "rs", hostNetwork=True), pod("ok"),
            pod("db", hostPID=True), pod("cache", hostIPC=True), pod("zz", volumes=[{"name": "v", "hostPath": {}}])]
    assert podsecurity.existing_pods_warnings("apps", BASELINE, pods) == [
        'existing pods in namespace "apps" violate the new PodSecurity enforce level "baseline:latest"',
        "cache (and 3 other pods): host namespaces",
        "zz: hostPath volumes"]
    assert podsecurity.existing_pods_warnings("apps", BASELINE, [pod("ok")]) == []
    assert podsecurity.enforce_tightened(Policy(BASELINE), Policy())
    assert not podsecurity.enforce_tightened(Policy(BASELINE), Policy(RESTRICTED))  # relaxed
    assert not podsecurity.enforce_tightened(Policy(LevelVersion("privileged")), Policy(BASELINE))
