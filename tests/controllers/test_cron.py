"""The cron schedule parser: fields, ranges, steps, lists, names, descriptors, time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.machinery.kinds.cron import CronError, parse_schedule


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


@pytest.mark.parametrize(("spec", "after", "expected"), [
    ("* * * * *", "2024-05-01T10:00:30", "2024-05-01T10:01:00"),
    ("*/15 * * * *", "2024-05-01T10:01:00", "2024-05-01T10:15:00"),
    ("5,35 9-10 * * *", "2024-05-01T10:40:00", "2024-05-02T09:05:00"),
    ("0 0 1 * *", "2024-05-01T00:00:00", "2024-06-01T00:00:00"),
    ("0 12 * * MON-FRI", "2024-05-03T12:00:00", "2024-05-06T12:00:00"),  # Friday -> Monday
    ("0 12 * JAN,jul SUN", "2024-05-01T00:00:00", "2024-07-07T12:00:00"),
    ("0 0 29 2 *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("0 0 13 * 5", "2024-09-01T00:00:00", "2024-09-06T00:00:00"),  # dom OR dow when both restricted
    ("10-30/10 * * * *", "2024-05-01T10:25:00", "2024-05-01T10:30:00"),
    ("@hourly", "2024-05-01T10:25:00", "2024-05-01T11:00:00"),
    ("@daily", "2024-05-01T10:25:00", "2024-05-02T00:00:00"),
    ("@weekly", "2024-05-01T10:25:00", "2024-05-05T00:00:00"),
    ("@monthly", "2024-05-01T10:25:00", "2024-06-01T00:00:00"),
    ("@yearly", "2024-05-01T10:25:00", "2025-01-01T00:00:00"),
    ("CRON_TZ=Europe/Paris 0 9 * * *", "2024-05-01T00:00:00", "2024-05-01T07:00:00"),  # 09:00 CEST
    ("TZ=America/New_York 30 8 * * *", "2024-01-10T00:00:00", "2024-01-10T13:30:00"),
])
def test_next(spec: str, after: str, expected: str) -> None:
    assert parse_schedule(spec).next(_at(after)) == _at(expected)


def test_time_zone_field() -> None:
    schedule = parse_schedule("0 9 * * *", "Asia/Tokyo")
    assert schedule.next(_at("2024-05-01T00:00:00")) == _at("2024-05-02T00:00:00")


@pytest.mark.parametrize("spec", ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
                                  "*/0 * * * *", "@often", "a * * * *", "5-1 * * * *",
                                  "0 0 * * 7"])  # robfig's day of week is 0-6: 7 is not Sunday
def test_invalid(spec: str) -> None:
    with pytest.raises(CronError):
        parse_schedule(spec)


def test_unknown_zone() -> None:
    with pytest.raises(CronError):
        parse_schedule("* * * * *", "Mars/Olympus")
