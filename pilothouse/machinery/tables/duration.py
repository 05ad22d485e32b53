"""Kubernetes' human-readable durations, as the AGE and similar Table cells show them.

The Table's AGE cell is a string the server computes (kubectl prints it verbatim), so its
rounding must be exactly ``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: ~2-3
significant figures ("70s", "3m10s", "47h", "2d1h", "367d", "2y1d"), with up to two seconds of
clock skew into the future tolerated as "0s".
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

__all__ = ["human_duration", "parse_time", "since", "translate_since"]

_UNKNOWN = "<unknown>"


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration`` for a duration given in (fractional) seconds."""
    # Go truncates durations toward zero at every step: int(d.Seconds()), int(d / time.Minute).
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = divmod(hours // 24, 365)
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


@functools.lru_cache(maxsize=4096)
def parse_time(value: str) -> datetime | None:
    """An RFC 3339 timestamp (``Time`` or ``MicroTime``) as an aware datetime; None if unparsable.

    Cached because a list's objects share few distinct timestamps (a rollout creates its pods
    within the same seconds), and tables are rebuilt on every ``kubectl get``.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # Python keeps at most microseconds; Go may write nanoseconds ("...05.123456789Z").
        head, dot, tail = value.partition(".")
        if not dot:
            return None
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        try:
            parsed = datetime.fromisoformat(f"{head}.{digits[:6]:0<6}{zone}")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def since(value: str | None, now: datetime) -> float | None:
    """Seconds from the timestamp ``value`` to ``now``; None for a missing or bad timestamp."""
    if not value:
        return None
    parsed = parse_time(value)
    if parsed is None:
        return None
    return (now - parsed).total_seconds()


def translate_since(value: str | None, now: datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, or ``<unknown>`` when it is unset."""
    seconds = since(value, now)
    if seconds is None:
        return _UNKNOWN
    return human_duration(seconds)
