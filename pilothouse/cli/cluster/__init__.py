"""``pilothouse cluster``: clusters of network-namespace hosts on this machine (see commands.py)."""
