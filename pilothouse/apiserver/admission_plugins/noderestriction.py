"""NodeRestriction (``plugin/pkg/admission/noderestriction``): a kubelet writes only its own things.

A ``system:node:<name>`` caller may create, update or delete only its own Node (without its taints
changing or its restricted labels), create and delete only mirror pods bound to itself, update only
its own pods' status, evict only its pods, and write only its own Lease in ``kube-node-lease``. The
caller is the request's (``auth.CURRENT_USER``), as PodSecurity and RBAC escalation read it.
"""

from __future__ import annotations

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.auth import CURRENT_USER
from pilothouse.apiserver.nodeauthz import NODE_LEASE_NAMESPACE, node_identity, pod_references
from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.kinds.types import Object

__all__ = ["NodeRestriction", "forbidden_labels"]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
#: ``kubeletapis.IsKubeletLabel``: the kubernetes.io labels a kubelet may set on its Node.
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
    "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in_domain(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def _is_kubelet_label(label: str) -> bool:
    domain = label.partition("/")[0] if "/" in label else ""
    return label in KUBELET_LABELS or any(_in_domain(domain, ns) for ns in KUBELET_LABEL_NAMESPACES)


def forbidden_labels(new: dict[str, str], old: dict[str, str]) -> list[str]:
    """``getForbiddenLabels`` over the labels added, changed or removed, sorted."""
    modified = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    forbidden = set()
    for label in modified:
        domain = label.partition("/")[0] if "/" in label else ""
        # node-restriction.kubernetes.io is under kubernetes.io and holds no kubelet label.
        if (_in_domain(domain, "kubernetes.io") or _in_domain(domain, "k8s.io")) and not _is_kubelet_label(label):
            forbidden.add(label)
    return sorted(forbidden)


def _labels(obj: Object | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _node_name_of(obj: Object | None) -> str:
    return str(((obj or {}).get("spec") or {}).get("nodeName") or "")


class NodeRestriction(Plugin):
    name = "NodeRestriction"

    async def validate(self, attrs: Attributes) -> None:
        """A validating plugin, as Kubernetes' (it sees deletes too)."""
        user = CURRENT_USER.get()
        is_node, node = node_identity(user)
        if not is_node:
            return
        if not node:
            raise Refusal(f'could not determine node from user "{user.name if user else ""}"')
        group, plural = attrs.resource.group, attrs.resource.plural
        if (group, plural) == ("", "nodes"):
            self._node(node, attrs)
        elif (group, plural) == ("", "pods"):
            self._pod(node, attrs)
        elif (group, plural) == ("coordination.k8s.io", "leases"):
            self._lease(node, attrs)

    @staticmethod
    def _node(node: str, attrs: Attributes) -> None:
        requested = attrs.obj["metadata"].get("name", "")
        if requested != node:
            raise Refusal(f'node "{node}" is not allowed to modify node "{requested}"')
        spec = attrs.obj.get("spec") or {}
        old_spec = (attrs.old or {}).get("spec") or {}
        if attrs.operation == "CREATE":
            if spec.get("configSource") is not None:
                raise Refusal(f'node "{node}" is not allowed to create pods with a non-nil configSource')
            labels = forbidden_labels(_labels(attrs.obj), {})
            if labels:
                raise Refusal(f'node "{node}" is not allowed to set the following labels: {", ".join(labels)}')
        if attrs.operation == "UPDATE":
            if spec.get("configSource") is not None and spec.get("configSource") != old_spec.get("configSource"):
                raise Refusal(f'node "{node}" is not allowed to update configSource to a new non-nil configSource')
            if (spec.get("taints") or []) != (old_spec.get("taints") or []):
                raise Refusal(f'node "{node}" is not allowed to modify taints')
            labels = forbidden_labels(_labels(attrs.obj), _labels(attrs.old))
            if labels:
                # Kubernetes' message has no subject here (admission.go's own wording).
                raise Refusal(f'is not allowed to modify labels: {", ".join(labels)}')

    @staticmethod
    def _pod(node: str, attrs: Attributes) -> None:
        if attrs.subresource == "status":
            if attrs.operation != "UPDATE":
                raise Refusal(f'unexpected operation "{attrs.operation}"')
            if _node_name_of(attrs.old) != node:
                raise Refusal(f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
            if _labels(attrs.obj) != _labels(attrs.old):
                raise Refusal(f'node "{node}" cannot update labels through pod status')
            return
        if attrs.subresource == "eviction":
            return  # the evicted pod's node is not checked yet (admitPodEviction)
        if attrs.subresource:
            raise Refusal(f"unexpected pod subresource \"{attrs.subresource}\", only 'status' and 'eviction' "
                          "are allowed")
        if attrs.operation == "CREATE":
            _mirror_pod_create(node, attrs.obj)
        elif attrs.operation == "DELETE":
            if _node_name_of(attrs.old) != node:
                raise Refusal(f'node "{node}" can only delete pods with spec.nodeName set to itself')
        else:
            raise Refusal(f'unexpected operation "{attrs.operation}", node "{node}" can only create and delete '
                          "mirror pods")

    @staticmethod
    def _lease(node: str, attrs: Attributes) -> None:
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            raise Refusal(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if attrs.obj["metadata"].get("name") != node:
            raise Refusal("can only access node lease with the same name as the requesting node")


def _mirror_pod_create(node: str, pod: Object) -> None:
    """``admitPodCreate``: only mirror pods, bound to this node, owned by it, referencing nothing."""
    metadata = pod.get("metadata") or {}
    if MIRROR_ANNOTATION not in (metadata.get("annotations") or {}):
        raise Refusal(f'pod does not have "{MIRROR_ANNOTATION}" annotation, node "{node}" can only create '
                      "mirror pods")
    if _node_name_of(pod) != node:
        raise Refusal(f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = metadata.get("ownerReferences") or []
    if len(owners) > 1:
        raise Refusal(f'node "{node}" can only create pods with a single owner reference set to itself')
    owner = owners[0] if owners else {}
    if not (owner.get("apiVersion") == "v1" and owner.get("kind") == "Node" and owner.get("name") == node):
        raise Refusal(f'node "{node}" can only create pods with an owner reference set to itself')
    if not owner.get("controller"):
        raise Refusal(f'node "{node}" can only create pods with a controller owner reference set to itself')
    if owner.get("blockOwnerDeletion"):
        raise Refusal(f'node "{node}" must not set blockOwnerDeletion on an owner reference')
    spec = pod.get("spec") or {}
    if spec.get("serviceAccountName"):
        raise Refusal(f'node "{node}" can not create pods that reference a service account')
    kinds = {kind for kind, _, _ in pod_references(pod)}
    for kind in ("secrets", "configmaps", "persistentvolumeclaims"):
        if kind in kinds:
            raise Refusal(f'node "{node}" can not create pods that reference {kind}')
