"""Kubeconfig documents as kubeadm writes them (``admin.conf``, ``scheduler.conf``, ...): one cluster,
one user, one current context, credentials embedded as base64 ``*-data`` fields so the file stands
alone. Pure data; writing the file is the caller's business."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["build_kubeconfig"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_kubeconfig(server: str, *, cluster: str = "pilothouse", user: str = "admin",
                     ca_pem: bytes | None = None, cert_pem: bytes | None = None, key_pem: bytes | None = None,
                     namespace: str | None = "default") -> dict[str, Any]:
    cluster_entry: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster_entry["certificate-authority-data"] = _b64(ca_pem)
    user_entry: dict[str, Any] = {}
    if cert_pem is not None and key_pem is not None:
        user_entry = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    name = cluster if user == "admin" else f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }
