"""Cron schedules as the CronJob controller reads them (``github.com/robfig/cron/v3``'s standard parser).

Five fields (minute, hour, day of month, month, day of week) with ``*``, ``?``, ranges ``a-b``,
steps ``*/n`` and ``a-b/n``, lists ``a,b``, month and weekday names (``JAN``, ``mon``), ``7`` for
Sunday, the descriptors ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/
``@midnight``/``@hourly``, and a ``CRON_TZ=Zone`` / ``TZ=Zone`` prefix. As in cron (and robfig), when
both day fields are restricted a day matches if either does; when one is ``*`` both must.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_schedule"]


class CronError(ValueError):
    """A schedule that cannot be parsed."""


_MONTHS = {name: i + 1 for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

# (low, high, names) per field
_BOUNDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS),
]


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: either day field was ``*``/``?``: both must match (else either)
    day_star: bool
    timezone: tzinfo = UTC

    def _day_matches(self, moment: datetime) -> bool:
        dom = moment.day in self.days
        dow = (moment.isoweekday() % 7) in self.weekdays
        return (dom and dow) if self.day_star else (dom or dow)

    def next(self, after: datetime) -> datetime:
        """The first activation strictly after ``after`` (an aware datetime), in UTC.

        Walks month, day, hour and minute like robfig's ``SpecSchedule.Next``, in the schedule's zone.
        """
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        local = after.astimezone(self.timezone)
        # start at the next whole minute (wall clock in the zone)
        moment = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment.year + 5
        while moment.year <= limit:
            if moment.month not in self.months:
                year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
                moment = datetime(year, month, 1)
                continue
            if not self._day_matches(moment):
                moment = datetime(moment.year, moment.month, moment.day) + timedelta(days=1)
                continue
            if moment.hour not in self.hours:
                moment = datetime(moment.year, moment.month, moment.day, moment.hour) + timedelta(hours=1)
                continue
            if moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
                continue
            aware = moment.replace(tzinfo=self.timezone)
            # a wall time skipped by a DST jump does not exist: fold it forward
            result = aware.astimezone(UTC)
            if result <= after.astimezone(UTC):
                moment += timedelta(minutes=1)
                continue
            return result
        raise CronError("no activation within five years")


def _parse_value(text: str, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    try:
        return int(text)
    except ValueError:
        raise CronError(f"failed to parse int from {text}") from None


def _parse_field(text: str, index: int) -> tuple[frozenset[int], bool]:
    low, high, names = _BOUNDS[index]
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"empty list element in {text!r}")
        range_part, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _parse_value(step_text, {})
            if step <= 0:
                raise CronError(f"step of range should be a positive number: {part}")
        if range_part in ("*", "?"):
            start, end = low, high
            if index == 4:
                end = 6
            if not step_text:
                star = True
        else:
            first, dash, last = range_part.partition("-")
            start = _parse_value(first, names)
            end = _parse_value(last, names) if dash else (high if step_text else start)
            if step_text and not dash and index == 4:
                end = 6
        if start < low or end > high or start > end:
            raise CronError(f"value out of range ({low} - {high}) or beginning of range beyond end: {part}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values), star


def parse_schedule(spec: str, timezone: str | None = None) -> CronSchedule:
    """Parse a schedule; ``timezone`` is ``spec.timeZone`` (an IANA name). Raises :class:`CronError`."""
    text = spec.strip()
    zone_name = timezone
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        zone_name = prefix.split("=", 1)[1]
        text = text.strip()
    zone: tzinfo = UTC
    if zone_name and zone_name not in ("UTC", "Etc/UTC"):
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown time zone {zone_name}") from None
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    parsed = [_parse_field(field, i) for i, field in enumerate(fields)]
    return CronSchedule(minutes=parsed[0][0], hours=parsed[1][0], days=parsed[2][0], months=parsed[3][0],
                        weekdays=parsed[4][0], day_star=parsed[2][1] or parsed[4][1], timezone=zone)
