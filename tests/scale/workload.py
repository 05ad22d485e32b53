"""The density scenario's workload, shared by tests/scale/test_density.py and bench/density.py."""

from __future__ import annotations

from typing import Any

__all__ = ["deployment"]


def deployment(name: str) -> dict[str, Any]:
    """A Deployment at 0 replicas (to be scaled through /scale) of one small container."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}}
