"""Plugin-level tests against in-memory node infos (no server): each policy as kube-scheduler applies it."""

from __future__ import annotations

from typing import Any

import pytest
from sched_helpers import PROCESSING_TOLERATION, anti_affinity, node, pod, seed_nodes

from pilothouse.components.scheduler.cache import Cache
from pilothouse.components.scheduler.framework import Code, CycleState
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo, pod_requests
from pilothouse.components.scheduler.plugins.interpodaffinity import InterPodAffinity
from pilothouse.components.scheduler.plugins.nodeaffinity import NodeAffinity
from pilothouse.components.scheduler.plugins.nodeports import NodePorts
from pilothouse.components.scheduler.plugins.noderesources import BalancedAllocation, Fit
from pilothouse.components.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.components.scheduler.plugins.tainttoleration import TaintToleration
from pilothouse.components.scheduler.quantity import milli_value, value
from pilothouse.components.scheduler.runtime import Framework, num_feasible_nodes_to_find


def cache_with(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = ()) -> Cache:  # type: ignore[assignment]
    cache = Cache()
    for n in nodes:
        cache.add_node(n)
    for p in pods:
        cache.add_pod(PodInfo(p))
    return cache


def run_filter(plugin: Any, p: PodInfo, info: NodeInfo) -> Any:
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        status = plugin.pre_filter(state, p)
        if status is not None and status.code == Code.SKIP:
            return None
    return plugin.filter(state, p, info)


@pytest.mark.parametrize(("text", "milli", "plain"), [
    ("100m", 100, 1), ("1", 1000, 1), ("0.5", 500, 1), ("1Gi", 2**30 * 1000, 2**30), ("1e3", 10**6, 1000),
    ("500Mi", 500 * 2**20 * 1000, 500 * 2**20), ("2k", 2 * 10**6, 2000), ("1.5G", 1_500_000_000_000, 1_500_000_000),
])
def test_quantities(text: str, milli: int, plain: int) -> None:
    assert milli_value(text) == milli
    assert value(text) == plain


