"""The Node authorizer's pod graph keeps edges, not pods (kube-apiserver's graph populator): what it
holds for a pod follows the pod through binding, updates, deletion and a relist."""

from __future__ import annotations

from typing import Any, cast

from pilothouse.apiserver.nodeauthz import _PodGraph, pod_references
from pilothouse.store.interface import Store

PREFIX = "/registry/core/pods/"


def pod(name: str, node: str | None, secret: str = "db", namespace: str = "ns") -> dict[str, Any]:
    spec: dict[str, Any] = {"serviceAccountName": "default", "containers": [
        {"name": "c", "image": "i", "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret}}}]}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def graph() -> _PodGraph:
    return _PodGraph(cast(Store, None))  # fed by hand: never started, the store is not read


def test_graph_keeps_no_pods_and_nothing_for_pending_ones() -> None:
    g = graph()
    g._record(PREFIX + "ns/pending", 1, pod("pending", None))
    g._record(PREFIX + "ns/bound", 2, pod("bound", "n1"))
    assert not any(g._buckets.values()) and not g._revisions  # no pod objects, no per-pod revisions
    assert list(g._edges) == [PREFIX + "ns/bound"]
    assert g.uses("n1", ("secrets", "ns", "db")) and g.uses("n1", ("serviceaccounts", "ns", "default"))
    assert not g.uses("n2", ("secrets", "ns", "db"))
    assert g.node_of("ns", "bound") == "n1" and g.node_of("ns", "pending") is None


def test_binding_update_and_delete_move_the_edges() -> None:
    g = graph()
    key = PREFIX + "ns/p"
    g._record(key, 1, pod("p", None))
    assert not g.uses("n1", ("secrets", "ns", "db"))
    g._record(key, 2, pod("p", "n1"))  # bound
    assert g.uses("n1", ("secrets", "ns", "db"))
    g._record(key, 3, pod("p", "n1", secret="other"))  # an edit of its references
    assert not g.uses("n1", ("secrets", "ns", "db")) and g.uses("n1", ("secrets", "ns", "other"))
    g._record(key, 2, pod("p", "n1"))  # an older copy (read while unsynced) changes nothing
    assert g.uses("n1", ("secrets", "ns", "other"))
    g._record(key, 4, None)
    assert not g.uses("n1", ("secrets", "ns", "other"))
    assert g.references["n1"] == {} and g._sets == {} and g._edges == {}


def test_replicas_share_one_reference_set_and_it_is_freed_with_the_last() -> None:
    g = graph()
    for index in range(50):
        g._record(f"{PREFIX}ns/r{index}", index + 1, pod(f"r{index}", f"n{index % 3}"))
    assert len(g._sets) == 1
    shared = {id(edge[1]) for edge in g._edges.values()}
    assert len(shared) == 1
    assert g.references["n0"][("secrets", "ns", "db")] == 17
    for index in range(50):
        g._record(f"{PREFIX}ns/r{index}", 100 + index, None)
    assert g._sets == {} and all(not counter for counter in g.references.values())


def test_relist_forgets_what_the_watch_delivered() -> None:
    g = graph()
    g._record(PREFIX + "ns/gone", 1, pod("gone", "n1", secret="old"))
    g._reset()  # the follower relists: a pod deleted while the watch was down leaves no edge
    g._record(PREFIX + "ns/kept", 5, pod("kept", "n1"))
    assert not g.uses("n1", ("secrets", "ns", "old")) and g.uses("n1", ("secrets", "ns", "db"))


def test_resource_claims_are_references() -> None:
    obj = pod("p", "n1")
    obj["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimName": "shared-gpu"},
                                     {"name": "tmpl", "resourceClaimTemplateName": "t"}]
    obj["status"] = {"resourceClaimStatuses": [{"name": "tmpl", "resourceClaimName": "p-tmpl-x7k2"}]}
    refs = pod_references(obj)
    assert ("resourceclaims", "ns", "shared-gpu") in refs and ("resourceclaims", "ns", "p-tmpl-x7k2") in refs


def test_claims_and_volumes_keep_their_edges_only() -> None:
    from pilothouse.apiserver.nodeauthz import NodeAuthorizer

    authorizer = NodeAuthorizer(cast(Store, None))
    claims, volumes = authorizer.claims, authorizer.volumes
    claims._record(claims.prefix + "ns/data", 1, {"metadata": {"name": "data", "namespace": "ns"},
                                                  "spec": {"volumeName": "pv-a"}})
    claims._record(claims.prefix + "ns/pending", 2, {"metadata": {"name": "pending", "namespace": "ns"},
                                                     "spec": {}})
    volumes._record(volumes.prefix + "pv-a", 3, {"metadata": {"name": "pv-a"}, "spec": {
        "csi": {"driver": "d", "nodePublishSecretRef": {"namespace": "ns", "name": "creds"}}}})
    assert not any(claims._buckets.values()) and not any(volumes._buckets.values())
    assert claims.edge("ns", "data") == "pv-a" and claims.edge("ns", "pending") is None
    assert volumes.edge("", "pv-a") == {("ns", "creds")}
    claims._record(claims.prefix + "ns/data", 4, None)
    assert claims.edge("ns", "data") is None
