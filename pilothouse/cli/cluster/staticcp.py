"""``controlPlane: static-pods``: kubeadm's init phases in the server host's supervisor.

kubeadm makes the cluster CA and the API server's serving certificate (``certs``), the kubelet's
kubeconfig from that CA (``kubeconfig``), then writes the control plane's manifests into the kubelet's
``staticPodPath`` (``control-plane``) and starts the kubelet, which runs them as static pods before any
API server answers. The same here (the phases live in cli/controlplane.py, shared with real server
hosts' ``pilothouse control-plane init``): :func:`prepare` makes the certificates (``ClusterPKI.ensure``, what
the server itself would do at start), imports the pilothouse image built from this machine's
interpreter (cli/cluster/image.py: nothing can be pulled here) into the host's podman storage, and
writes the server's manifest; the supervisor then writes the agent's kubeconfig and starts the agent
with ``--pod-manifest-path``. The agent starts host-network static pods before it has a pod range
(node IPAM runs in the controller manager this very pod starts), restarts the server's container when
it exits or fails its ``/livez`` probe, and shows it in the API as the mirror pod
``pilothouse-server-<host>`` in kube-system.
"""

from __future__ import annotations

from pilothouse.cli.cluster.image import interpreter
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.controlplane import (
    MANIFEST,
    ensure_certs,
    ensure_image,
    manifest_text,
    server_manifest,
    write_manifest,
)
from pilothouse.machinery.topology import STATIC_PODS, Cluster, Host

__all__ = ["IMAGE", "MANIFEST", "is_static_server", "prepare"]

#: the image's name in the host's storage
IMAGE = "localhost/pilothouse:host"


def is_static_server(cluster: Cluster, host: Host) -> bool:
    """Whether ``host`` runs the control plane as a static pod of its agent."""
    return host.role == "server" and cluster.control_plane == STATIC_PODS


def prepare(layout: Layout, cluster: Cluster, server_args: list[str]) -> None:
    """kubeadm's certs and control-plane phases: the certificates, the image, the manifest.
    ``server_args``: ``pilothouse server``'s arguments (the same as the supervisor's own child's)."""
    host = cluster.server
    data_dir = layout.server_dir(cluster)
    ensure_certs(data_dir, host.address, cluster.network.service_range)
    ensure_image(layout.podman_base(host), IMAGE, layout.host_dir(host))
    manifest = server_manifest(str(data_dir), host.address, interpreter(), server_args, IMAGE)
    write_manifest(layout.manifests_dir(host), manifest_text(manifest))
