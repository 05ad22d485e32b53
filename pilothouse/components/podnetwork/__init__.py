"""The pod network across hosts: routes to every other Node's pod range, direct when the Node is on a
shared subnet, through a VXLAN overlay otherwise (flannel's ``vxlan`` backend with ``DirectRouting``).

:mod:`.plan` computes what the kernel should hold from the Nodes (a pure function), :mod:`.kernel`
reads and programs it (``ip``/``bridge`` in batches), :mod:`.routes` keeps it level with the Nodes.
"""

from pilothouse.components.podnetwork.plan import Peer, Plan, Route, peers_of, plan, vtep_mac
from pilothouse.components.podnetwork.routes import PodRoutes

__all__ = ["Peer", "Plan", "PodRoutes", "Route", "peers_of", "plan", "vtep_mac"]