def test_pod_requests_init_containers_sidecars_and_overhead() -> None:
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                           {"resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
                               {"restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}],
            "overhead": {"cpu": "10m"}}
    requests = pod_requests(spec)
    # containers 300m + sidecar 50m = 350m; the 1-cpu init container wins the max; + 10m overhead.
    assert requests["cpu"] == 1010
    assert requests["memory"] == 100 * 2**20
    non_zero = pod_requests({"containers": [{}]}, non_zero=True)
    assert non_zero == {"cpu": 100, "memory": 200 * 2**20}


def test_resources_fit_reasons() -> None:
    cache = cache_with([node("n1", cpu="1", memory="1Gi", pods="2")],
                       [pod("a", cpu="600m", memory="512Mi", node_name="n1")])
    info = cache.node_info("n1")
    assert info is not None and info.req_cpu == 600
    fit = Fit(cache)
    assert run_filter(fit, PodInfo(pod("b", cpu="400m")), info) is None
    status = run_filter(fit, PodInfo(pod("c", cpu="500m", memory="600Mi")), info)
    assert status.code == Code.UNSCHEDULABLE
    assert status.reasons == ("Insufficient cpu", "Insufficient memory")
    cache.add_pod(PodInfo(pod("d", node_name="n1")))
    assert run_filter(fit, PodInfo(pod("e")), info).reasons == ("Too many pods",)


def test_least_allocated_and_balanced_scores() -> None:
    cache = cache_with([node("n1", cpu="4", memory="8Gi")], [pod("a", cpu="1", memory="2Gi", node_name="n1")])
    info = cache.node_info("n1")
    assert info is not None
    incoming = PodInfo(pod("b", cpu="1", memory="1Gi"))
    # cpu: (4000-2000)*100/4000 = 50; memory: (8-3)*100/8 = 62 -> (50+62)//2 = 56
    assert Fit(cache).score(CycleState(), incoming, info) == 56
    # fractions 0.5 and 0.375: std 0.0625 -> 93
    assert BalancedAllocation(cache).score(CycleState(), incoming, info) == 93


def test_taints_and_tolerations() -> None:
    cache = cache_with(seed_nodes())
    plugin = TaintToleration(cache)
    dedicated = cache.node_info("ded-prd-01")
    assert dedicated is not None
    status = run_filter(plugin, PodInfo(pod("p")), dedicated)
    assert status.reasons == ("node(s) had untolerated taint {dedicated: processing}",)
    assert status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert run_filter(plugin, PodInfo(pod("p", tolerations=PROCESSING_TOLERATION)), dedicated) is None
    exists = [{"key": "dedicated", "operator": "Exists"}]
    assert run_filter(plugin, PodInfo(pod("p", tolerations=exists)), dedicated) is None
    wrong_effect = [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]
    assert run_filter(plugin, PodInfo(pod("p", tolerations=wrong_effect)), dedicated) is not None


def test_not_ready_node_is_tainted_and_prefer_no_schedule_scores() -> None:
    cache = cache_with([node("down", ready="False"), node("unknown", ready="Unknown"), node("fresh", ready=None),
                        node("soft", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
                        node("clean")])
    plugin = TaintToleration(cache)
    down, unknown = cache.node_info("down"), cache.node_info("unknown")
    assert down is not None and unknown is not None
    assert run_filter(plugin, PodInfo(pod("p")), down).reasons == (
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)
    assert "unreachable" in run_filter(plugin, PodInfo(pod("p")), unknown).reasons[0]
    fresh = cache.node_info("fresh")
    assert fresh is not None and run_filter(plugin, PodInfo(pod("p")), fresh) is None
    tolerate = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]
    assert run_filter(plugin, PodInfo(pod("p", tolerations=tolerate)), down) is None
    nodes = [cache.node_info("soft"), cache.node_info("clean")]
    state = CycleState()
    incoming = PodInfo(pod("p"))
    assert plugin.pre_score(state, incoming, nodes) is None  # type: ignore[arg-type]
    scores = [plugin.score(state, incoming, n) for n in nodes]  # type: ignore[arg-type]
    plugin.normalize(state, incoming, scores)
    assert scores == [0, 100]


@pytest.mark.parametrize(("expression", "fits"), [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
    ({"key": "zone", "operator": "Exists"}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, True),
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
    ({"key": "cores", "operator": "Gt", "values": ["16"]}, False),
])
def test_node_affinity_operators(expression: dict[str, Any], fits: bool) -> None:
    cache = cache_with([node("n1", labels={"zone": "a", "cores": "16"})])
    info = cache.node_info("n1")
    assert info is not None
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}
    status = run_filter(NodeAffinity(cache), PodInfo(pod("p", affinity=affinity)), info)
    assert (status is None) == fits
    if status is not None:
        assert status.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_node_selector_match_fields_and_preferred_score() -> None:
    cache = cache_with([node("n1", labels={"disk": "ssd"}), node("n2")])
    n1, n2 = cache.node_info("n1"), cache.node_info("n2")
    assert n1 is not None and n2 is not None
    plugin = NodeAffinity(cache)
    selector_pod = PodInfo(pod("p", node_selector={"disk": "ssd"}))
    assert run_filter(plugin, selector_pod, n1) is None
    assert run_filter(plugin, selector_pod, n2) is not None
    fields = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}
    assert run_filter(plugin, PodInfo(pod("p", affinity=fields)), n1) is not None
    assert run_filter(plugin, PodInfo(pod("p", affinity=fields)), n2) is None
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    incoming = PodInfo(pod("p", affinity=preferred))
    state = CycleState()
    assert plugin.pre_score(state, incoming, [n1, n2]) is None
    scores = [plugin.score(state, incoming, n) for n in (n1, n2)]
    plugin.normalize(state, incoming, scores)
    assert scores == [100, 0]


def test_host_ports() -> None:
    cache = cache_with([node("n1")], [pod("a", host_port=8080, node_name="n1")])
    info = cache.node_info("n1")
    assert info is not None
    plugin = NodePorts(cache)
    assert run_filter(plugin, PodInfo(pod("b", host_port=8080)), info).reasons == (
        "node(s) didn't have free ports for the requested pod ports",)
    assert run_filter(plugin, PodInfo(pod("c", host_port=8081)), info) is None
    cache.remove_pod("default/a")
    assert run_filter(plugin, PodInfo(pod("b", host_port=8080)), info) is None


def test_required_anti_affinity_and_existing_anti_affinity() -> None:
    web = {"app": "web"}
    cache = cache_with(seed_nodes(), [pod("web-0", labels=web, affinity=anti_affinity(web), node_name="azure-prd-02")])
    plugin = InterPodAffinity(cache)
    incoming = PodInfo(pod("web-1", labels=web, affinity=anti_affinity(web)))
    state = CycleState()
    assert plugin.pre_filter(state, incoming) is None
    taken, free = cache.node_info("azure-prd-02"), cache.node_info("azure-prd-03")
    assert taken is not None and free is not None
    status = plugin.filter(state, incoming, taken)
    assert status is not None and status.reasons == ("node(s) didn't match pod anti-affinity rules",)
    assert plugin.filter(state, incoming, free) is None
    # A pod without affinity, but matched by web-0's anti-affinity, avoids web-0's node too.
    plain = PodInfo(pod("plain", labels=web))
    state = CycleState()
    assert plugin.pre_filter(state, plain) is None
    status = plugin.filter(state, plain, taken)
    assert status is not None and status.reasons == ("node(s) didn't satisfy existing pods anti-affinity rules",)
    # Unrelated pods skip the plugin entirely once no pod has required anti-affinity.
    cache.remove_pod("default/web-0")
    assert plugin.pre_filter(CycleState(), PodInfo(pod("x"))).code == Code.SKIP  # type: ignore[union-attr]


