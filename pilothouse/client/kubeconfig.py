"""Where a component's API server is and how to prove who it is: a kubeconfig, as every Kubernetes
component takes one (``--kubeconfig``), read into a :class:`ClientConfig`.

Handles what kubeadm's and pilothouse's kubeconfigs hold: the server URL, the CA as
``certificate-authority(-data)``, a client certificate as ``client-certificate(-data)`` and
``client-key(-data)``, or a ``token``, and ``insecure-skip-tls-verify``.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ClientConfig", "client_config", "load_kubeconfig"]


@dataclass(frozen=True)
class ClientConfig:
    """An API server URL and the TLS context (CA, client certificate) or token to reach it with."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    #: The cluster's CA (PEM) when the kubeconfig names one: an agent trusts it for client certificates.
    ca_pem: bytes | None = None


def _named(entries: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry.get(what) or {}
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def _material(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    """``key-data`` (base64) or ``key`` (a path, relative to the kubeconfig's directory)."""
    if section.get(f"{key}-data"):
        return base64.b64decode(str(section[f"{key}-data"]))
    if section.get(key):
        return (base / str(section[key])).read_bytes()
    return None


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    ca = _material(cluster, "certificate-authority", base)
    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _material(user, "client-certificate", base)
    key = _material(user, "client-key", base)
    if cert and key:
        # ssl loads a certificate chain from files only: write both to a private directory for the
        # moment of loading (the context keeps them in memory afterwards).
        with tempfile.TemporaryDirectory(prefix="pilothouse-kubeconfig-") as directory:
            cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
            for path, data in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            context.load_cert_chain(cert_path, key_path)
    return context


def load_kubeconfig(path: str | Path, context: str | None = None) -> ClientConfig:
    path = Path(path).expanduser()
    document = yaml.safe_load(path.read_text()) or {}
    name = context or document.get("current-context")
    chosen = _named(document.get("contexts") or [], str(name), "context")
    cluster = _named(document.get("clusters") or [], chosen.get("cluster", ""), "cluster")
    user = _named(document.get("users") or [], chosen.get("user", ""), "user")
    server = str(cluster.get("server", ""))
    if not server:
        raise ValueError(f"{path}: the cluster has no server URL")
    ssl_context = _ssl_context(cluster, user, path.parent) if server.startswith("https:") else None
    ca_pem = _material(cluster, "certificate-authority", path.parent)
    return ClientConfig(server, ssl_context, user.get("token"), ca_pem)


def client_config(server: str | None, kubeconfig: str | None) -> ClientConfig:
    """What ``--server`` and ``--kubeconfig`` say together: the kubeconfig's credentials, its URL unless
    ``--server`` overrides it (as kube-scheduler's ``--master`` does)."""
    if kubeconfig:
        loaded = load_kubeconfig(kubeconfig)
        return ClientConfig(server, loaded.ssl_context, loaded.token, loaded.ca_pem) if server else loaded
    if not server:
        raise ValueError("give --server or --kubeconfig")
    return ClientConfig(server)
