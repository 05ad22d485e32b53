"""Cron schedules as Kubernetes reads them (github.com/robfig/cron/v3, ``cron.ParseStandard``).

CronJob validation reports the parser's own error text (``expected exactly 5 fields, found 1:
[foo]``), and the CronJob controller needs the next run time; both come from this one parser, so a
schedule the API accepts is one the controller runs (``@every 1h`` once was not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_schedule"]


class CronError(ValueError):
    """A schedule robfig/cron rejects; ``str()`` is its error text."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS = (_Bounds(0, 59), _Bounds(0, 23), _Bounds(1, 31), _Bounds(1, 12, _MONTHS), _Bounds(0, 6, _DAYS))
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: allowed values per field, or a constant delay (``@every``)."""

    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    #: Whether day-of-month / day-of-week was ``*`` or ``?`` (then both must match, else either).
    day_star: bool = True
    every: timedelta | None = None
    location: tzinfo | None = None

    def _day_matches(self, moment: datetime) -> bool:
        dom = moment.day in self.days
        dow = (moment.isoweekday() % 7) in self.weekdays
        return (dom and dow) if self.day_star else (dom or dow)

    @property
    def zone(self) -> tzinfo:
        """The zone the fields are read in (the ``TZ=`` prefix or ``spec.timeZone``; UTC without)."""
        return self.location or UTC

    def next(self, after: datetime) -> datetime:
        """:meth:`next_after` for the CronJob controller: a naive ``after`` is UTC, and a schedule
        that never fires (``0 0 30 2 *``) is a :class:`CronError` (robfig returns the zero time)."""
        found = self.next_after(after if after.tzinfo is not None else after.replace(tzinfo=UTC))
        if found is None:
            raise CronError("no activation within five years")
        return found

    def next_after(self, moment: datetime) -> datetime | None:
        """The first activation strictly after ``moment`` (aware datetimes), None within 5 years."""
        if self.every is not None:
            step = max(self.every, timedelta(seconds=1))
            return (moment + step).replace(microsecond=0)
        zone = self.location or UTC
        local = moment.astimezone(zone).replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        limit = local + timedelta(days=366 * 5)
        while local < limit:
            if local.month not in self.months:
                year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                local = local.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(local):
                local = (local + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if local.hour not in self.hours:
                local = (local + timedelta(hours=1)).replace(minute=0)
                continue
            if local.minute not in self.minutes:
                local += timedelta(minutes=1)
                continue
            found = local.replace(tzinfo=zone).astimezone(moment.tzinfo or UTC)
            if found <= moment:  # a wall time a DST jump skipped maps back before ``moment``
                local += timedelta(minutes=1)
                continue
            return found
        return None


def _atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    number = int(text)
    if number < 0:
        raise CronError(f"negative number ({number}) not allowed: {text}")
    return number


def _int_or_name(text: str, bounds: _Bounds) -> int:
    if bounds.names and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    return _atoi(text)


def _range(expr: str, bounds: _Bounds) -> tuple[set[int], bool]:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _int_or_name(low_high[0], bounds)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _field(text: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for expr in (part for part in text.split(",") if part):
        found, is_star = _range(expr, bounds)
        values |= found
        star = star or is_star
    return frozenset(values), star


def _duration(text: str) -> timedelta:
    body = text.lstrip("+")
    if body in ("0",):
        return timedelta(0)
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise CronError(f'failed to parse duration {text}: time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body:
        raise CronError(f'failed to parse duration {text}: time: invalid duration "{text}"')
    return timedelta(seconds=total)


def parse_schedule(spec: str, time_zone: str | None = None) -> CronSchedule:
    """cron.ParseStandard: five fields, descriptors, ``@every``, optional ``TZ=``/``CRON_TZ=`` prefix.

    ``time_zone``: a CronJob's ``spec.timeZone``, which the controller prefixes as ``TZ=`` (its
    ``formatSchedule``); validation refuses a schedule that has both."""
    if not spec:
        raise CronError("empty spec string")
    if time_zone:
        spec = f"TZ={time_zone} {spec}"
    location: tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        name = spec[spec.index("=") + 1: space if space >= 0 else len(spec)]
        try:
            location = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"provided bad location {name}: unknown time zone {name}") from exc
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return CronSchedule(every=_duration(spec[len("@every "):].strip()), location=location)
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minutes, _ = _field(fields[0], _FIELDS[0])
    hours, _ = _field(fields[1], _FIELDS[1])
    days, dom_star = _field(fields[2], _FIELDS[2])
    months, _ = _field(fields[3], _FIELDS[3])
    weekdays, dow_star = _field(fields[4], _FIELDS[4])
    return CronSchedule(minutes, hours, days, months, weekdays, dom_star or dow_star, None, location)
