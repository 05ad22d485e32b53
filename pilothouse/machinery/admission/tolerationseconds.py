"""DefaultTolerationSeconds (plugin/pkg/admission/defaulttolerationseconds): every pod tolerates a
``not-ready`` or ``unreachable`` node for 300 seconds before the node lifecycle controller evicts
it, unless it already tolerates that taint (a toleration with an empty key or effect counts).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_SECONDS", "NOT_READY", "UNREACHABLE", "admit_pod"]

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


def _tolerates(tolerations: list[dict[str, Any]], taint: str) -> bool:
    return any((t.get("key") or "") in (taint, "") and (t.get("effect") or "") in ("NoExecute", "")
               for t in tolerations)


def admit_pod(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    added = [{"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_SECONDS}
             for taint in (NOT_READY, UNREACHABLE) if not _tolerates(tolerations, taint)]
    if added:
        spec["tolerations"] = tolerations + added
