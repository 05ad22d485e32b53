"""The Node authorizer (``plugin/pkg/auth/authorizer/node``): kubelets read only what their pods use.

A request from ``system:node:<name>`` in ``system:nodes`` for secrets, configmaps, PVCs, PVs,
service-account tokens or node leases is decided here against a graph of node → pods → the objects
those pods reference, kept from watch-fed caches (no store read per request), as Kubernetes' graph
is fed by informers. Anything else is checked against the ``system:node`` ClusterRole's rules
(``NodeRules()``): the 1.32 bootstrap binding of that role has no subjects, this authorizer grants
it. What it does not allow it has no opinion on, so RBAC decides next.

Nodes and pods are narrowed as 1.32 does by default (``AuthorizeNodeWithSelectors``, beta and on):
a node reads only its own Node (by name, or listed with ``metadata.name=<node>``), gets only pods
bound to it and lists or watches pods only with ``spec.nodeName=<node>``; its writes of nodes and
pods are left to NodeRestriction admission.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.rbacauthz import CachedAuthorizer, NotifyingCache, rule_allows_request
from pilothouse.apiserver.requestinfo import RequestInfo, field_value, object_name
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
    """The secrets, configmaps, PVCs, resource claims and service account a pod uses (the graph
    populator's edges)."""
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
    # DRA: a claim named in the spec, or the one made from a template, named in the status.
    for claim in spec.get("resourceClaims") or ():
        add("resourceclaims", claim.get("resourceClaimName"))
    for claim in (pod.get("status") or {}).get("resourceClaimStatuses") or ():
        add("resourceclaims", claim.get("resourceClaimName"))
    return refs


class _PodGraph(NotifyingCache):
    """Per node, how many of its pods reference each object: the graph's node ← pod ← object edges.

    As kube-apiserver's graph populator, it keeps no pods: a bound pod is its node and its
    references (strings interned, so the thousand pods naming ``default`` and ``kube-root-ca.crt``
    share them), a pending pod is nothing. ``bench/nodeauthz_memory.py`` measures it: for 20,000
    pods, 5.1 kB a pod when the whole pod was cached, 0.19 kB now.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store, "/registry/core/pods/", lambda: None)
        #: store key -> (node, references, mod revision), bound pods only
        self._edges: dict[str, tuple[str, frozenset[Ref], int]] = {}
        self.references: dict[str, Counter[Ref]] = {}
        #: each distinct reference set once, with how many bound pods share it: the replicas of one
        #: template all point at one set
        self._sets: dict[frozenset[Ref], list[Any]] = {}

    def _reset(self) -> None:
        super()._reset()
        self._edges, self.references, self._sets = {}, {}, {}

    def _share(self, refs: frozenset[Ref]) -> frozenset[Ref]:
        entry = self._sets.get(refs)
        if entry is None:
            entry = self._sets[refs] = [frozenset(_interned(ref) for ref in refs), 0]
        entry[1] += 1
        return entry[0]  # type: ignore[no-any-return]

    def _unshare(self, refs: frozenset[Ref]) -> None:
        entry = self._sets[refs]
        entry[1] -= 1
        if entry[1] <= 0:
            del self._sets[refs]

    def _record(self, key: str, revision: int, obj: Object | None) -> None:
        # Watch events arrive in order; only a copy read while unsynced can be older than what we
        # hold, and the follower's relist replaces all of it.
        old = self._edges.get(key)
        if old is not None and old[2] > revision:
            return
        node = ((obj or {}).get("spec") or {}).get("nodeName") if obj is not None else None
        refs = frozenset(pod_references(obj)) if obj is not None and node else frozenset()
        if old is not None:
            if node == old[0] and refs == old[1]:
                self._edges[key] = (old[0], old[1], revision)
                return
            del self._edges[key]
            self._unshare(old[1])
            counter = self.references[old[0]]
            counter.subtract(old[1])
            for ref in old[1]:
                if counter[ref] <= 0:
                    del counter[ref]
        if node:
            node = sys.intern(node)
            refs = self._share(refs)
            self._edges[key] = (node, refs, revision)
            self.references.setdefault(node, Counter()).update(refs)

    def node_of(self, namespace: str, name: str) -> str | None:
        """The node a pod is bound to (the graph's pod vertex), None for a pending or unknown pod."""
        edge = self._edges.get(f"{self.prefix}{namespace}/{name}")
        return None if edge is None else edge[0]

    def uses(self, node: str, ref: Ref) -> bool:
        return self.references.get(node, Counter())[ref] > 0

    def claims(self, node: str) -> list[Ref]:
        return [ref for ref, count in self.references.get(node, Counter()).items()
                if count > 0 and ref[0] == "persistentvolumeclaims"]


def _interned(ref: Ref) -> Ref:
    kind, namespace, name = ref
    return sys.intern(kind), sys.intern(namespace), sys.intern(name)


class NodeAuthorizer(CachedAuthorizer):
    def __init__(self, store: Store) -> None:
        self.pods = _PodGraph(store)
        # The PVC → PV and PV → secret edges only, not the objects (the graph's other vertices).
        self.claims = _EdgeCache(store, "/registry/core/persistentvolumeclaims/",
                                 lambda claim: (claim.get("spec") or {}).get("volumeName") or None)
        self.volumes = _EdgeCache(store, "/registry/core/persistentvolumes/", _volume_secrets)
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
            if target in (("", "persistentvolumes"), ("resource.k8s.io", "resourceclaims")):
                return await self._get(node, info)
            if target == ("", "serviceaccounts"):
                return await self._create_token(node, info)
            if target == ("coordination.k8s.io", "leases"):
                return self._lease(node, info)
            if target == ("", "nodes"):
                return _node_object(node, info)
            if target == ("", "pods"):
                return await self._pod(node, info)
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

    async def _pod(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        """``authorizePod``: reads of its own pods; writes are NodeRestriction's to limit."""
        allowed = {"": ("create", "delete"), "status": ("update", "patch"), "eviction": ("create",)}
        if info.subresource == "" and info.verb == "get":
            return await self._get(node, info)
        if info.subresource == "" and info.verb in ("list", "watch"):
            if field_value(info, "spec.nodeName") == node:
                return True, ""
            if object_name(info):  # one pod, known to be bound to the node
                return await self._related(node, info)
            return False, "can only list/watch pods with spec.nodeName field selector"
        return (True, "") if info.verb in allowed.get(info.subresource, ()) else (False, "")

    async def _related(self, node: str, info: RequestInfo) -> tuple[bool, str]:
        name = object_name(info)
        if not name:
            return False, "No Object name found"
        await self._ensure_loaded()
        if self._has_path(node, info.resource, info.namespace or "", name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _has_path(self, node: str, resource: str, namespace: str, name: str) -> bool:
        if resource == "pods":
            return self.pods.node_of(namespace, name) == node
        if resource != "persistentvolumes" and self.pods.uses(node, (resource, namespace, name)):
            return True
        # Through a PVC bound to a PV: the PV itself and the secrets the PV references.
        for _, claim_namespace, claim_name in self.pods.claims(node):
            volume_name = self.claims.edge(claim_namespace, claim_name)
            if not volume_name:
                continue
            if resource == "persistentvolumes" and volume_name == name:
                return True
            if resource == "secrets" and (namespace, name) in (self.volumes.edge("", volume_name) or ()):
                return True
        return False

    async def _ensure_loaded(self) -> None:
        for cache in self._caches:
            await cache.ensure_loaded()


def _node_object(node: str, info: RequestInfo) -> tuple[bool, str]:
    """``authorizeNode``: a node reads only its own Node, compared by name (not through the graph)
    so that it can look for its Node before creating it; writes are NodeRestriction's to limit."""
    if info.subresource == "" and info.verb in ("create", "update", "patch"):
        return True, ""
    if info.subresource == "" and info.verb in ("get", "list", "watch"):
        name = object_name(info)
        if name == node:
            return True, ""
        if not name:
            return False, f"node '{node}' cannot read all nodes, only its own Node object"
        return False, f"node '{node}' cannot read '{name}', only its own Node object"
    if info.subresource == "status" and info.verb in ("update", "patch"):
        return True, ""
    return False, ""


class _EdgeCache(NotifyingCache):
    """Per object, only what ``edge`` takes from it (None: nothing to keep), by store key."""

    def __init__(self, store: Store, prefix: str, edge: Callable[[Object], Any]) -> None:
        super().__init__(store, prefix, lambda: None)
        self._edge = edge
        self._edges: dict[str, tuple[Any, int]] = {}

    def _reset(self) -> None:
        super()._reset()
        self._edges = {}

    def _record(self, key: str, revision: int, obj: Object | None) -> None:
        old = self._edges.get(key)
        if old is not None and old[1] > revision:
            return
        value = None if obj is None else self._edge(obj)
        if value:
            self._edges[key] = (value, revision)
        else:
            self._edges.pop(key, None)

    def edge(self, namespace: str, name: str) -> Any:
        found = self._edges.get(f"{self.prefix}{namespace}/{name}" if namespace else f"{self.prefix}{name}")
        return None if found is None else found[0]


def _volume_secrets(volume: Object) -> frozenset[tuple[str, str]]:
    found = set()
    for source in (volume.get("spec") or {}).values():
        if not isinstance(source, dict):
            continue
        for key in ("secretRef", "nodePublishSecretRef", "nodeStageSecretRef", "nodeExpandSecretRef",
                    "controllerPublishSecretRef"):
            ref = source.get(key)
            if isinstance(ref, dict) and ref.get("name"):
                found.add((ref.get("namespace", ""), ref["name"]))
    return frozenset(found)
