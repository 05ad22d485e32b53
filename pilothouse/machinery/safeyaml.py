"""YAML request bodies that cannot take the server down: bounded nesting, bounded alias expansion.

PyYAML's composer and constructor recurse once per nesting level, so a deeply nested document ends in
a ``RecursionError`` deep in the loader; and a "billion laughs" document (a few anchors, each aliased
nine times by the next) loads as a small graph of shared lists that every later step (validation,
pruning, encoding) walks as ~10⁹ nodes. go-yaml, which kube-apiserver decodes YAML with, refuses both
("exceeded max depth", "document contains excessive aliasing"); so does :func:`load`, before and
right after constructing: the events are scanned first (PyYAML's parser is a state machine, no
recursion), and only a document that used aliases has its expanded size counted.
"""

from __future__ import annotations

from typing import Any

import yaml

from pilothouse.machinery.bodyshape import MAX_DEPTH

__all__ = ["MAX_EXPANDED_NODES", "load"]

#: Values a document may expand to through its aliases (go-yaml allows bounded aliasing the same way).
MAX_EXPANDED_NODES = 1_000_000

_INT64 = range(-(2**63), 2**63)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose integers beyond int64 become floats, as a JSON body's do (orjson, and
    kube-apiserver's unstructured decoding: Int64, else Float64); a Python int no JSON encoder here
    can write would otherwise fail far from the request, as a 500."""

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int | float:
        value = self.construct_yaml_int(node)
        return value if value in _INT64 else float(value)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)

_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _scan(raw: bytes) -> bool:
    """Refuse a document nested deeper than :data:`MAX_DEPTH`; whether it uses aliases."""
    depth, aliases = 0, False
    for event in yaml.parse(raw, Loader=_Loader):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError(f"yaml: exceeded max depth of {MAX_DEPTH}")
        elif isinstance(event, _CLOSE):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases = True
    return aliases


_IN_PROGRESS = -1


def _expanded_size(value: Any, sizes: dict[int, int]) -> int:
    """Nodes of ``value`` with every shared subtree counted each time it appears (memoised by
    identity, so this costs the size of the graph, not of its expansion)."""
    if not isinstance(value, dict | list):
        return 1
    known = sizes.get(id(value))
    if known == _IN_PROGRESS:  # an alias inside its own anchor (``a: &a [*a]``): endless
        raise yaml.YAMLError("yaml: document contains an alias cycle")
    if known is None:
        sizes[id(value)] = _IN_PROGRESS
        children = value.values() if isinstance(value, dict) else value
        known = 1 + sum(_expanded_size(child, sizes) for child in children)
        sizes[id(value)] = known
    return known


def load(raw: bytes) -> Any:
    """``yaml.safe_load`` with the limits above and int64-bounded integers; every refusal is a
    ``yaml.YAMLError``."""
    aliased = _scan(raw)
    value = yaml.load(raw, Loader=_Loader)  # a SafeLoader subclass
    if aliased and _expanded_size(value, {}) > MAX_EXPANDED_NODES:
        raise yaml.YAMLError("yaml: document contains excessive aliasing")
    return value
