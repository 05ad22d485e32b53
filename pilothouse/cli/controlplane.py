"""kubeadm's init phases, shared by ``cluster create`` (cli/cluster/staticcp.py) and real server hosts
(``pilothouse control-plane init``, run by the unit cli/hostsetup/plan.py writes).

``certs``: the cluster CA and the API server's serving certificate (``ClusterPKI.ensure``, what the
server itself does at start). ``kubeconfig``: the agent's credentials issued from that CA before any
server answers (kubeadm's kubelet.conf). ``control-plane``: the server's static-pod manifest, and
the image it names imported into the host's podman storage, built from this machine's interpreter
(cli/cluster/image.py). One module so that both callers make the same pod and the same credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pilothouse.cli.cluster.image import SITE, write_image_tar
from pilothouse.machinery.rbac.bootstrappolicy import NETWORK_POLICY_USER

__all__ = ["MANIFEST", "PORT", "ensure_certs", "ensure_image", "manifest_text", "server_manifest",
           "write_kubeconfig", "write_manifest", "write_node_kubeconfigs"]

log = logging.getLogger("pilothouse.cluster")

#: the file in the agent's manifest directory
MANIFEST = "pilothouse-server.yaml"
PORT = 6443


def ensure_certs(data_dir: Path, address: str, service_range: str) -> None:
    """The serving certificate's names: the host's address and the service range's first address (the
    ``kubernetes`` Service), as the server makes them itself from --bind-address."""
    from pilothouse.apiserver.pkidir import ClusterPKI

    service_ip = str(next(ipaddress.IPv4Network(service_range).hosts()))
    ClusterPKI(data_dir / "pki").ensure(address, service_ip)


def write_kubeconfig(pki_dir: Path, server_url: str, path: Path, user: str, groups: Sequence[str]) -> None:
    """A kubeconfig for ``user`` with a certificate from the cluster CA, unless one is there."""
    from pilothouse.apiserver.pkidir import ClusterPKI
    from pilothouse.machinery.kubeconfig import build_kubeconfig

    if path.exists():
        return
    cluster_pki = ClusterPKI(pki_dir)
    credentials = cluster_pki.issue_client(user, list(groups))
    document = build_kubeconfig(server_url, user=user, ca_pem=cluster_pki.ca_cert_path.read_bytes(),
                                cert_pem=credentials.cert_pem, key_pem=credentials.key_pem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def write_node_kubeconfigs(pki_dir: Path, server_url: str, node_name: str, *, agent: Path, proxy: Path,
                           network_policy: Path) -> None:
    """kubeadm's kubelet.conf (the Node authorizer's ``system:node:<host>``), and k3s's kube-proxy
    credentials (``system:kube-proxy``, bound to system:node-proxier) for the agent's embedded proxy, and
    the embedded NetworkPolicy controller's (as ``pilothouse up`` gives it, see up.py)."""
    write_kubeconfig(pki_dir, server_url, agent, f"system:node:{node_name}", ["system:nodes"])
    write_kubeconfig(pki_dir, server_url, proxy, "system:kube-proxy", [])
    write_kubeconfig(pki_dir, server_url, network_policy, NETWORK_POLICY_USER, [])


def ensure_image(podman: Sequence[str], image: str, scratch: Path) -> None:
    """``image`` in the storage ``podman`` (a command prefix) uses, built and imported when missing."""
    if subprocess.run([*podman, "image", "exists", image], capture_output=True, check=False).returncode == 0:
        return
    log.info("building the pilothouse image %s", image)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as directory:
        tar = write_image_tar(Path(directory) / "image.tar")
        imported = subprocess.run([*podman, "import", str(tar), image], capture_output=True, text=True,
                                  check=False, timeout=600)
    if imported.returncode != 0:
        raise RuntimeError(f"podman import of the pilothouse image: {imported.stderr.strip()}")


def server_manifest(data_dir: str, address: str, python: str, server_args: Sequence[str], image: str,
                    port: int = PORT) -> dict[str, Any]:
    """The server's static pod, as kubeadm's kube-apiserver.yaml: host network, the data dir a
    hostPath at its own path (the certificates and the admin kubeconfig stay where the host's tools
    read them), a liveness probe on ``/livez`` (which anonymous users may read, as kubelet probes).
    ``python``: the interpreter's path inside the image; ``server_args`` start with ``server``."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pilothouse-server", "namespace": "kube-system",
                     "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
        "spec": {
            "hostNetwork": True,
            "containers": [{
                # IfNotPresent, as kubeadm's manifests: the image is made on the host, no registry has it
                "name": "server", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": [python, "-m", "pilothouse", *server_args],
                "env": [{"name": "PYTHONPATH", "value": SITE}],
                "volumeMounts": [{"name": "data", "mountPath": data_dir}],
                # kubeadm's numbers: a server may take a while to start on a busy host
                "livenessProbe": {"httpGet": {"host": address, "path": "/livez", "port": port, "scheme": "HTTPS"},
                                  "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15,
                                  "failureThreshold": 8},
            }],
            "volumes": [{"name": "data", "hostPath": {"path": data_dir, "type": "DirectoryOrCreate"}}],
        },
    }


def manifest_text(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False)


def write_manifest(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MANIFEST
    if not target.exists() or target.read_text() != text:  # an unchanged file keeps the running pod
        tmp = directory / f".{MANIFEST}.tmp"  # a dot file: the agent's file source skips it
        tmp.write_text(text)
        tmp.replace(target)
