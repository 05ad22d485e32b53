"""Resource quantities as the integers the scheduler adds up (milli-CPU, bytes, counts).

The exact parser lives in the machinery (``pilothouse.machinery.kinds.quantity.parse_quantity``,
Fractions, so "0.1" == "100m"); this module converts to Kubernetes' ``MilliValue()``/``Value()``
integers (rounded up, as resource.Quantity does) and caches by string, because every pod of a
benchmark repeats the same few quantities and Fraction arithmetic is slow.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from pilothouse.machinery.kinds.quantity import parse_quantity

__all__ = ["milli_value", "parse_quantity", "value"]


@lru_cache(maxsize=4096)
def _milli(text: str) -> int:
    parsed = parse_quantity(text)
    return 0 if parsed is None else math.ceil(parsed * 1000)


@lru_cache(maxsize=4096)
def _value(text: str) -> int:
    parsed = parse_quantity(text)
    return 0 if parsed is None else math.ceil(parsed)


def milli_value(quantity: Any) -> int:
    """``resource.Quantity.MilliValue()``: 0.1 -> 100, "250m" -> 250 (invalid -> 0)."""
    if isinstance(quantity, int) and not isinstance(quantity, bool):
        return quantity * 1000
    return _milli(str(quantity))


def value(quantity: Any) -> int:
    """``resource.Quantity.Value()``: "1Gi" -> 1073741824, "1e3" -> 1000, "100m" -> 1 (rounded up)."""
    if isinstance(quantity, int) and not isinstance(quantity, bool):
        return quantity
    return _value(str(quantity))
