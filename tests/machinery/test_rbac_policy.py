"""The pure RBAC machinery: rule coverage, reconcile decisions, the bootstrap policy's consistency."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery.kinds import rbac
from pilothouse.machinery.rbac import bootstrappolicy as policy
from pilothouse.machinery.rbac.covers import covers
from pilothouse.machinery.rbac.reconcile import reconcile_binding, reconcile_role

Object = dict[str, Any]


def _rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
          names: list[str] | None = None, urls: list[str] | None = None) -> Object:
    rule: Object = {"verbs": verbs}
    for key, value in (("apiGroups", groups), ("resources", resources), ("resourceNames", names),
                       ("nonResourceURLs", urls)):
        if value is not None:
            rule[key] = value
    return rule


@pytest.mark.parametrize(("owner", "requested", "covered"), [
    (_rule(["*"], ["*"], ["*"]), _rule(["delete"], ["apps"], ["deployments/scale"]), True),
    (_rule(["get", "list"], [""], ["pods"]), _rule(["get", "watch"], [""], ["pods"]), False),
    (_rule(["get"], ["*"], ["*/scale"]), _rule(["get"], ["apps"], ["deployments/scale"]), True),
    (_rule(["get"], ["*"], ["*/scale"]), _rule(["get"], ["apps"], ["deployments"]), False),
    (_rule(["get"], [""], ["configmaps"]), _rule(["get"], [""], ["configmaps"], names=["a"]), True),
    (_rule(["get"], [""], ["configmaps"], names=["a"]), _rule(["get"], [""], ["configmaps"]), False),
    (_rule(["get"], urls=["/healthz/*"]), _rule(["get"], urls=["/healthz/etcd"]), True),
    (_rule(["get"], urls=["/healthz"]), _rule(["get"], urls=["/healthz/etcd"]), False),
])
def test_covers(owner: Object, requested: Object, covered: bool) -> None:
    assert covers([owner], [requested])[0] is covered


def test_missing_rules_are_atoms() -> None:
    ok, missing = covers([_rule(["get"], [""], ["pods"])], [_rule(["get", "list"], ["", "apps"], ["pods"])])
    assert not ok
    assert missing == [_rule(["list"], [""], ["pods"]), _rule(["get"], ["apps"], ["pods"]),
                       _rule(["list"], ["apps"], ["pods"])]


def _role(rules: list[Object], annotations: dict[str, str] | None = None, **extra: Any) -> Object:
    return {"metadata": {"name": "r", "labels": {"mine": "yes"}, "annotations": annotations or {}},
            "rules": rules, **extra}


def test_reconcile_role_is_a_union() -> None:
    expected = policy.cluster_roles()[0]  # cluster-admin
    assert reconcile_role(None, expected).operation == "create"
    stored = _role([_rule(["get"], ["example.com"], ["things"])])
    result = reconcile_role(stored, expected)
    assert result.operation == "update" and not result.protected
    assert result.obj["rules"][0] == _rule(["get"], ["example.com"], ["things"])  # kept
    assert _rule(["*"], ["*"], ["*"]) in result.obj["rules"]
    assert result.obj["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults", "mine": "yes"}
    assert reconcile_role(result.obj, expected).operation == "none"
    protected = _role([], {policy.AUTOUPDATE_ANNOTATION: "false"})
    assert reconcile_role(protected, expected).protected


def test_reconcile_aggregation_selectors() -> None:
    view = next(r for r in policy.cluster_roles() if r["metadata"]["name"] == "view")
    other = {"matchLabels": {"team": "a"}}
    stored = _role([_rule(["get"], [""], ["pods"])], aggregationRule={"clusterRoleSelectors": [other]})
    result = reconcile_role(stored, view)
    assert result.obj["aggregationRule"]["clusterRoleSelectors"] == [
        other, {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]
    admin = policy.cluster_roles()[0]  # not aggregated: a stored aggregation goes
    assert "aggregationRule" not in reconcile_role(stored, admin).obj


def test_reconcile_binding() -> None:
    expected = policy.cluster_role_bindings()[0]  # cluster-admin -> system:masters
    stored: Object = {"metadata": {"name": "cluster-admin"}, "roleRef": dict(expected["roleRef"]),
                      "subjects": [{"kind": "User", "apiGroup": policy.GROUP, "name": "root"}]}
    result = reconcile_binding(stored, expected)
    assert result.operation == "update"
    assert [s["name"] for s in result.obj["subjects"]] == ["root", "system:masters"]
    stored["roleRef"]["name"] = "view"
    assert reconcile_binding(stored, expected).operation == "recreate"


def test_bootstrap_policy_is_valid_and_consistent() -> None:
    roles = policy.cluster_roles()
    names = [r["metadata"]["name"] for r in roles]
    assert len(names) == len(set(names))
    for role in roles:
        assert rbac.validate_clusterrole(role) == [], role["metadata"]["name"]
    for binding in policy.cluster_role_bindings():
        assert rbac.validate_clusterrolebinding(binding) == [], binding["metadata"]["name"]
        assert binding["roleRef"]["name"] in names
    namespaced = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in policy.namespace_roles()}
    for role in policy.namespace_roles():
        assert rbac.validate_role(role) == []
    for binding in policy.namespace_role_bindings():
        assert rbac.validate_rolebinding(binding) == []
        assert (binding["metadata"]["namespace"], binding["roleRef"]["name"]) in namespaced
    # Every controller role is bound to the controller's service account in kube-system.
    bindings = {b["metadata"]["name"]: b for b in policy.cluster_role_bindings()}
    for name in names:
        if name.startswith("system:controller:"):
            subjects = bindings[name]["subjects"]
            assert subjects == [{"kind": "ServiceAccount", "name": name.split(":")[-1],
                                 "namespace": "kube-system"}]
    # Fresh objects every call: callers may change them.
    roles[0]["rules"].clear()
    assert policy.cluster_roles()[0]["rules"]
