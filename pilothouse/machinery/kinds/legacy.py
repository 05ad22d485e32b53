"""The seed's legacy ``v1beta1`` ``Minion``, as far as its ``register_node.sh`` needs it.

Kubernetes 0.x registered nodes as ``Minion`` in ``v1beta1``, with the object meta flat at the top
(``id``, ``labels``, ``annotations``, ...) instead of under ``metadata``. The seed's manual
registration still posts such a document with ``kubectl create -s URL -f -``. Real kubectl 1.32 maps
``apiVersion: v1beta1``/``kind: Minion`` to a resource through discovery, so the row below must be
served (create only) for the script to get as far as a POST to ``/api/v1beta1/minions``; what is
stored is a v1 Node. The row is served only when asked for (``--runtime-config api/v1beta1=true``,
kube-apiserver's flag for old API versions), so a default server's discovery stays a stock 1.32 one.
"""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType, Strategy
from pilothouse.machinery.meta import Object

__all__ = ["MINION", "minion_from_node", "node_from_minion"]


MINION = ResourceType("", "v1beta1", "Minion", "minions", False, Strategy(), verbs=("create",))

# v1beta1 field -> where the v1 Node keeps it. ``hostIP``, ``resources`` and ``status`` were status,
# which a create ignores in v1 as well.
_META = ("labels", "annotations", "generateName")
_SPEC = {"podCIDR": "podCIDR", "unschedulable": "unschedulable", "externalID": "externalID"}


def node_from_minion(minion: Object) -> Object:
    metadata: Object = {"name": minion.get("id") or ""}
    metadata.update({key: minion[key] for key in _META if minion.get(key)})
    spec = {target: minion[source] for source, target in _SPEC.items() if minion.get(source) not in (None, "")}
    return {"apiVersion": "v1", "kind": "Node", "metadata": metadata, "spec": spec}


def minion_from_node(node: Object) -> Object:
    """The created Node seen as v1beta1 did (``metadata`` kept too, for kubectl's ``minion/<name> created``)."""
    metadata = node.get("metadata") or {}
    minion: Object = {"kind": "Minion", "apiVersion": "v1beta1", "id": metadata.get("name", ""),
                      "uid": metadata.get("uid"), "creationTimestamp": metadata.get("creationTimestamp"),
                      "resourceVersion": metadata.get("resourceVersion"), "metadata": metadata}
    minion.update({key: metadata[key] for key in _META if metadata.get(key)})
    minion.update({source: node["spec"][target] for source, target in _SPEC.items()
                   if (node.get("spec") or {}).get(target) not in (None, "")})
    return minion
