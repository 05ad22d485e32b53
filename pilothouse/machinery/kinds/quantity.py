"""Resource quantities ("100m", "1Gi", "2e3") as exact numbers, for the kind rules that compare them.

Pod QoS class and "requests must be <= limits" need resource.Quantity comparison. Values are exact
fractions, so "0.1" and "100m" compare equal as they do in Kubernetes.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any

__all__ = ["add_quantities", "format_quantity", "parse_quantity", "quantity_format"]

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


# -- canonical text, as resource.Quantity.String() prints it -------------------------------------
# Quota status and admission messages show sums of quantities ("requests.memory=192Mi"), which
# must read as Kubernetes writes them: the suffix family of the first operand, the largest suffix
# that keeps the number an integer (CanonicalizeBytes), values rounded up to nano units.

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def quantity_format(value: Any) -> str:
    """"BinarySI", "DecimalSI" or "DecimalExponent", from how ``value`` was written."""
    if isinstance(value, str):
        match = _QUANTITY.match(value.strip())
        if match and match.group(2):
            return "DecimalExponent"
        if match and match.group(3) and match.group(3).endswith("i"):
            return "BinarySI"
    return "DecimalSI"


def _decimal_text(value: Fraction, exponent_style: bool) -> str:
    # The value as an integer mantissa times 10^exponent, exponent a multiple of 3.
    exponent = -9
    mantissa = value * 10**9
    mantissa = Fraction(-((-mantissa.numerator) // mantissa.denominator))  # round up to nano units
    number = int(mantissa)
    if number == 0:
        return "0"
    while number % 1000 == 0 and exponent < 18:
        number //= 1000
        exponent += 3
    if exponent_style:
        return f"{number}e{exponent}" if exponent else str(number)
    return f"{number}{_DECIMAL_SUFFIXES[exponent]}"


def format_quantity(value: Fraction, fmt: str = "DecimalSI") -> str:
    """``value`` as Kubernetes prints a Quantity of format ``fmt``."""
    if fmt == "BinarySI" and abs(value) >= 1024 and value.denominator == 1:
        number, step = int(value), 0
        while number % 1024 == 0 and step < len(_BINARY_SUFFIXES) - 1:
            number //= 1024
            step += 1
        return f"{number}{_BINARY_SUFFIXES[step]}"
    return _decimal_text(value, fmt == "DecimalExponent")


def add_quantities(a: Any, b: Any) -> str:
    """``a + b`` printed in ``a``'s format (``b``'s when ``a`` is zero), as Quantity.Add keeps it."""
    left, right = parse_quantity(a) or Fraction(0), parse_quantity(b) or Fraction(0)
    fmt = quantity_format(a) if left != 0 else quantity_format(b)
    return format_quantity(left + right, fmt)