def test_required_pod_affinity_first_pod_and_followers() -> None:
    cache = cache_with([node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"})])
    term = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    plugin = InterPodAffinity(cache)
    n1, n2 = cache.node_info("n1"), cache.node_info("n2")
    assert n1 is not None and n2 is not None
    # The first pod of a self-selecting group may go anywhere.
    first = PodInfo(pod("db-0", labels={"app": "db"}, affinity=term))
    state = CycleState()
    plugin.pre_filter(state, first)
    assert plugin.filter(state, first, n1) is None and plugin.filter(state, first, n2) is None
    # A pod that selects others and matches none fails everywhere.
    other = PodInfo(pod("client", labels={"app": "client"}, affinity=term))
    state = CycleState()
    plugin.pre_filter(state, other)
    status = plugin.filter(state, other, n1)
    assert status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    cache.add_pod(PodInfo(pod("db-0", labels={"app": "db"}, node_name="n2")))
    state = CycleState()
    plugin.pre_filter(state, other)
    assert plugin.filter(state, other, n1) is not None
    assert plugin.filter(state, other, n2) is None


def test_preferred_pod_affinity_score() -> None:
    cache = cache_with([node("n1"), node("n2")], [pod("db", labels={"app": "db"}, node_name="n2")])
    preferred = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                                           "topologyKey": "kubernetes.io/hostname"}}]}}
    plugin = InterPodAffinity(cache)
    incoming = PodInfo(pod("web", affinity=preferred))
    nodes = [cache.node_info("n1"), cache.node_info("n2")]
    state = CycleState()
    assert plugin.pre_score(state, incoming, nodes) is None  # type: ignore[arg-type]
    scores = [plugin.score(state, incoming, n) for n in nodes]  # type: ignore[arg-type]
    plugin.normalize(state, incoming, scores)
    assert scores == [0, 100]


def test_topology_spread_filter_and_min_domains() -> None:
    labels = {"app": "web"}
    nodes = [node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"}), node("nozone")]
    cache = cache_with(nodes, [pod("w0", labels=labels, node_name="a1")])
    constraint = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                  "labelSelector": {"matchLabels": labels}}
    plugin = PodTopologySpread(cache)
    incoming = PodInfo(pod("w1", labels=labels, spread=[constraint]))
    state = CycleState()
    assert plugin.pre_filter(state, incoming) is None
    a1, b1, nozone = (cache.node_info(n) for n in ("a1", "b1", "nozone"))
    assert plugin.filter(state, incoming, a1).reasons == (  # type: ignore[arg-type,union-attr]
        "node(s) didn't match pod topology spread constraints",)
    assert plugin.filter(state, incoming, b1) is None  # type: ignore[arg-type]
    status = plugin.filter(state, incoming, nozone)  # type: ignore[arg-type]
    assert status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.reasons == ("node(s) didn't match pod topology spread constraints (missing required label)",)
    # minDomains 3 with only 2 zones: the global minimum is 0, so a zone with 1 pod is full at maxSkew 1.
    strict = PodInfo(pod("w1", labels=labels, spread=[{**constraint, "minDomains": 3}]))
    state = CycleState()
    plugin.pre_filter(state, strict)
    assert plugin.filter(state, strict, a1) is not None  # type: ignore[arg-type]
    assert plugin.filter(state, strict, b1) is None  # type: ignore[arg-type]


def test_topology_spread_score_prefers_emptier_domain() -> None:
    labels = {"app": "web"}
    cache = cache_with([node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"})],
                       [pod("w0", labels=labels, node_name="a1"), pod("w1", labels=labels, node_name="a1")])
    constraint = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                  "labelSelector": {"matchLabels": labels}}
    plugin = PodTopologySpread(cache)
    incoming = PodInfo(pod("w2", labels=labels, spread=[constraint]))
    assert plugin.pre_filter(CycleState(), incoming).code == Code.SKIP  # type: ignore[union-attr]
    nodes = [cache.node_info("a1"), cache.node_info("b1")]
    state = CycleState()
    assert plugin.pre_score(state, incoming, nodes) is None  # type: ignore[arg-type]
    scores = [plugin.score(state, incoming, n) for n in nodes]  # type: ignore[arg-type]
    plugin.normalize(state, incoming, scores)
    assert scores[1] == 100 and scores[0] < scores[1]


