"""The policy ruleset as a pure function of Pods, Namespaces and NetworkPolicies: no kernel."""

from __future__ import annotations

from typing import Any

from pilothouse.components.netpolicy.model import namespace_from, pod_from, policy_from
from pilothouse.components.netpolicy.rules import EGRESS_MAP, INGRESS_MAP, Ruleset, compute, full_commands, plan
from tests.netpolicy.builders import namespace, pod, policy

RETURN = {"return": None}
DROP = {"drop": None}


def ruleset(policies: list[dict[str, Any]], pods: list[dict[str, Any]],
            namespaces: list[dict[str, Any]] | None = None, node: str = "node-a") -> Ruleset:
    parsed = [p for p in map(pod_from, pods) if p is not None]
    names = {p["metadata"]["namespace"] for p in pods}
    spaces = namespaces if namespaces is not None else [namespace(n) for n in names]
    return compute(map(policy_from, policies), parsed, map(namespace_from, spaces), node)


def saddr(right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": right}}


def daddr(right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": right}}


def proto(name: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": name}}


def dport(right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": right}}


PODS = [pod("web", "a", "10.244.0.2", {"app": "web"}, ports=(("http", 8080, "TCP"),)),
        pod("web", "b", "10.244.0.3", {"app": "web"}, ports=(("http", 9090, "TCP"),)),
        pod("web", "client", "10.244.0.4", {"app": "client"}),
        pod("web", "remote", "10.244.1.2", {"app": "web"}, node="node-b"),
        pod("other", "client", "10.244.0.5", {"app": "client"}),
        pod("other", "done", "10.244.0.6", {"app": "client"}),
        pod("web", "host", "192.168.1.10", {"app": "web"})]
PODS[5]["status"]["phase"] = "Succeeded"  # its address may belong to another pod now
PODS[6]["spec"]["hostNetwork"] = True  # not a policy target nor peer


def test_no_policy_isolates_nothing() -> None:
    assert ruleset([], PODS) == Ruleset()


def test_default_deny_ingress_isolates_this_nodes_selected_pods_for_ingress_only() -> None:
    rules = ruleset([policy("web", "deny")], PODS)
    assert rules.ingress == {"10.244.0.2": "ingress-web/a", "10.244.0.3": "ingress-web/b",
                             "10.244.0.4": "ingress-web/client"}  # not node-b's, not other namespaces'
    assert rules.egress == {}
    assert rules.chains["ingress-web/a"] == ((DROP,),)


def test_pod_selector_peer_and_ports() -> None:
    rules = ruleset([policy("web", "allow", {"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
         "ports": [{"port": 80, "protocol": "TCP"}, {"port": 5000, "endPort": 5010, "protocol": "UDP"},
                   {"protocol": "SCTP"}]}])], PODS)
    assert set(rules.ingress) == {"10.244.0.2", "10.244.0.3"}
    # only the policy's own namespace: other/client is not a peer
    assert rules.chains["ingress-web/a"] == (
        (saddr("10.244.0.4"), proto("tcp"), dport(80), RETURN),
        (saddr("10.244.0.4"), proto("udp"), dport({"range": [5000, 5010]}), RETURN),
        (saddr("10.244.0.4"), proto("sctp"), RETURN),
        (DROP,))


def test_namespace_selector_alone_and_combined_with_a_pod_selector() -> None:
    spaces = [namespace("web"), namespace("other", {"team": "x"})]
    alone = ruleset([policy("web", "p", {"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]}])], PODS, spaces)
    assert alone.chains["ingress-web/a"] == ((saddr("10.244.0.5"), RETURN), (DROP,))
    every = ruleset([policy("web", "p", {"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}]}])], PODS, spaces)
    assert every.chains["ingress-web/a"] == ((saddr({"set": ["10.244.0.4", "10.244.0.5"]}), RETURN), (DROP,))
    # both in one item: AND; a selector matching no namespace allows nothing
    none = ruleset([policy("web", "p", {"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {}}]}])], PODS, spaces)
    assert none.chains["ingress-web/a"] == ((DROP,),)


def test_ip_block_with_except_for_egress() -> None:
    rules = ruleset([policy("web", "out", {"matchLabels": {"app": "client"}}, types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16", "10.1.2.3/32"]}}],
         "ports": [{"port": 53, "protocol": "UDP"}]}])], PODS)
    assert rules.ingress == {}
    assert rules.egress == {"10.244.0.4": "egress-web/client"}
    assert rules.chains["egress-web/client"] == (
        (daddr({"prefix": {"addr": "10.0.0.0", "len": 8}}),
         daddr({"set": ["10.1.2.3", {"prefix": {"addr": "10.244.0.0", "len": 16}}]}, "!="),
         proto("udp"), dport(53), RETURN), (DROP,))


def test_named_ports_resolve_per_destination_pod() -> None:
    ingress = ruleset([policy("web", "p", {"matchLabels": {"app": "web"}}, ingress=[
        {"ports": [{"port": "http", "protocol": "TCP"}]}])], PODS)
    assert ingress.chains["ingress-web/a"] == ((proto("tcp"), dport(8080), RETURN), (DROP,))
    assert ingress.chains["ingress-web/b"] == ((proto("tcp"), dport(9090), RETURN), (DROP,))
    egress = ruleset([policy("web", "p", {"matchLabels": {"app": "client"}}, types=["Egress"], egress=[
        {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http", "protocol": "TCP"}]}])],
        PODS)
    assert egress.chains["egress-web/client"] == ((daddr("10.244.0.2"), proto("tcp"), dport(8080), RETURN),
                                                  (daddr("10.244.0.3"), proto("tcp"), dport(9090), RETURN), (DROP,))


def test_policy_types_default_and_allow_all_rules() -> None:
    # egress rules without policyTypes: both directions; an empty rule allows everything
    rules = ruleset([policy("other", "p", ingress=[{}], egress=[{}])], PODS)
    assert rules.chains["ingress-other/client"] == ((RETURN,), (DROP,))
    assert rules.chains["egress-other/client"] == ((RETURN,), (DROP,))
    # several policies add up; the same allowance appears once
    both = ruleset([policy("other", "a", ingress=[{}]), policy("other", "b", ingress=[{}]),
                    policy("other", "c", types=["Egress"])], PODS)
    assert both.chains["ingress-other/client"] == ((RETURN,), (DROP,))
    assert both.chains["egress-other/client"] == ((DROP,),)


def test_plan_touches_only_what_changed() -> None:
    before = ruleset([policy("web", "deny")], PODS)
    after = ruleset([policy("web", "deny"), policy("web", "allow", {"matchLabels": {"app": "client"}}, ingress=[{}])],
                    [PODS[0], PODS[2]])  # web/b gone, client gets an allowance
    commands = plan(before, after)
    touched = {(verb, kind, body.get("name") or body.get("chain")) for command in commands
               for verb, item in command.items() for kind, body in item.items()}
    assert touched == {("delete", "element", INGRESS_MAP), ("flush", "chain", "ingress-web/client"),
                       ("add", "rule", "ingress-web/client"), ("delete", "chain", "ingress-web/b")}
    assert plan(after, after) == []
    names = [c["add"]["chain"]["name"] for c in full_commands(after) if "chain" in c.get("add", {})]
    assert names == ["forward", "input", "ingress-web/a", "ingress-web/client"]
    assert EGRESS_MAP in {c["add"]["map"]["name"] for c in full_commands(after) if "map" in c.get("add", {})}
