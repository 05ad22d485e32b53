"""Kernel networking shared by the node's components: nftables transactions in nft's JSON
(:mod:`.nft`, :mod:`.nftjson`) and conntrack cleanup (:mod:`.conntrack`). The service proxy programs
through these; the agent's pod network (``agent/podnet.py``) still has its own iptables calls."""