def test_num_feasible_nodes_to_find() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(100) == 100  # 50% of 100, raised to the 100 minimum
    assert num_feasible_nodes_to_find(1000) == 420  # 50 - 8 = 42%
    assert num_feasible_nodes_to_find(5000) == 500  # 50 - 40 = 10%
    assert num_feasible_nodes_to_find(10000) == 500  # floor of 5%


def test_framework_seed_topology_and_message() -> None:
    web = {"app": "web"}
    cache = cache_with(seed_nodes())
    framework = Framework(cache, seed=1)
    placed = []
    for i in range(3):
        info = PodInfo(pod(f"web-{i}", labels=web, affinity=anti_affinity(web)))
        result = framework.schedule(info)
        assert result.node is not None
        cache.assume(info, result.node)
        placed.append(result.node)
    assert sorted(placed) == ["azure-prd-02", "azure-prd-03", "azure-prd-04"]
    result = framework.schedule(PodInfo(pod("web-3", labels=web, affinity=anti_affinity(web))))
    assert result.node is None
    assert result.message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: processing}, "
        "3 node(s) didn't match pod anti-affinity rules. preemption: 0/4 nodes are available: "
        "1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.")
    assert result.diagnosis is not None
    assert result.diagnosis.unschedulable_plugins == {"TaintToleration", "InterPodAffinity"}
    processing = PodInfo(pod("proc", node_selector={"dedicated": "processing"}, tolerations=PROCESSING_TOLERATION))
    assert framework.schedule(processing).node == "ded-prd-01"


def test_framework_spreads_by_least_allocated_and_samples() -> None:
    cache = cache_with([node(f"n{i:03}") for i in range(300)])
    framework = Framework(cache, seed=2)
    result = framework.schedule(PodInfo(pod("p", cpu="100m", memory="100Mi")))
    assert result.feasible == num_feasible_nodes_to_find(300) == 144
    assert framework.next_start_index == 144
    busy = cache.node_info("n000")
    assert busy is not None
    cache.add_pod(PodInfo(pod("big", cpu="3", node_name="n000")))
    framework.next_start_index = 0
    # n000 is busier: least-allocated picks another node.
    assert framework.schedule(PodInfo(pod("q", cpu="100m"))).node != "n000"


def test_batch_paths_match_per_node_paths() -> None:
    nodes = [node(f"n{i}", cpu=str(1 + i % 3), memory=f"{1 + i % 4}Gi", pods=str(2 + i % 2),
                  unschedulable=i % 7 == 0, ready="True" if i % 5 else "False",
                  taints=[{"key": "k", "value": str(i % 2), "effect": "NoSchedule"}] if i % 4 == 0 else None)
             for i in range(60)]
    existing = [pod(f"e{i}", cpu=f"{100 * (i % 9)}m", memory=f"{i % 5}00Mi", node_name=f"n{i % 60}")
                for i in range(90)]
    cache = cache_with(nodes, existing)
    framework = Framework(cache)
    infos = cache.node_infos()
    for incoming in (PodInfo(pod("a", cpu="1500m", memory="512Mi")), PodInfo(pod("b")),
                     PodInfo(pod("c", cpu="200m", tolerations=[{"key": "k", "operator": "Exists"}]))):
        for plugin in framework.filters:
            state = CycleState()
            if hasattr(plugin, "pre_filter"):
                skipped = plugin.pre_filter(state, incoming)
                if skipped is not None and skipped.code == Code.SKIP:
                    continue
            single = {n.name: plugin.filter(state, incoming, n) for n in infos}  # type: ignore[attr-defined]
            statuses: dict[str, Any] = {}
            kept = framework._batch_filters[plugin.name](state, incoming, infos, statuses)
            assert [n.name for n in kept] == [name for name, s in single.items() if s is None], plugin.name
            assert {k: v.reasons for k, v in statuses.items()} == {
                k: v.reasons for k, v in single.items() if v is not None}, plugin.name
        for plugin, _ in framework.scores:
            if hasattr(plugin, "score_nodes"):
                state = CycleState()
                assert plugin.score_nodes(state, incoming, infos) == [  # type: ignore[attr-defined]
                    plugin.score(state, incoming, n) for n in infos]  # type: ignore[attr-defined]
