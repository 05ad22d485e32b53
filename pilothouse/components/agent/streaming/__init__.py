"""The agent's streaming protocols, kept apart from the HTTP server that serves them.

- :mod:`.channels`: the websocket channel protocol of exec/attach (``v5.channel.k8s.io``, v4).
- :mod:`.remotecommand`: one exec/attach session driven over a websocket.
- :mod:`.spdy`: SPDY/3.1 framing with the zlib header dictionary (port-forward's wire format).
- :mod:`.portforward`: kubelet's port-forward stream pairs over one SPDY connection.
- :mod:`.lookup`: how a request's pod and container are found (:class:`.lookup.PodLookup`).
"""

from __future__ import annotations

__all__: list[str] = []
