"""The Node authorizer (``plugin/pkg/auth/authorizer/node``): kubelets read only what their pods use.

A request from ``system:node:<name>`` in ``system:nodes`` for secrets, configmaps, PVCs, PVs,
service-account tokens or node leases is decided here against a graph of node → pods → the objects
those pods reference, kept from watch-fed caches (no store read per request), as Kubernetes' graph
is fed by informers. Anything else is checked against the ``system:node`` ClusterRole's rules
(``NodeRules()``): the 1.32 bootstrap binding of that role has no subjects, this authorizer grants
it. What it does not allow it has no opinion on, so RBAC decides next.

Not yet: the 1.32 ``AuthorizeNodeWithSelectors`` narrowing of nodes and pods reads (its own Node
only, pods by a ``spec.nodeName`` field selector) needs the field selector in ``RequestInfo``; until
then nodes and pods follow the static rules, as with that feature gate off.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.rbacauthz import CachedAuthorizer, NotifyingCache, rule_allows_request
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.rbac import bootstrappolicy
from pilothouse.store.interface import Store

__all__ = ["NODES_GROUP", "NodeAuthorizer", "node_identity", "pod_references"]

NODES_GROUP = "system:nodes"
_NODE_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

Ref = tuple[str, str, str]  # (kind, namespace, name)


def node_identity(user: UserInfo | None) -> tuple[bool, str]:
    """``NodeIdentity``: (is a node, its name); a node user without a name is a node of no name."""
    if user is None or NODES_GROUP not in user.groups or not user.name.startswith(_NODE_PREFIX):
        return False, ""
    return True, user.name[len(_NODE_PREFIX):]


def pod_references(pod: Object) -> set[Ref]:
    """The secrets, configmaps, PVCs and service account a pod uses (the graph populator's edges)."""
    namespace = pod["metadata"].get("namespace", "")
    pod_name = pod["metadata"].get("name", "")
    spec = pod.get("spec") or {}
    refs: set[Ref] = set()

    def add(kind: str, name: str | None) -> None:
        if name:
            refs.add((kind, namespace, name))

    add("serviceaccounts", spec.get("serviceAccountName"))
    for secret in spec.get("imagePullSecrets") or ():
        add("secrets", secret.get("name"))
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ()),
                      *(spec.get("ephemeralContainers") or ())]:
        for source in container.get("envFrom") or ():
            add("secrets", (source.get("secretRef") or {}).get("name"))
            add("configmaps", (source.get("configMapRef") or {}).get("name"))
        for env in container.get("env") or ():
            value_from = env.get("valueFrom") or {}
            add("secrets", (value_from.get("secretKeyRef") or {}).get("name"))
            add("configmaps", (value_from.get("configMapKeyRef") or {}).get("name"))
    for volume in spec.get("volumes") or ():
        add("secrets", (volume.get("secret") or {}).get("secretName"))
        add("configmaps", (volume.get("configMap") or {}).get("name"))
        add("persistentvolumeclaims", (volume.get("persistentVolumeClaim") or {}).get("claimName"))
        if volume.get("ephemeral"):
            add("persistentvolumeclaims", f"{pod_name}-{volume.get('name')}")
        for source in (volume.get("projected") or {}).get("sources") or ():
            add("secrets", (source.get("secret") or {}).get("name"))
            add("configmaps", (source.get("configMap") or {}).get("name"))
        for key in ("azureFile", "cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "storageos", "iscsi", "csi"):
            ref = (volume.get(key) or {})
            add("secrets", ref.get("secretName") or (ref.get("secretRef") or {}).get("name")
                or (ref.get("nodePublishSecretRef") or {}).get("name"))
    return refs


class _PodGraph(NotifyingCache):
    """The pods cache that keeps, per node, how many of its pods reference each object."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, "/registry/core/pods/", lambda: None)
        self._edges: dict[str, tuple[str, set[Ref]]] = {}
        self.references: dict[str, Counter[Ref]] = {}

    def _record(self, key: str, revision: int, obj: Object | None) -> None:
        if self._revisions.get(key, 0) > revision:
            return
        super()._record(key, revision, obj)
        old = self._edges.pop(key, None)
        if old is not None:
            self.references[old[0]].subtract(old[1])
        node = ((obj or {}).get("spec") or {}).get("nodeName")
        if obj is not None and node:
            refs = pod_references(obj)
            self._edges[key] = (node, refs)
            self.references.setdefault(node, Counter()).update(refs)

    def uses(self, node: str, ref: Ref) -> bool:
        return self.references.get(node, Counter())[ref] > 0

    def claims(self, node: str) -> list[Ref]:
        return [ref for ref, count in self.references.get(node, Counter()).items()
                if count > 0 and ref[0] == "persistentvolumeclaims"]


class NodeAuthorizer(CachedAuthorizer):
    def __init__(self, store: Store) -> None:
        self.pods = _PodGraph(store)
        self.claims = NotifyingCache(store, "/registry/core/persistentvolumeclaims/", lambda: None)
        self.volumes = NotifyingCache(store, "/registry/core/persistentvolumes/", lambda: None)
        self._caches = (self.pods, self.claims, self.volumes)
        self.rules = bootstrappolicy._node_rules()  # the system:node role's rules, one source

    def storage_hooks(self) -> dict[tuple[str, str], Any]:
        return {}

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Any], list[str]]:
        is_node, _ = node_identity(user)
        # As Kubernetes': a node's permissions are not enumerable (the graph decides per object).
        return [], (["node authorizer does not support user rule resolution"] if is_node else [])

    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        is_node, node = node_identity(user)
        if not is_node:
            return False, ""
        if not node:
            return False, f'unknown node for user "{user.name}"'
        if info.is_resource_request:
            target = (info.group, info.resource)
            if target in ((("", "secrets")), ("", "configmaps")):
                return await self._read_namespaced(node, info)
            if target == ("", "persistentvolumeclaims"):
                return await (self._status_update(node, info) if info.subresource == "status"
                              else self._get(node, info))
            if target == ("", "persistentvolumes"):
                return await self._get(node, info)
            if target == ("", "serviceaccounts"):
                return await self._create_token(node, info)
            if target == ("coordination.k8s.io", "leases"):
                return self._lease(node, info)
        if any(rule_allows_request(rule, info) for rule in self.rules):
            return True, ""
        return False, ""

    async def _read_namespaced(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        if info.verb not in ("get", "list", "watch"):
            return False, "can only read resources of this type"
        if info.subresource:
            return False, "cannot read subresource"
        if not info.namespace:
            return False, "can only read namespaced object of this type"
        return await self._related(node, info)

    async def _get(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        if info.verb != "get":
            return False, "can only get individual resources of this type"
        if info.subresource:
            return False, "cannot get subresource"
        return await self._related(node, info)

    async def _status_update(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        if info.verb not in ("update", "patch"):
            return False, "can only get/update/patch this type"
        return await self._related(node, info)

    async def _create_token(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        if info.verb != "create" or not info.name:
            return False, "can only create tokens for individual service accounts"
        if info.subresource != "token":
            return False, "can only create token subresource of serviceaccount"
        return await self._related(node, info)

    @staticmethod
    def _lease(node: str, info: RequestInfo) -> tuple[bool, str]:
        if info.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if info.subresource:
            return False, "cannot access subresource of node lease"
        if info.namespace != NODE_LEASE_NAMESPACE:
            return False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        if info.verb != "create" and info.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""

    async def _related(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        if not info.name:
            return False, "No Object name found"
        await self._ensure_loaded()
        if self._has_path(node, info.resource, info.namespace or "", info.name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _has_path(self, node: str, resource: str, namespace: str, name: str) -> bool:
        if resource != "persistentvolumes" and self.pods.uses(node, (resource, namespace, name)):
            return True
        # Through a PVC bound to a PV: the PV itself and the secrets the PV references.
        for _, claim_namespace, claim_name in self.pods.claims(node):
            claim = self.claims.cached(claim_namespace, claim_name)
            volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
            if not volume_name:
                continue
            if resource == "persistentvolumes" and volume_name == name:
                return True
            if resource == "secrets" and (namespace, name) in _volume_secrets(self.volumes.cached("", volume_name)):
                return True
        return False

    async def _ensure_loaded(self) -> None:
        for cache in self._caches:
            await cache.ensure_loaded()


def _volume_secrets(volume: Object | None) -> set[tuple[str, str]]:
    found = set()
    for source in ((volume or {}).get("spec") or {}).values():
        if not isinstance(source, dict):
            continue
        for key in ("secretRef", "nodePublishSecretRef", "nodeStageSecretRef", "nodeExpandSecretRef",
                    "controllerPublishSecretRef"):
            ref = source.get(key)
            if isinstance(ref, dict) and ref.get("name"):
                found.add((ref.get("namespace", ""), ref["name"]))
    return found
