"""What an exact-match field selector lets reads skip without decoding objects (issue 16: 150,000 pods).

Two uses of one rule, kube-apiserver's watch cache ``TriggerFunc`` and its ``Indexers``:

* **Watch triggers.** A kubelet watches its pods with ``fieldSelector=spec.nodeName=<node>``;
  kube-apiserver's cacher indexes pod watchers by that value so an event reaches the watchers of the
  pod's old and new node only. Here the same narrowing is handed to the store as a
  :class:`WatchTrigger`.
* **List indexes.** The same term is handed to the store as a :class:`ListIndex`; the SQLite store
  reads only the pods of that node from an index on ``spec.nodeName`` (5,000 kubelets' lists).
* **List prefilters.** A list with ``spec.nodeName=<node>`` used to decode every pod to read one
  field (150,000 decodes per kubelet list); the stored bytes are searched for the field first.

* **Watch filtering without decoding.** A watch whose whole selector is that one term (a kubelet's)
  is decided from the field's value alone: :class:`FieldReaders` remembers it per stored entry, so
  the store's fan-out and the watch read it once per event between them, and the event is served
  from the shared stored bytes (it used to decode the event and its previous object, and encode
  the event again, per watcher).

* **Watch filtering from the bytes.** Any other field selector on plain string fields
  (``Strategy.plain_fields``: kube-scheduler's ``status.phase!=Succeeded,status.phase!=Failed``) is
  decided from whether the stored bytes hold each term's value (:func:`byte_decider`); only an entry
  that holds one is decoded and matched exactly.

Both apply to an exact-match term on ``metadata.name`` (read off the key) or on a field the kind
lists in ``Strategy.watch_index`` (pods: ``spec.nodeName``). Both are only ever narrower than
nothing: the registry still filters every object it keeps exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.selectors import FieldSelector
from pilothouse.store.interface import FieldExtractor, KeyValue, ListIndex, WatchTrigger
from pilothouse.store.watchhub import FieldMemo

__all__ = ["FieldReaders", "byte_decider", "exact_term", "list_index", "list_prefilter", "trigger_for"]

Prefilter = Callable[[KeyValue], bool]


def _name_from_key(kv: KeyValue) -> str | None:
    """``/registry/<group>/<plural>/[<namespace>/]<name>`` → the name."""
    return kv.key[kv.key.rfind("/") + 1:]


@functools.cache
def _field_extractor(field: str, selectable: Callable[[dict[str, Any]], dict[str, str]]) -> FieldExtractor:
    """One extractor object per (field, kind's selectable fields): the store indexes by it, so every
    watcher of that field shares one index and one read per event."""

    def extract(kv: KeyValue) -> str | None:
        try:
            obj = orjson.loads(kv.value)
            return selectable(obj).get(field)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            return None  # not readable here (an encrypted value): every watcher of the field gets it

    return extract


class FieldReaders:
    """One storage's readers of its indexed fields, one object per field: the store's watch index
    keys on the extractor object, and the registry's watch filter asks the same one, so a field is
    read (decoded) once per event for both."""

    def __init__(self, resource: ResourceType) -> None:
        self._resource = resource
        self._readers: dict[str, FieldExtractor] = {}

    def reader(self, field: str) -> FieldExtractor:
        if field == "metadata.name":
            return _name_from_key  # read off the key: nothing to remember
        found = self._readers.get(field)
        if found is None:
            extract = _field_extractor(field, self._resource.strategy.selectable_fields)
            found = self._readers[field] = FieldMemo(extract)
        return found


def _indexed_term(resource: ResourceType, fields: FieldSelector) -> tuple[str, str] | None:
    """The first exact-match term on ``metadata.name`` or an indexed field: (field, value)."""
    name = fields.required_value("metadata.name")
    if name is not None:
        return "metadata.name", name
    strategy = resource.strategy
    if strategy.decorate is not None:
        return None  # served objects differ from stored ones: the stored field may not be the served one
    for field in strategy.watch_index:
        value = fields.required_value(field)
        if value is not None:
            return field, value
    return None


def trigger_for(resource: ResourceType, fields: FieldSelector, readers: FieldReaders) -> WatchTrigger | None:
    """The trigger for a watch with ``fields``, or None when the selector pins no indexed field."""
    term = _indexed_term(resource, fields)
    if term is None:
        return None
    field, value = term
    # The list prefilter doubles as the trigger's cheap test: history replays skip with it (watchhub).
    may_match = list_prefilter(resource, fields)
    if field == "metadata.name":
        return WatchTrigger(readers.reader(field), value, may_match)
    # An empty value also matches objects without the field, which no index holds.
    return WatchTrigger(readers.reader(field), value, may_match, field if value else None)


def exact_term(resource: ResourceType, fields: FieldSelector, readers: FieldReaders,
               ) -> tuple[FieldExtractor, str] | None:
    """(reader, value) when ``fields`` is exactly one ``field=value`` term on an indexed field, so
    that whether a stored object matches is ``reader(kv) == value``; None otherwise. A reader that
    returns None (the field absent, or a value it cannot read) leaves the answer to decoding."""
    if len(fields.terms) != 1 or fields.terms[0][1] != "=":
        return None
    term = _indexed_term(resource, fields)
    if term is None:
        return None
    return readers.reader(term[0]), term[1]


def list_prefilter(resource: ResourceType, fields: FieldSelector) -> Prefilter | None:
    """A test on stored entries that is False only for objects the selector cannot match, cheaper
    than decoding them; None when the selector pins no indexed field."""
    term = _indexed_term(resource, fields)
    if term is None:
        return None
    field, value = term
    if field == "metadata.name":
        return lambda kv: kv.key.endswith("/" + value)
    if not value:
        return None  # "field is empty" also matches objects without the field: nothing to search for
    # An indexed field is a plain string at its JSON path (see _may_hold): an object without those
    # bytes cannot hold that value. An object with them is decoded and checked exactly.
    may_hold = _may_hold(field, value)

    def may_match(kv: KeyValue) -> bool:
        # Bytes not laid out by encode_for_store (metadata first) are decoded and checked: no guess.
        return may_hold(kv.value) or kv.value.find(b'"metadata":{', 0, 200) < 0

    return may_match


def _may_hold(field: str, value: str) -> Callable[[bytes], bool]:
    """False only when stored bytes cannot hold ``value`` at ``field`` (a plain string at its JSON
    path, which encode_for_store writes as ``"<last segment>":"<value>"``: orjson, no spaces, one
    escaping); True when they may (those bytes are somewhere in the object)."""
    needle = b'"' + field.rsplit(".", 1)[-1].encode() + b'":' + orjson.dumps(value)
    return lambda value_bytes: needle in value_bytes


def byte_decider(resource: ResourceType, fields: FieldSelector) -> Callable[[KeyValue], bool | None] | None:
    """Whether a stored entry matches ``fields``, decided from its bytes where they settle it: a
    ``field=value`` term whose bytes are absent fails, a ``field!=value`` term whose bytes are absent
    holds (the field has another value, or none). None from the decider when some term's bytes are
    there (the caller decodes and matches exactly); None instead of a decider when a term is on a
    field that is not a plain string (``Strategy.plain_fields``, ``watch_index``) or asks for an
    empty value (which a missing field also has), or the kind decorates what it serves."""
    strategy = resource.strategy
    plain = set(strategy.plain_fields) | set(strategy.watch_index)
    if fields.empty() or strategy.decorate is not None:
        return None
    terms: list[tuple[bool, Callable[[bytes], bool]]] = []
    for field, operator, value in fields.terms:
        if field not in plain or not value:
            return None
        terms.append((operator == "=", _may_hold(field, value)))

    def decide(kv: KeyValue) -> bool | None:
        value_bytes = kv.value
        if value_bytes.find(b'"metadata":{', 0, 200) < 0:
            return None  # not laid out by encode_for_store: decode, no guess
        unsettled = False
        for equal, may_hold in terms:
            if may_hold(value_bytes):
                unsettled = True
            elif equal:
                return False  # field=value, and the value is not there
        return None if unsettled else True

    return decide


def list_index(resource: ResourceType, fields: FieldSelector) -> ListIndex | None:
    """The store index a list with ``fields`` may read from: an exact, non-empty value of an
    indexed field (an empty one also matches objects without the field, which no index holds)."""
    term = _indexed_term(resource, fields)
    if term is None or term[0] == "metadata.name" or not term[1]:
        return None
    return ListIndex(*term)
