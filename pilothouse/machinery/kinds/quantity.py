"""Resource quantities ("100m", "1Gi", "2e3") as exact numbers, for the kind rules that compare them.

Pod QoS class and "requests must be <= limits" need resource.Quantity comparison. Values are exact
fractions, so "0.1" and "100m" compare equal as they do in Kubernetes.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any

__all__ = ["parse_quantity"]

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(value: Any) -> Fraction | None:
    """The quantity's value, or None when it is not a valid quantity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if isinstance(value, str):
        # Every pod of a workload repeats the same few quantities ("100m", "64Mi"): parse each once.
        return _parse_quantity_text(value)
    return None


@functools.lru_cache(maxsize=4096)
def _parse_quantity_text(value: str) -> Fraction | None:
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    number = Fraction(match.group(1))
    if match.group(2):
        exponent = int(match.group(2)[1:])
        return number * (Fraction(10) ** exponent)
    return number * _SUFFIXES[match.group(3) or ""]
