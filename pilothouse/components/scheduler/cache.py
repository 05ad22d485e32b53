"""The scheduler's in-memory view of the cluster: node infos, bound pods, and assumed pods.

Fed by the node and pod informers, updated incrementally per event (never rebuilt per cycle). A
pod the scheduler has decided to place is *assumed*: its resources count on the chosen node at once,
so the next cycle never waits for the API to confirm a binding; the informer's update confirms the
assumption, a failed bind forgets it. Because the whole scheduling cycle is synchronous code on one
event loop, no event can interleave with it, so the cache itself serves as the cycle's snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo
from pilothouse.machinery.meta import Object

__all__ = ["Cache"]



class Cache:
    def __init__(self) -> None:
        #: Every node info by name, including placeholders for pods whose Node we have not seen.
        self._infos: dict[str, NodeInfo] = {}
        #: Pod key -> (pod info, node name) for every pod counted on some node.
        self._pods: dict[str, tuple[PodInfo, str]] = {}
        #: Keys of pods placed by this scheduler but not yet seen bound by the informer.
        self._assumed: set[str] = set()
        self._node_list: list[NodeInfo] | None = None
        self._image_nodes: dict[str, int] = {}
        self._namespace_labels: dict[str, dict[str, str]] = {}
        #: PodDisruptionBudgets by namespace/name, for preemption's choice of victims.
        self._budgets: dict[str, Object] = {}
        self._with_affinity: list[NodeInfo] | None = None
        self._with_anti_affinity: list[NodeInfo] | None = None
        self._anti_affinity_pods = 0
        self._affinity_pods = 0

    # --------------------------------------------------------------- Handle

    def node_infos(self) -> list[NodeInfo]:
        """Nodes that exist (placeholders excluded), in a stable order for round-robin sampling."""
        if self._node_list is None:
            self._node_list = [info for info in self._infos.values() if info.node is not None]
        return self._node_list

    def node_info(self, name: str) -> NodeInfo | None:
        info = self._infos.get(name)
        return info if info is not None and info.node is not None else None

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        if self._with_affinity is None:
            self._with_affinity = [i for i in self.node_infos() if i.pods_with_affinity]
        return self._with_affinity

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        if self._with_anti_affinity is None:
            self._with_anti_affinity = [i for i in self.node_infos() if i.pods_with_required_anti_affinity]
        return self._with_anti_affinity

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._namespace_labels.get(namespace, {})

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return self._namespace_labels

    def image_node_count(self, image: str) -> int:
        return self._image_nodes.get(image, 0)

    def disruption_budgets(self) -> list[Object]:
        return list(self._budgets.values())

    def set_disruption_budget(self, budget: Object, deleted: bool = False) -> None:
        metadata = budget.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        if deleted:
            self._budgets.pop(key, None)
        else:
            self._budgets[key] = budget

    @property
    def affinity_pod_count(self) -> int:
        return self._affinity_pods

    @property
    def anti_affinity_pod_count(self) -> int:
        return self._anti_affinity_pods

    # ---------------------------------------------------------------- nodes

    def add_node(self, node: Object) -> NodeInfo:
        name = node["metadata"]["name"]
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = NodeInfo(name)
        existed = info.node is not None
        if existed:
            self._count_images(info, -1)
        info.set_node(node)
        self._count_images(info, 1)
        if not existed:
            self._node_list = None
            self._invalidate_affinity()
        return info

    update_node = add_node

    def remove_node(self, name: str) -> None:
        info = self._infos.get(name)
        if info is None:
            return
        self._count_images(info, -1)
        if info.pods:
            # Keep pods accounted until they are deleted, as kube-scheduler does (a placeholder).
            info.node = None
        else:
            del self._infos[name]
        self._node_list = None
        self._invalidate_affinity()

    def _count_images(self, info: NodeInfo, sign: int) -> None:
        if info.node is None:
            return
        for image in info.images:
            count = self._image_nodes.get(image, 0) + sign
            if count > 0:
                self._image_nodes[image] = count
            else:
                self._image_nodes.pop(image, None)

    def set_namespace(self, namespace: Object, deleted: bool = False) -> None:
        name = namespace["metadata"]["name"]
        if deleted:
            self._namespace_labels.pop(name, None)
        else:
            self._namespace_labels[name] = dict(namespace["metadata"].get("labels") or {})

    # ----------------------------------------------------------------- pods

    def _invalidate_affinity(self) -> None:
        self._with_affinity = None
        self._with_anti_affinity = None

    def _place(self, pod: PodInfo, node_name: str) -> None:
        info = self._infos.get(node_name)
        if info is None:
            info = self._infos[node_name] = NodeInfo(node_name)
        info.add_pod(pod)
        self._pods[pod.key] = (pod, node_name)
        if pod.has_affinity:
            self._affinity_pods += 1
            self._invalidate_affinity()
        if pod.required_anti_affinity:
            self._anti_affinity_pods += 1

    def _unplace(self, key: str) -> PodInfo | None:
        entry = self._pods.pop(key, None)
        if entry is None:
            return None
        pod, node_name = entry
        info = self._infos.get(node_name)
        if info is not None:
            info.remove_pod(key)
            if info.node is None and not info.pods:
                del self._infos[node_name]
        if pod.has_affinity:
            self._affinity_pods -= 1
            self._invalidate_affinity()
        if pod.required_anti_affinity:
            self._anti_affinity_pods -= 1
        return pod

    def assume(self, pod: PodInfo, node_name: str) -> None:
        """Count ``pod`` on ``node_name`` before the API has confirmed the binding."""
        self._unplace(pod.key)
        self._place(pod, node_name)
        self._assumed.add(pod.key)

    def forget(self, key: str) -> None:
        """Undo an assumption (the bind failed)."""
        if key in self._assumed:
            self._assumed.discard(key)
            self._unplace(key)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def add_pod(self, pod: PodInfo) -> None:
        """A bound pod seen by the informer: confirms an assumption or adds it."""
        self._assumed.discard(pod.key)
        self._unplace(pod.key)
        self._place(pod, pod.node_name)

    update_pod = add_pod

    def remove_pod(self, key: str) -> PodInfo | None:
        self._assumed.discard(key)
        return self._unplace(key)

    def get_pod(self, key: str) -> PodInfo | None:
        """The pod info counted in the cache (bound or assumed)."""
        entry = self._pods.get(key)
        return entry[0] if entry else None

    def pod_node(self, key: str) -> str | None:
        entry = self._pods.get(key)
        return entry[1] if entry else None

    def pod_count(self) -> int:
        return len(self._pods)
