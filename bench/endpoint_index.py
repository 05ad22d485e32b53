"""What a pod event and a Service sync cost the EndpointSlice/Endpoints controllers' lookups at
issue 16's scale (10,000 Services x 15 pods), in-process: the indexed ``ServiceIndex`` against the
scans it replaced (every Service per pod event, every pod per sync).

    .venv/bin/python bench/endpoint_index.py [--services 10000] [--pods-per-service 15]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pilothouse.client.informer import Informer, object_key
from pilothouse.components.controllers.endpoints import SERVICES, ServiceIndex, service_pods
from pilothouse.components.controllers.podcontrol import PODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods-per-service", type=int, default=15)
    args = parser.parse_args()
    services = Informer(None, SERVICES)  # type: ignore[arg-type] - caches only, never started
    pods = Informer(None, PODS)  # type: ignore[arg-type]
    index = ServiceIndex(services, pods)
    for i in range(args.services):
        service: dict[str, Any] = {"metadata": {"name": f"svc-{i}", "namespace": "default", "resourceVersion": "1"},
                                   "spec": {"selector": {"app": f"svc-{i}"}}}
        services._upsert(object_key(service), service)
        for j in range(args.pods_per_service):
            pod = {"metadata": {"name": f"svc-{i}-{j}", "namespace": "default", "resourceVersion": "1",
                                "labels": {"app": f"svc-{i}", "pod-template-hash": f"h{i}"}}}
            pods._upsert(object_key(pod), pod)
    sample_pods = pods.list()[:: max(1, len(pods.cache) // 200)][:200]
    sample_services = services.list()[:: max(1, len(services.cache) // 200)][:200]

    def timed(label: str, calls: int, fn: Any) -> None:
        started = time.process_time()
        fn()
        print(f"{label:<52} {1e3 * (time.process_time() - started) / calls:9.3f} ms per call")

    def old_keys_for(pod: dict[str, Any]) -> set[str]:
        return {object_key(s) for s in services.list() if service_pods(s, [pod])}

    print(f"{args.services} Services, {len(pods.cache)} pods")
    timed("pod event -> its Services: scan (before)", 5, lambda: [old_keys_for(p) for p in sample_pods[:5]])
    timed("pod event -> its Services: index (after)", len(sample_pods),
          lambda: [index.keys_for(p) for p in sample_pods])
    timed("sync -> the Service's pods: scan (before)", 5,
          lambda: [service_pods(s, pods.list()) for s in sample_services[:5]])
    timed("sync -> the Service's pods: index (after)", len(sample_services),
          lambda: [index.pods_of(s) for s in sample_services])
    assert all(index.keys_for(p) == old_keys_for(p) for p in sample_pods[:5])
    def names(found: list[dict[str, Any]]) -> list[str]:
        return sorted(object_key(p) for p in found)
    assert all(names(index.pods_of(s)) == names(service_pods(s, pods.list())) for s in sample_services[:3])


if __name__ == "__main__":
    main()
