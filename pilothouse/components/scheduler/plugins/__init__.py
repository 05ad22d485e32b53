"""The in-tree plugins and the default profile (names, extension points, weights as kube-scheduler 1.32)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pilothouse.components.scheduler.framework import Handle, Plugin
from pilothouse.components.scheduler.plugins.defaultpreemption import DefaultPreemption
from pilothouse.components.scheduler.plugins.imagelocality import ImageLocality
from pilothouse.components.scheduler.plugins.interpodaffinity import InterPodAffinity
from pilothouse.components.scheduler.plugins.nodeaffinity import NodeAffinity
from pilothouse.components.scheduler.plugins.nodename import NodeName
from pilothouse.components.scheduler.plugins.nodeports import NodePorts
from pilothouse.components.scheduler.plugins.noderesources import BalancedAllocation, Fit
from pilothouse.components.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from pilothouse.components.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.components.scheduler.plugins.tainttoleration import TaintToleration

__all__ = ["DEFAULT_FILTERS", "DEFAULT_POST_FILTERS", "DEFAULT_SCORES", "REGISTRY"]

Factory = Callable[[Handle, Mapping[str, Any]], Plugin]

#: Plugin name -> factory. Out-of-tree plugins can be added before building a Framework.
REGISTRY: dict[str, Factory] = {
    cls.name: cls for cls in (NodeName, NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, Fit,
                              BalancedAllocation, ImageLocality, InterPodAffinity, PodTopologySpread,
                              DefaultPreemption)
}

#: PreFilter/Filter order: cheapest first, as kube-scheduler's default profile orders them.
DEFAULT_FILTERS = ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodePorts",
                   "NodeResourcesFit", "PodTopologySpread", "InterPodAffinity"]

#: Score plugins and weights (kube-scheduler's defaults).
DEFAULT_SCORES = {"TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2, "InterPodAffinity": 2,
                  "NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1}

#: PostFilter plugins: preemption, as kube-scheduler's default profile.
DEFAULT_POST_FILTERS = ["DefaultPreemption"]
