"""Kubernetes' CEL extension libraries, as functions for the ``cel`` interpreter.

The CEL standard has no ``lowerAscii``, ``split``, ``isSorted``, ``url``, ``quantity``...;
kube-apiserver adds them (cel-go's ``ext.Strings`` and ``k8s.io/apiserver/pkg/cel/library``: lists,
regex, urls, quantity, ip, cidr) and CRD rules use them. Each is a plain Python function here; the
interpreter calls ``x.f(y)`` as ``f(x, y)``. URLs and quantities are opaque values in Kubernetes;
here they are small tagged maps that only these functions look into (IPs and CIDRs too).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cel

from pilothouse.machinery.kinds.quantity import parse_quantity

__all__ = ["LIBRARY"]

_QUANTITY = "__k8s_quantity__"
_URL = "__k8s_url__"


# -- strings and lists (cel-go ext.Strings, library.Lists) -----------------------------------

def _index_of(value: Any, needle: Any, *start: int) -> int:
    if isinstance(value, str):
        return value.find(needle, *start)
    return value.index(needle) if needle in value else -1


def _last_index_of(value: Any, needle: Any, *end: int) -> int:
    if isinstance(value, str):
        return value.rfind(needle, 0, end[0] + len(needle)) if end else value.rfind(needle)
    return len(value) - 1 - value[::-1].index(needle) if needle in value else -1


def _split(text: str, separator: str, *limit: int) -> list[str]:
    if limit:
        if limit[0] == 0:
            return []
        return text.split(separator, limit[0] - 1) if limit[0] > 0 else text.split(separator)
    return text.split(separator)


def _replace(text: str, old: str, new: str, *count: int) -> str:
    return text.replace(old, new, count[0]) if count and count[0] >= 0 else text.replace(old, new)


def _substring(text: str, start: int, *end: int) -> str:
    return text[start:end[0]] if end else text[start:]


# -- quantity (library.Quantity) -------------------------------------------------------------

def _quantity(text: str) -> dict[str, Any]:
    value = parse_quantity(text)
    if value is None:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return {_QUANTITY: text, "n": value.numerator, "d": value.denominator}


def _value(q: dict[str, Any] | int) -> Fraction:
    if isinstance(q, int):
        return Fraction(q)
    return Fraction(q["n"], q["d"])


def _from_value(value: Fraction) -> dict[str, Any]:
    text = str(value.numerator) if value.denominator == 1 else str(float(value))
    return {_QUANTITY: text, "n": value.numerator, "d": value.denominator}


def _compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    left, right = _value(a), _value(b)
    return (left > right) - (left < right)


def _as_integer(q: dict[str, Any]) -> int:
    value = _value(q)
    if value.denominator != 1:
        raise ValueError("cannot convert value to integer")
    return value.numerator


# -- url (library.URLs) ----------------------------------------------------------------------

def _url(text: str) -> dict[str, Any]:
    # url.ParseRequestURI: an absolute URL or an absolute path.
    parts = urlsplit(text)
    if not (parts.scheme or text.startswith("/")) or " " in text:
        raise ValueError(f"URL parse error during conversion from string: parse {text!r}: invalid URI for request")
    return {_URL: text}


def _is_url(text: str) -> bool:
    try:
        _url(text)
    except ValueError:
        return False
    return True


def _parts(u: dict[str, Any]) -> Any:
    return urlsplit(str(u[_URL]))


def _host(u: dict[str, Any]) -> str:
    return str(_parts(u).netloc.rpartition("@")[2])


def _hostname(u: dict[str, Any]) -> str:
    host = _host(u)
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rpartition(":")[0] if ":" in host else host


def _port(u: dict[str, Any]) -> str:
    host = _host(u)
    tail = host[host.index("]") + 1:] if host.startswith("[") else host
    return tail.rpartition(":")[2] if ":" in tail else ""


# -- regex (library.Regex) and ip/cidr (library.IP, library.CIDR) -----------------------------

def _find(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    return match.group(0) if match else ""


def _find_all(text: str, pattern: str, *limit: int) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, text)]
    return found[:limit[0]] if limit and limit[0] >= 0 else found


_IP = "__k8s_ip__"
_CIDR = "__k8s_cidr__"


def _ip(text: str) -> dict[str, Any]:
    if "%" in text or (":" in text and "." in text.rsplit(":", 1)[-1]):
        raise ValueError(f"IP Address {text!r} parse error during conversion from string")
    ipaddress.ip_address(text)  # raises ValueError, as ip() errors, on a bad address
    return {_IP: text}


def _cidr(text: str) -> dict[str, Any]:
    ipaddress.ip_network(text, strict=False)
    return {_CIDR: text}


def _succeeds(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            parse(text)
        except ValueError:
            return False
        return True
    return check


def _address(value: dict[str, Any]) -> Any:
    return ipaddress.ip_address(value[_IP])


def _network(value: dict[str, Any]) -> Any:
    return ipaddress.ip_network(value[_CIDR], strict=False)


def _contains_ip(cidr: dict[str, Any], ip: Any) -> bool:
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else _address(ip)
    return address in _network(cidr)


def _contains_cidr(cidr: dict[str, Any], other: Any) -> bool:
    inner = ipaddress.ip_network(other, strict=False) if isinstance(other, str) else _network(other)
    outer = _network(cidr)
    return inner.version == outer.version and inner.subnet_of(outer)


# -- optional field selection (x.?f, x[?k]) ---------------------------------------------------

def _present(value: Any) -> tuple[bool, Any]:
    if isinstance(value, cel.OptionalValue):
        return (True, value.value()) if value.has_value() else (False, None)
    return True, value


def _opt_select(receiver: Any, name: Any) -> Any:
    found, value = _present(receiver)
    if found and isinstance(value, dict) and name in value:
        return cel.OptionalValue.of(value[name])
    return cel.OptionalValue.none()


def _opt_index(receiver: Any, key: Any) -> Any:
    found, value = _present(receiver)
    if found and isinstance(value, list) and isinstance(key, int) and -1 < key < len(value):
        return cel.OptionalValue.of(value[key])
    return _opt_select(value, key) if found else cel.OptionalValue.none()


def _entries(receiver: Any) -> list[list[Any]]:
    """[key, value] pairs of a map, [index, value] pairs of a list (two-variable comprehensions)."""
    if isinstance(receiver, dict):
        return [[k, v] for k, v in receiver.items()]
    return [[i, v] for i, v in enumerate(receiver)]


def _merge_maps(maps: list[dict[Any, Any]]) -> dict[Any, Any]:
    merged: dict[Any, Any] = {}
    for entry in maps:
        for k, v in entry.items():
            if k in merged:
                raise ValueError(f"insert failed: key {k!r} already exists")
            merged[k] = v
    return merged


LIBRARY: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda s: "".join(c.lower() if c.isascii() else c for c in s),
    "upperAscii": lambda s: "".join(c.upper() if c.isascii() else c for c in s),
    "trim": lambda s: s.strip(),
    "split": _split,
    "join": lambda items, *sep: (sep[0] if sep else "").join(items),
    "replace": _replace,
    "substring": _substring,
    "charAt": lambda s, i: s[i] if i < len(s) else "",
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "reverse": lambda s: s[::-1],
    "isSorted": lambda items: list(items) == sorted(items),
    "sum": lambda items: sum(items),
    "min": lambda items: min(items),
    "max": lambda items: max(items),
    "quantity": _quantity,
    "isQuantity": lambda text: parse_quantity(text) is not None,
    "sign": lambda q: (_value(q) > 0) - (_value(q) < 0),
    "isInteger": lambda q: _value(q).denominator == 1,
    "asInteger": _as_integer,
    "asApproximateFloat": lambda q: float(_value(q)),
    "add": lambda q, other: _from_value(_value(q) + _value(other)),
    "sub": lambda q, other: _from_value(_value(q) - _value(other)),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: _compare(a, b) > 0,
    "isLessThan": lambda a, b: _compare(a, b) < 0,
    "url": _url,
    "isURL": _is_url,
    "getScheme": lambda u: _parts(u).scheme,
    "getHost": _host,
    "getHostname": _hostname,
    "getPort": _port,
    "getEscapedPath": lambda u: _parts(u).path,
    "getQuery": lambda u: parse_qs(_parts(u).query, keep_blank_values=True),
    "find": _find,
    "findAll": _find_all,
    "ip": _ip,
    "isIP": _succeeds(_ip),
    "cidr": _cidr,
    "isCIDR": _succeeds(_cidr),
    "family": lambda ip: _address(ip).version,
    "isUnspecified": lambda ip: _address(ip).is_unspecified,
    "isLoopback": lambda ip: _address(ip).is_loopback,
    "isLinkLocalMulticast": lambda ip: _address(ip).is_multicast and _address(ip).is_link_local,
    "isLinkLocalUnicast": lambda ip: _address(ip).is_link_local and not _address(ip).is_multicast,
    "isGlobalUnicast": lambda ip: not (_address(ip).is_multicast or _address(ip).is_loopback
                                       or _address(ip).is_link_local or _address(ip).is_unspecified
                                       or str(_address(ip)) == "255.255.255.255"),
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": lambda cidr: _network(cidr).prefixlen,
    "masked": lambda cidr: {_CIDR: str(_network(cidr))},
    "optSelect": _opt_select,
    "optIndex": _opt_index,
    "kubeTwoVarEntries": _entries,
    "kubePairsToMap": lambda pairs: {p[0]: p[1] for p in pairs},
    "kubeMergeMaps": _merge_maps,
}
