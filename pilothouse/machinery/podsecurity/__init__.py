"""Pod Security admission's pure half: the Pod Security Standards checks (``checks``), levels,
versions and namespace policies (``policy``), and the admission decisions (``admission``), as
k8s.io/pod-security-admission 1.32 makes them. The API server's PodSecurity plugin
(``apiserver/admission_plugins/podsecurity.py``) feeds them namespaces and pods.
"""

from __future__ import annotations

from pilothouse.machinery.podsecurity.admission import (
    IGNORED_POD_SUBRESOURCES,
    POD_SPEC_RESOURCES,
    Verdict,
    enforce_tightened,
    evaluate_pod,
    existing_pods_warnings,
    pod_spec_of,
    significant_pod_update,
)
from pilothouse.machinery.podsecurity.policy import LevelVersion, Policy, aggregate, evaluate, parse_policy

__all__ = ["IGNORED_POD_SUBRESOURCES", "POD_SPEC_RESOURCES", "LevelVersion", "Policy", "Verdict", "aggregate",
           "enforce_tightened", "evaluate", "evaluate_pod", "existing_pods_warnings", "parse_policy",
           "pod_spec_of", "significant_pod_update"]
