"""Memory the Node authorizer's pod graph holds for N pods (``--pods 20000``).

Feeds the graph the pods a watch would deliver (most bound to one of ``--nodes`` nodes, some
pending) and prints what tracemalloc sees retained, so a change to the graph's bookkeeping can be
compared before and after on the same input. No server: the graph is what is measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from typing import Any, cast

from pilothouse.apiserver.nodeauthz import _PodGraph
from pilothouse.store.interface import Store

__all__ = ["main", "pod"]


def pod(index: int, nodes: int) -> dict[str, Any]:
    """A pod as a Deployment makes it: a service account, a projected token volume, an env secret."""
    namespace = f"team-{index % 20}"
    spec: dict[str, Any] = {
        "serviceAccountName": "default",
        "containers": [{"name": "app", "image": "registry.example/app:1.0",
                        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets"}]}],
        "volumes": [{"name": "kube-api-access", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
    }
    if index % 10:  # one in ten still pending
        spec["nodeName"] = f"node-{index % nodes}"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"app-{index}", "namespace": namespace, "uid": f"uid-{index:08d}",
                         "resourceVersion": str(index + 1), "labels": {"app": "app", "tier": "web"},
                         "annotations": {"example.com/owner": "team"}},
            "spec": spec, "status": {"phase": "Running", "podIP": f"10.0.{index // 250}.{index % 250}"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    graph = _PodGraph(cast(Store, None))  # never started: the store is not read
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(args.pods):
        obj = pod(index, args.nodes)
        metadata = obj["metadata"]
        graph._record(f"{graph.prefix}{metadata['namespace']}/{metadata['name']}", index + 1, obj)
        del obj  # the decoded pod is the watch's; only what the graph keeps should stay
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(json.dumps({"pods": args.pods, "nodes": args.nodes, "retained_bytes": retained,
                      "bytes_per_pod": round(retained / args.pods)}))


if __name__ == "__main__":
    main()
