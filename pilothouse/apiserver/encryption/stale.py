"""The mark on an entry read with an old key or provider, so that an update rewrites it.

Kubernetes' etcd3 store rewrites such an object even when an update changes nothing
(``GuaranteedUpdate`` with ``stale``): that is what makes ``kubectl replace`` of every Secret
re-encrypt them with the new first key during rotation. The mark rides on the entry's type, so the
registry needs no extra argument and an unmarked entry costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.store.interface import KeyValue

__all__ = ["StaleKeyValue", "is_stale"]


@dataclass(frozen=True, slots=True)
class StaleKeyValue(KeyValue):
    """A :class:`KeyValue` whose stored form is not what the current configuration would write."""


def is_stale(kv: KeyValue) -> bool:
    return type(kv) is StaleKeyValue
