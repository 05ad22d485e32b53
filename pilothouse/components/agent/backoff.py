"""client-go's ``flowcontrol.Backoff`` as the kubelet uses it for crash loops and image pulls.

``next`` doubles the delay from ``initial`` up to ``maximum``; an entry untouched for twice the
maximum (10 min for the 5 min cap) starts over at ``initial``: that is Kubernetes' "reset after ten
minutes of running". ``in_backoff_since(key, event_time)`` says whether ``event_time`` (a container's
finish time) is still within the current delay.
"""

from __future__ import annotations

import time

__all__ = ["Backoff", "format_duration"]


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: 10s, 1m20s, 5m0s."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s"


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last update)

    def _expired(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is None or now - entry[1] > 2 * self.maximum

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def last_update(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[1] if entry else 0.0

    def next(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        delay = self.initial if self._expired(key, now) else min(self._entries[key][0] * 2, self.maximum)
        self._entries[key] = (delay, now)
        return delay

    def in_backoff_since(self, key: str, event_time: float, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        entry = self._entries.get(key)
        if entry is None or self._expired(key, event_time):
            return False
        return now - event_time < entry[0]

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
