"""The proxy's rule computation and sync plans as pure functions: no kernel, no server."""

from __future__ import annotations

import json
from typing import Any

from pilothouse.components.netkernel.conntrack import ConntrackFilter
from pilothouse.components.proxy.rules import ProxyConfig, ServiceRules, base_commands, compute
from pilothouse.components.proxy.sync import plan
from tests.proxy.builders import endpoint, endpoint_slice, service

CONFIG = ProxyConfig(node_name="n1", cluster_cidr="10.244.0.0/16", service_cidrs=("10.96.0.0/12",), table="t")
HTTP = ("http", 80, "TCP")


def only(rules: dict[str, ServiceRules]) -> ServiceRules:
    assert len(rules) == 1, rules.keys()
    return next(iter(rules.values()))


def chain(rules: ServiceRules, prefix: str) -> tuple[str, list[Any]]:
    found = [(name, body) for name, body in rules.chains.items() if name.startswith(prefix)]
    assert len(found) == 1, (prefix, list(rules.chains))
    return found[0]


def dnat_targets(rules: ServiceRules) -> set[str]:
    return {f"{e['dnat']['addr']}:{e['dnat']['port']}" for body in rules.chains.values() for rule in body
            for e in rule if "dnat" in e}


def random_pick(body: list[Any]) -> list[str]:
    """The endpoint chains of a policy chain's ``numgen random mod N`` verdict map, in order."""
    vmap = body[-1][0]["vmap"]
    assert vmap["key"]["numgen"] == {"mode": "random", "mod": len(vmap["data"]["set"]), "offset": 0}
    return [verdict["goto"]["target"] for _, verdict in vmap["data"]["set"]]


