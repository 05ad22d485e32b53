"""The string formats kube-openapi's ``strfmt.Default`` registry knows, and when a value passes.

Why: a CRD field with ``format: date`` (or ``uuid``, ``byte``, ``ipv4``...) is checked by the
schema validator against that registry; a format it does not know (``int32`` on a string,
``int-or-string``) is ignored. Each checker mirrors the Go parser or regular expression
``k8s.io/kube-openapi/pkg/validation/strfmt`` uses.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

__all__ = ["FORMATS", "format_valid", "supported_format"]

_UUID = r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?{v}[0-9a-f]{3}-?{r}[0-9a-f]{3}-?[0-9a-f]{12}$"
_RX = {
    "uuid": re.compile(_UUID.replace("{v}", "[0-9a-f]").replace("{r}", "[0-9a-f]")),
    "uuid3": re.compile(_UUID.replace("{v}", "3").replace("{r}", "[0-9a-f]")),
    "uuid4": re.compile(_UUID.replace("{v}", "4").replace("{r}", "[89ab]")),
    "uuid5": re.compile(_UUID.replace("{v}", "5").replace("{r}", "[89ab]")),
    "hexcolor": re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"),
    "rgbcolor": re.compile(r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])"
                           r"\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"),
    "ssn": re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$"),
    "isbn10": re.compile(r"^(?:[0-9]{9}X|[0-9]{10})$"),
    "isbn13": re.compile(r"^(?:[0-9]{13})$"),
    "creditcard": re.compile(r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01]"
                             r"[0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])"
                             r"[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$"),
    # strfmt's rxHostname without its Unicode classes (\p{S}, \p{L}), which Python's re lacks.
    "hostname": re.compile(r"^([a-zA-Z0-9]((-?[a-zA-Z0-9]{0,62})?)|([a-zA-Z0-9](([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
                           r"(\.)){1,}([a-zA-Z]){2,63})$"),
    "email": re.compile(r"^[^@\s<>]+@[^@\s<>]+$"),
    "mac": re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}$"
                      r"|^([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$"),
    # strfmt.ParseDuration: Go durations, or "<n> <unit>" with the long unit names.
    "duration": re.compile(r"^(([+-]?\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^\d+\s*(ns|us|µs|ms|s|m|h|d|w|"
                           r"nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|"
                           r"sec|secs|min|mins|hr|hrs)$|^0$"),
}
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$")


def _date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _date_time(text: str) -> bool:
    match = _DATE_TIME.match(text)
    if not match:
        return False
    try:
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _byte(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _ip(version: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return ("." in text) if version == 4 else (":" in text)
    return check


def _cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _uri(text: str) -> bool:
    # url.Parse accepts nearly everything; it refuses control characters and bad escapes.
    return not re.search(r"[\x00-\x1f\x7f ]|%(?![0-9a-fA-F]{2})", text)


def _regex(name: str) -> Callable[[str], bool]:
    return lambda text: bool(_RX[name].match(text))


FORMATS: dict[str, Callable[[str], bool]] = {
    "date": _date,
    "datetime": _date_time,
    "bsonobjectid": lambda text: bool(re.fullmatch(r"[0-9a-fA-F]{24}", text)),
    "byte": _byte,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "uri": _uri,
    "password": lambda _text: True,
    "isbn": lambda text: bool(_RX["isbn10"].match(text) or _RX["isbn13"].match(text)),
    **{name: _regex(name) for name in ("uuid", "uuid3", "uuid4", "uuid5", "hexcolor", "rgbcolor", "ssn",
                                       "isbn10", "isbn13", "creditcard", "hostname", "email", "mac", "duration")},
}


def supported_format(fmt: Any) -> str:
    """The format as the validator sees it: ``StripUnsupportedFormatsPostProcess`` drops formats
    outside ``supportedFormats`` (names compared without dashes: ``date-time`` is ``datetime``)."""
    if not isinstance(fmt, str) or not fmt:
        return ""
    return fmt if fmt.replace("-", "") in FORMATS else ""


def format_valid(fmt: str, text: str) -> bool | None:
    """Whether ``text`` is a valid ``fmt``; None when the registry does not know the format."""
    checker = FORMATS.get(fmt.replace("-", ""))
    return None if checker is None else checker(text)
