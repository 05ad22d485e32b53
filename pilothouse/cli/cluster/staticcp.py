"""``controlPlane: static-pods``: kubeadm's init phases in the server host's supervisor.

kubeadm makes the cluster CA and the API server's serving certificate (``certs``), the kubelet's
kubeconfig from that CA (``kubeconfig``), then writes the control plane's manifests into the kubelet's
``staticPodPath`` (``control-plane``) and starts the kubelet, which runs them as static pods before any
API server answers. The same here: :func:`prepare` makes the certificates (``ClusterPKI.ensure``, what
the server itself would do at start), imports the pilothouse image built from this machine's
interpreter (cli/cluster/image.py: nothing can be pulled here) into the host's podman storage, and
writes the server's manifest; the supervisor then writes the agent's kubeconfig and starts the agent
with ``--pod-manifest-path``. The agent starts host-network static pods before it has a pod range
(node IPAM runs in the controller manager this very pod starts), restarts the server's container when
it exits or fails its ``/livez`` probe, and shows it in the API as the mirror pod
``pilothouse-server-<host>`` in kube-system.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pilothouse.cli.cluster.image import SITE, interpreter, write_image_tar
from pilothouse.cli.cluster.layout import Layout
from pilothouse.machinery.topology import STATIC_PODS, Cluster, Host

__all__ = ["IMAGE", "MANIFEST", "is_static_server", "prepare", "server_manifest"]

log = logging.getLogger("pilothouse.cluster")

#: the image's name in the host's storage; IfNotPresent, as kubeadm's manifests (no registry has it)
IMAGE = "localhost/pilothouse:host"
#: the file in the agent's manifest directory
MANIFEST = "pilothouse-server.yaml"
PORT = 6443


def is_static_server(cluster: Cluster, host: Host) -> bool:
    """Whether ``host`` runs the control plane as a static pod of its agent."""
    return host.role == "server" and cluster.control_plane == STATIC_PODS


def prepare(layout: Layout, cluster: Cluster, server_args: list[str]) -> None:
    """kubeadm's certs and control-plane phases: the certificates, the image, the manifest.
    ``server_args``: ``pilothouse server``'s arguments (the same as the supervisor's own child's)."""
    from pilothouse.apiserver.pkidir import ClusterPKI

    host = cluster.server
    data_dir = layout.server_dir(cluster)
    # the serving certificate's names: the host's address and the service range's first address (the
    # ``kubernetes`` Service), as the server makes them itself from --bind-address
    service_ip = str(next(ipaddress.IPv4Network(cluster.network.service_range).hosts()))
    ClusterPKI(data_dir / "pki").ensure(host.address, service_ip)
    _ensure_image(layout, host)
    directory = layout.manifests_dir(host)
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(server_manifest(data_dir, host.address, server_args), sort_keys=False)
    target = directory / MANIFEST
    if not target.exists() or target.read_text() != text:  # an unchanged file keeps the running pod
        tmp = directory / f".{MANIFEST}.tmp"  # a dot file: the agent's file source skips it
        tmp.write_text(text)
        tmp.replace(target)


def _ensure_image(layout: Layout, host: Host) -> None:
    base = layout.podman_base(host)
    if subprocess.run([*base, "image", "exists", IMAGE], capture_output=True, check=False).returncode == 0:
        return
    log.info("building the pilothouse image for %s", host.name)
    with tempfile.TemporaryDirectory(dir=layout.host_dir(host)) as directory:
        tar = write_image_tar(Path(directory) / "image.tar")
        imported = subprocess.run([*base, "import", str(tar), IMAGE], capture_output=True, text=True,
                                  check=False, timeout=600)
    if imported.returncode != 0:
        raise RuntimeError(f"podman import of the pilothouse image: {imported.stderr.strip()}")


def server_manifest(data_dir: Path, address: str, server_args: list[str]) -> dict[str, Any]:
    """The server's static pod, as kubeadm's kube-apiserver.yaml: host network, the data dir a
    hostPath at its own path (the certificates and the admin kubeconfig stay where the host's tools
    read them), a liveness probe on ``/livez`` (which anonymous users may read, as kubelet probes)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pilothouse-server", "namespace": "kube-system",
                     "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
        "spec": {
            "hostNetwork": True,
            "containers": [{
                "name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": [interpreter(), "-m", "pilothouse", *server_args],
                "env": [{"name": "PYTHONPATH", "value": SITE}],
                "volumeMounts": [{"name": "data", "mountPath": str(data_dir)}],
                # kubeadm's numbers: a server may take a while to start on a busy host
                "livenessProbe": {"httpGet": {"host": address, "path": "/livez", "port": PORT, "scheme": "HTTPS"},
                                  "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15,
                                  "failureThreshold": 8},
            }],
            "volumes": [{"name": "data", "hostPath": {"path": str(data_dir), "type": "DirectoryOrCreate"}}],
        },
    }