def test_cluster_ip_balances_over_ready_endpoints_only() -> None:
    svc = service("web", "10.96.0.10", HTTP)
    eps = endpoint_slice("web", [endpoint("10.244.0.5"), endpoint("10.244.0.6", node="n2"),
                                 endpoint("10.244.0.7", ready=False)], ("http", 8080, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    name, body = chain(rules, "service-")
    assert rules.service_ips == {("10.96.0.10", "tcp", 80): {"goto": {"target": name}}}
    assert "default/web/tcp/http" in name
    picks = random_pick(body)
    assert len(picks) == 2 and all(p in rules.chains for p in picks)
    assert dnat_targets(rules) == {"10.244.0.5:8080", "10.244.0.6:8080"}
    # traffic from outside the pod range is masqueraded (it must come back through this node)
    assert body[0][-1] == {"jump": {"target": "mark-for-masquerade"}}
    assert body[0][2]["match"]["op"] == "!=" and body[0][2]["match"]["right"]["prefix"]["addr"] == "10.244.0.0"
    # hairpin: an endpoint reaching itself through the Service is masqueraded
    _, endpoint_body = chain(rules, "endpoint-" + picks[0].split("-", 1)[1].split("-", 1)[0])
    assert endpoint_body[0][0]["match"]["right"] in ("10.244.0.5", "10.244.0.6")
    assert endpoint_body[0][1] == {"jump": {"target": "mark-for-masquerade"}}
    assert rules.cluster_ips == {"10.96.0.10"} and not rules.no_endpoint_services


def test_headless_and_external_name_services_get_no_rules() -> None:
    headless = service("db", "None", HTTP)
    external = {"metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}}
    eps = endpoint_slice("db", [endpoint("10.244.0.5")], ("http", 80, "TCP"))
    assert compute([headless, external], [eps], CONFIG) == {}


def test_service_without_endpoints_is_rejected() -> None:
    rules = only(compute([service("empty", "10.96.0.11", HTTP)], [], CONFIG))
    assert rules.no_endpoint_services == {("10.96.0.11", "tcp", 80): {"goto": {"target": "reject-chain"}}}
    assert not rules.service_ips and not rules.chains
    # a Service whose pods are all unready is the same
    eps = endpoint_slice("empty", [endpoint("10.244.0.9", ready=False)], ("http", 80, "TCP"))
    assert only(compute([service("empty", "10.96.0.11", HTTP)], [eps], CONFIG)) == rules


def test_selectorless_service_uses_endpoints_written_by_hand() -> None:
    svc = service("legacy", "10.96.0.12", HTTP)  # no selector: its slice was written by a person
    eps = endpoint_slice("legacy", [endpoint("192.168.7.7", node="")], ("http", 9000, "TCP"), name="by-hand")
    assert dnat_targets(only(compute([svc], [eps], CONFIG))) == {"192.168.7.7:9000"}


def test_terminating_endpoints_serve_only_when_none_is_ready() -> None:
    svc = service("web", "10.96.0.10", HTTP)
    terminating = endpoint("10.244.0.5", ready=False, serving=True, terminating=True)
    gone = endpoint("10.244.0.6", ready=False, serving=False, terminating=True)
    both = endpoint_slice("web", [terminating, gone, endpoint("10.244.0.7")], ("http", 80, "TCP"))
    assert dnat_targets(only(compute([svc], [both], CONFIG))) == {"10.244.0.7:80"}
    fallback = endpoint_slice("web", [terminating, gone], ("http", 80, "TCP"))
    assert dnat_targets(only(compute([svc], [fallback], CONFIG))) == {"10.244.0.5:80"}


def test_node_port_masquerades_and_reaches_every_endpoint() -> None:
    svc = service("web", "10.96.0.10", HTTP, type="NodePort", node_ports=(30080,))
    eps = endpoint_slice("web", [endpoint("10.244.0.5"), endpoint("10.244.1.5", node="n2")], ("http", 80, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    external, body = chain(rules, "external-")
    cluster, _ = chain(rules, "service-")
    assert rules.nodeports == {("tcp", 30080): {"goto": {"target": external}}}
    assert body == [[{"jump": {"target": "mark-for-masquerade"}}], [{"goto": {"target": cluster}}]]
    # NodePort on every node address: the base ruleset matches any local destination (fib), not a list
    services_rules = [c["add"]["rule"]["expr"] for c in base_commands(CONFIG)
                      if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "services"]
    assert {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}} \
        in services_rules[1]


def test_external_traffic_policy_local() -> None:
    svc = service("web", "10.96.0.10", HTTP, type="NodePort", node_ports=(30080,), externalTrafficPolicy="Local")
    eps = endpoint_slice("web", [endpoint("10.244.0.5"), endpoint("10.244.1.5", node="n2")], ("http", 80, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    local, local_body = chain(rules, "local-")
    cluster, cluster_body = chain(rules, "service-")
    assert len(random_pick(local_body)) == 1 and len(random_pick(cluster_body)) == 2
    _, external_body = chain(rules, "external-")
    # pods and the node itself short-circuit to the Cluster chain; everyone else gets local endpoints only,
    # with the client's source address kept (no masquerade rule for them)
    assert external_body[0][-1] == {"goto": {"target": cluster}}
    assert external_body[-1] == [{"goto": {"target": local}}]
    assert [{"jump": {"target": "mark-for-masquerade"}}] not in external_body
    # the node has no local endpoint: external traffic from outside is dropped, ClusterIP still works
    on_n3 = only(compute([svc], [eps], ProxyConfig(node_name="n3", table="t")))
    assert on_n3.no_endpoint_nodeports == {("tcp", 30080): {"drop": None}}
    assert on_n3.service_ips[("10.96.0.10", "tcp", 80)]["goto"]["target"].startswith("service-")


def test_internal_traffic_policy_local() -> None:
    svc = service("web", "10.96.0.10", HTTP, internalTrafficPolicy="Local")
    eps = endpoint_slice("web", [endpoint("10.244.0.5"), endpoint("10.244.1.5", node="n2")], ("http", 80, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    local, _ = chain(rules, "local-")
    assert rules.service_ips == {("10.96.0.10", "tcp", 80): {"goto": {"target": local}}}
    assert dnat_targets(rules) == {"10.244.0.5:80"}
    elsewhere = only(compute([svc], [eps], ProxyConfig(node_name="n3", table="t")))
    assert elsewhere.no_endpoint_services == {("10.96.0.10", "tcp", 80): {"drop": None}}


def test_session_affinity_client_ip_uses_timed_sets() -> None:
    svc = service("web", "10.96.0.10", HTTP, sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    eps = endpoint_slice("web", [endpoint("10.244.0.5"), endpoint("10.244.0.6")], ("http", 80, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    assert len(rules.affinity_sets) == 2 and set(rules.affinity_sets.values()) == {60}
    _, body = chain(rules, "service-")
    # before the random pick: a client already in an endpoint's set goes back to it
    affinity_rules = body[1:-1]  # after the masquerade rule, before the random pick
    assert sorted(r[0]["match"]["right"] for r in affinity_rules) == sorted("@" + s for s in rules.affinity_sets)
    assert all(r[1]["goto"]["target"] == "endpoint-" + r[0]["match"]["right"].removeprefix("@affinity-")
               for r in affinity_rules)
    for name in rules.affinity_sets:
        endpoint_chain = rules.chains["endpoint-" + name.removeprefix("affinity-")]
        assert {"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}},
                        "set": "@" + name}} in [r[0] for r in endpoint_chain]
    default = service("web", "10.96.0.10", HTTP, sessionAffinity="ClientIP")
    assert set(only(compute([default], [eps], CONFIG)).affinity_sets.values()) == {10800}


def test_service_range_check_rejects_unallocated_addresses() -> None:
    check = [c["add"]["rule"]["expr"] for c in base_commands(CONFIG)
             if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "cluster-ips-check"]
    assert check == [[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                 "right": "@cluster-ips"}}, {"reject": None}],
                     [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                 "right": {"prefix": {"addr": "10.96.0.0", "len": 12}}}}, {"reject": None}]]


def _mentions(commands: list[Any], text: str) -> bool:
    return text in json.dumps(commands)


def test_incremental_plan_touches_only_the_changed_service() -> None:
    services = [service(f"s{i}", f"10.96.1.{i}", HTTP) for i in range(50)]
    slices = [endpoint_slice(f"s{i}", [endpoint(f"10.244.1.{i}"), endpoint(f"10.244.2.{i}")], ("http", 80, "TCP"))
              for i in range(50)]
    before = compute(services, slices, CONFIG)
    full = plan(CONFIG, None, before)
    assert full.changed == 50 and _mentions(full.commands, "default/s49/")
    assert plan(CONFIG, before, compute(services, slices, CONFIG)).commands == []

    slices[7] = endpoint_slice("s7", [endpoint("10.244.1.7")], ("http", 80, "TCP"))  # one endpoint gone
    after = compute(services, slices, CONFIG)
    step = plan(CONFIG, before, after)
    assert step.changed == 1
    assert all("default/s7/" in json.dumps(c) for c in step.commands)
    assert len(step.commands) < len(full.commands) / 20
    assert [name for name in step.stale_chains] == [n for n in before["default/s7/tcp/http"].chains
                                                     if n not in after["default/s7/tcp/http"].chains]
    assert any("flush" in c for c in step.commands) and not any("delete" in c and "chain" in c["delete"]
                                                               for c in step.commands)
    assert step.conntrack == []  # TCP: nothing to clear

    removed = plan(CONFIG, after, compute(services[1:], slices, CONFIG))
    assert {"delete": {"element": {"family": "ip", "table": "t", "name": "cluster-ips", "elem": ["10.96.1.0"]}}} \
        in removed.commands
    assert len(removed.stale_chains) == 3  # the service chain and its two endpoint chains


def test_removed_udp_endpoint_clears_its_conntrack_entries() -> None:
    dns = ("dns", 53, "UDP")
    svc = service("dns", "10.96.0.10", dns)
    two = endpoint_slice("dns", [endpoint("10.244.0.5"), endpoint("10.244.0.6")], ("dns", 5353, "UDP"))
    one = endpoint_slice("dns", [endpoint("10.244.0.6")], ("dns", 5353, "UDP"))
    before, after = compute([svc], [two], CONFIG), compute([svc], [one], CONFIG)
    assert plan(CONFIG, before, after).conntrack == [ConntrackFilter("udp", "10.96.0.10", 0, "10.244.0.5")]
    # from no endpoints to some: whatever was rejected meanwhile must not stick
    empty = compute([svc], [], CONFIG)
    assert plan(CONFIG, empty, after).conntrack == [ConntrackFilter("udp", "10.96.0.10", 53)]
    assert ConntrackFilter("udp", "10.96.0.10", 0, "10.244.0.5").argv() == [
        "-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.0.5"]


def test_external_ips_and_load_balancer_addresses_go_through_the_external_chain() -> None:
    svc = service("lb", "10.96.0.20", HTTP, type="LoadBalancer", node_ports=(30090,), externalIPs=["192.0.2.10"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"hostname": "lb.example"}]}}
    eps = endpoint_slice("lb", [endpoint("10.244.0.5")], ("http", 80, "TCP"))
    rules = only(compute([svc], [eps], CONFIG))
    external, _ = chain(rules, "external-")
    cluster, _ = chain(rules, "service-")
    assert rules.service_ips == {("10.96.0.20", "tcp", 80): {"goto": {"target": cluster}},
                                 ("192.0.2.10", "tcp", 80): {"goto": {"target": external}},
                                 ("198.51.100.7", "tcp", 80): {"goto": {"target": external}}}
    assert rules.nodeports == {("tcp", 30090): {"goto": {"target": external}}}
    # without endpoints every one of those addresses is rejected
    empty = only(compute([svc], [], CONFIG))
    assert set(empty.no_endpoint_services) == set(rules.service_ips) and not empty.chains
    assert empty.no_endpoint_nodeports == {("tcp", 30090): {"goto": {"target": "reject-chain"}}}


def test_a_changed_affinity_timeout_redefines_the_sets() -> None:
    eps = endpoint_slice("web", [endpoint("10.244.0.5")], ("http", 80, "TCP"))

    def sticky(seconds: int) -> dict[str, ServiceRules]:
        return compute([service("web", "10.96.0.10", HTTP, sessionAffinity="ClientIP",
                                sessionAffinityConfig={"clientIP": {"timeoutSeconds": seconds}})], [eps], CONFIG)
    step = plan(CONFIG, sticky(60), sticky(600))
    assert [c["add"]["set"]["timeout"] for c in step.commands if "set" in c.get("add", {})] == [600]


# --------------------------------------------------------------- --nodeport-addresses


def _node_port_lookups(config: ProxyConfig) -> list[list[Any]]:
    """The base rules that look a NodePort up (in ``services`` and ``endpoints-check``)."""
    return [command["add"]["rule"]["expr"] for command in base_commands(config)
            if "rule" in command["add"] and "nodeports" in json.dumps(command["add"]["rule"]["expr"])]


def test_node_ports_answer_on_every_node_address_but_loopback_by_default() -> None:
    lookups = _node_port_lookups(CONFIG)
    assert len(lookups) == 2
    for expr in lookups:
        fib = {"fib": {"result": "type", "flags": ["daddr"]}}
        assert {"match": {"op": "==", "left": fib, "right": "local"}} in expr
        daddr = [e["match"] for e in expr if "match" in e and e["match"]["left"] == {"payload": {
            "protocol": "ip", "field": "daddr"}}]
        assert daddr == [{"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                          "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}]


def test_nodeport_addresses_narrow_the_node_addresses() -> None:
    daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
    one = ProxyConfig(node_name="n1", table="t", nodeport_addresses=("10.250.1.0/24",))
    for expr in _node_port_lookups(one):
        assert {"match": {"op": "==", "left": daddr, "right": {"prefix": {"addr": "10.250.1.0", "len": 24}}}} in expr
    two = ProxyConfig(node_name="n1", table="t", nodeport_addresses=("10.250.1.0/24", "192.0.2.7/32"))
    for expr in _node_port_lookups(two):
        assert {"match": {"op": "==", "left": daddr, "right": {"set": [
            {"prefix": {"addr": "10.250.1.0", "len": 24}}, "192.0.2.7"]}}} in expr


# ---------------------------------------------------------- loadBalancerSourceRanges


def _balancer(ranges: list[str] | None, ingress: str | None = "203.0.113.10") -> dict[str, Any]:
    svc = service("lb", "10.96.0.30", HTTP, type="LoadBalancer", node_ports=(30080,),
                  **({"loadBalancerSourceRanges": ranges} if ranges is not None else {}))
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": ingress}] if ingress else []}}
    return svc


LB_SLICE = endpoint_slice("lb", [endpoint("10.244.0.5")], ("http", 8080, "TCP"))


def test_load_balancer_source_ranges_drop_other_sources_to_the_balancer_address() -> None:
    rules = only(compute([_balancer(["10.1.0.0/16", "192.0.2.0/24"])], [LB_SLICE], CONFIG))
    name, body = chain(rules, "firewall-")
    assert rules.firewall_ips == {("203.0.113.10", "tcp", 80): {"goto": {"target": name}}}
    assert body == [[{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {
        "set": [{"prefix": {"addr": "10.1.0.0", "len": 16}}, {"prefix": {"addr": "192.0.2.0", "len": 24}}]}}},
        {"drop": None}]]
    # the balancer's address is still served, the node port and the cluster IP are not filtered
    assert ("203.0.113.10", "tcp", 80) in rules.service_ips and ("tcp", 30080) in rules.nodeports
    # no firewall without ranges, or without a balancer address to guard
    for unguarded in (_balancer(None), _balancer([]), _balancer(["10.1.0.0/16"], ingress=None)):
        plain = only(compute([unguarded], [LB_SLICE], CONFIG))
        assert not plain.firewall_ips and not [n for n in plain.chains if n.startswith("firewall-")]


def test_dropping_source_ranges_removes_the_firewall_element() -> None:
    guarded = compute([_balancer(["10.1.0.0/16"])], [LB_SLICE], CONFIG)
    open_ = compute([_balancer(None)], [LB_SLICE], CONFIG)
    commands = plan(CONFIG, guarded, open_).commands
    deleted = [c["delete"]["element"] for c in commands if "element" in c.get("delete", {})]
    assert [e["name"] for e in deleted] == ["firewall-ips"]
    assert plan(CONFIG, guarded, open_).stale_chains == {n for n in only(guarded).chains if n.startswith("firewall-")}


# ------------------------------------------------------------- health-check node ports


def test_health_check_counts_this_nodes_ready_endpoints() -> None:
    from pilothouse.components.proxy.healthcheck import HealthCheck, health_check, response_body
    from pilothouse.components.proxy.model import endpoints_for, service_ports

    svc = service("lb", "10.96.0.30", HTTP, ("https", 443, "TCP"), type="LoadBalancer", node_ports=(30080, 30443),
                  externalTrafficPolicy="Local", healthCheckNodePort=32000)
    eps = endpoint_slice("lb", [endpoint("10.244.0.5"), endpoint("10.244.0.6"), endpoint("10.244.0.7", ready=False),
                                endpoint("10.244.1.5", node="n2")], ("http", 8080, "TCP"), ("https", 8443, "TCP"))
    endpoints = [e for port in service_ports(svc) for e in endpoints_for(port, [eps])]
    check = health_check(svc, endpoints, "n1")
    assert check == HealthCheck("default", "lb", 32000, 2)  # distinct ready addresses on n1, over both ports
    assert health_check(svc, endpoints, "n3") == HealthCheck("default", "lb", 32000, 0)
    assert health_check({**svc, "spec": {**svc["spec"], "externalTrafficPolicy": "Cluster"}}, endpoints, "n1") is None
    # kube-proxy's body: its Go template dedented, with tabs
    assert response_body(check, True) == ('{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "lb"\n\t},\n'
                                          '\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}')
    assert json.loads(response_body(check, False)) == {"service": {"namespace": "default", "name": "lb"},
                                                       "localEndpoints": 2, "serviceProxyHealthy": False}
