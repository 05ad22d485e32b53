"""ImageLocality: prefer nodes that already have the pod's images (scaled by how widespread they are)."""

from __future__ import annotations

from pilothouse.components.scheduler.framework import MAX_NODE_SCORE, SKIP, CycleState, Plugin, Status
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo, _image_name

__all__ = ["ImageLocality"]

_MB = 1024 * 1024
_MIN_THRESHOLD = 23 * _MB
_MAX_CONTAINER_THRESHOLD = 1000 * _MB


class ImageLocality(Plugin):
    name = "ImageLocality"

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        images = [_image_name(i) for i in pod.images if i]
        known = [i for i in images if self.handle.image_node_count(i)]
        if not known:
            return SKIP  # no node has any of the images: every node scores 0
        total = max(len(self.handle.node_infos()), 1)
        spread = {i: self.handle.image_node_count(i) / total for i in known}
        state.data[self.name] = (spread, len(pod.images))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        spread: dict[str, float] = state.data[self.name][0]
        containers: int = state.data[self.name][1]
        total = 0
        for image, fraction in spread.items():
            size = node.images.get(image)
            if size:
                total += int(size * fraction)
        max_threshold = _MAX_CONTAINER_THRESHOLD * containers
        total = min(max(total, _MIN_THRESHOLD), max_threshold)
        return MAX_NODE_SCORE * (total - _MIN_THRESHOLD) // (max_threshold - _MIN_THRESHOLD)
