"""A CRD version's schema compiled once into closures (``compile_schema``): validity, pruning, defaulting.

Why: every write of a custom resource used to walk the schema dict per request, asking each node
for every keyword it might carry (``s.get("maxLength")``, ``properties(s)``, ``carries(s, ...)``) and
building a field path for every value on the way, though almost every object is valid and has
nothing to prune or default. kube-apiserver does the same work once per CRD version too (it builds
a ``structuralschema.Structural`` and a validator from it when the CRD is registered). Here each
node becomes a closure that holds only the checks its keywords ask for, with its children's
closures, so a request runs straight-line code per value and builds no path unless something is
reported.

What each closure must keep is the interpreted code's exact behaviour, messages included:

- :attr:`CompiledSchema.valid` answers "does ``validate_instance`` report nothing for this value?"
  conservatively: True only when the interpreter would find no failure; on False (or any keyword
  it does not specialise: formats, enums, ``anyOf``/``oneOf``/``allOf``/``not``, ``multipleOf``,
  ``uniqueItems``, int-or-string) the interpreter in ``instance`` runs and words the errors, so
  messages come from one place. Ratcheting only ever removes failures, so a valid value needs no
  old object.
- :attr:`CompiledSchema.prune` is ``pruning.prune`` (the resource root an embedded resource, its
  ``metadata`` pruned as an ObjectMeta), paths built only for what is removed.
- :attr:`CompiledSchema.default` is ``defaulting.apply_defaults``: the non-nullable nulls without a
  default dropped over the whole object, then defaults filled in where the schema has any.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilothouse.machinery.apiextensions.formats import supported_format
from pilothouse.machinery.apiextensions.instance import has_failures, pattern_of
from pilothouse.machinery.apiextensions.nodes import Schema, carries, node, number, properties
from pilothouse.machinery.apiextensions.pruning import META_FIELDS, OBJECT_META
from pilothouse.machinery.schema import definitions, resolve

__all__ = ["CompiledSchema", "compile_schema"]

Check = Callable[[Any], bool]
#: A path as a chain of (parent, segment) pairs, turned into text only when a field is pruned.
Path = tuple[Any, str | int] | None
Pruner = Callable[[Any, Path, list[str]], None]
Walker = Callable[[Any], None]


@dataclass(frozen=True)
class CompiledSchema:
    """One CRD version's ``openAPIV3Schema`` and what it compiles to."""

    schema: Schema
    valid: Check
    prune_root: Pruner
    drop_nulls: Walker | None
    fill_defaults: Walker | None

    def prune(self, obj: Any) -> list[str]:
        """``pruning.prune(schema, obj)``: unknown fields removed in place, their paths sorted."""
        pruned: list[str] = []
        self.prune_root(obj, None, pruned)
        return sorted(pruned)

    def default(self, obj: Any) -> None:
        """``defaulting.apply_defaults(schema, obj)``."""
        if self.drop_nulls is not None:
            self.drop_nulls(obj)
        if self.fill_defaults is not None:
            self.fill_defaults(obj)


def compile_schema(schema: Schema) -> CompiledSchema:
    return CompiledSchema(schema, _valid(schema), _pruner({**schema, "x-kubernetes-embedded-resource": True}, False),
                          _null_dropper(schema), _defaulter(schema))


# -- validity -----------------------------------------------------------------------------------

#: Keywords whose checks only the interpreter makes (rare in CRDs; it also words their errors).
_INTERPRETED = frozenset({"anyOf", "oneOf", "allOf", "not", "enum", "uniqueItems", "multipleOf",
                          "x-kubernetes-int-or-string"})
_PY_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                          "boolean": (bool,), "array": (list,), "object": (dict,)}
_ANY = (str, int, float, bool, list, dict)


def _interpreted(s: Schema) -> Check:
    return lambda data: not has_failures(s, data)


def _valid(s: Schema) -> Check:
    type_ = s.get("type")
    if (not _INTERPRETED.isdisjoint(s) or supported_format(s.get("format"))
            or (type_ is not None and type_ != "" and (not isinstance(type_, str) or type_ not in _PY_TYPES))):
        return _interpreted(s)
    accepted = _PY_TYPES[type_] if type_ else _ANY
    null_ok = not type_ or bool(s.get("nullable"))
    string = _string_check(s)
    numeric = _number_check(s)
    array = _array_check(s)
    obj = _object_check(s)

    def check(data: Any) -> bool:
        if data is None:
            return null_ok
        kind = type(data)
        if kind not in accepted:
            return False  # (an integral float for an integer, say: the interpreter decides)
        if kind is dict:
            return obj is None or obj(data)
        if kind is str:
            return string is None or string(data)
        if kind is list:
            return array is None or array(data)
        if kind is int or kind is float:
            return numeric is None or numeric(data)
        return True

    return check


def _string_check(s: Schema) -> Check | None:
    max_length, min_length, pattern = s.get("maxLength"), s.get("minLength"), s.get("pattern")
    max_length = max_length if isinstance(max_length, int) else None
    min_length = min_length if isinstance(min_length, int) else None
    compiled = pattern_of(pattern) if isinstance(pattern, str) and pattern else None
    if max_length is None and min_length is None and compiled is None:
        return None

    def check(data: str) -> bool:
        if max_length is not None and len(data) > max_length:
            return False
        if min_length is not None and len(data) < min_length:
            return False
        return compiled is None or compiled.search(data) is not None

    return check


def _number_check(s: Schema) -> Check | None:
    minimum, maximum = number(s.get("minimum")), number(s.get("maximum"))
    if minimum is None and maximum is None:
        return None
    exclusive_min, exclusive_max = bool(s.get("exclusiveMinimum")), bool(s.get("exclusiveMaximum"))

    def check(data: int | float) -> bool:
        # instance._bound: an integer is compared with int64(limit), a float with the float.
        if minimum is not None:
            bound = int(minimum) if isinstance(data, int) else float(minimum)
            if data <= bound if exclusive_min else data < bound:
                return False
        if maximum is not None:
            bound = int(maximum) if isinstance(data, int) else float(maximum)
            if data >= bound if exclusive_max else data > bound:
                return False
        return True

    return check


def _array_check(s: Schema) -> Check | None:
    items = s.get("items")
    item = _valid(items) if isinstance(items, dict) else None
    min_items, max_items = s.get("minItems"), s.get("maxItems")
    min_items = min_items if isinstance(min_items, int) else None
    max_items = max_items if isinstance(max_items, int) else None
    if item is None and min_items is None and max_items is None:
        return None

    def check(data: list[Any]) -> bool:
        if min_items is not None and len(data) < min_items:
            return False
        if max_items is not None and len(data) > max_items:
            return False
        return item is None or all(item(value) for value in data)

    return check


def _object_check(s: Schema) -> Check | None:
    min_props, max_props = s.get("minProperties"), s.get("maxProperties")
    min_props = min_props if isinstance(min_props, int) else None
    max_props = max_props if isinstance(max_props, int) else None
    declared = {name: _valid(sub) for name, sub in properties(s).items()}
    additional = s.get("additionalProperties")
    # What a property the schema does not declare must satisfy (None: anything goes).
    undeclared: Check | None = _never if additional is False else (
        _valid(additional) if isinstance(additional, dict) else None)
    required = [name for name in s.get("required") or () if isinstance(name, str)]
    if s.get("required") and len(required) != len(s["required"]):
        return _interpreted(s)  # a malformed required list: let the interpreter judge
    if not declared and undeclared is None and not required and min_props is None and max_props is None:
        return None
    checks = tuple(declared.items())

    def check(data: dict[str, Any]) -> bool:
        if min_props is not None and len(data) < min_props:
            return False
        if max_props is not None and len(data) > max_props:
            return False
        for name in required:
            if name not in data:
                return False
        if undeclared is not None:
            for name, value in data.items():
                if name not in declared and not undeclared(value):
                    return False
        return all(name not in data or valid(data[name]) for name, valid in checks)

    return check


def _never(value: Any) -> bool:
    return False


# -- pruning ------------------------------------------------------------------------------------

def path_text(path: Path) -> str:
    """The ``UnknownFieldPathOptions`` text of a path chain (``spec.items[0].bar``), built as
    ``pruning._key`` and its ``[i]`` build it, one segment at a time."""
    segments: list[str | int] = []
    while path is not None:
        path, segment = path
        segments.append(segment)
    text = ""
    for segment in reversed(segments):
        text = f"{text}[{segment}]" if isinstance(segment, int) else f"{text}.{segment}" if text else segment
    return text


def _pruner(s: Schema | None, inherited: bool) -> Pruner:
    """``pruning._prune`` for node ``s``; ``inherited``: under preserve-unknown-fields through a list."""
    preserving = inherited or bool(s is not None and s.get("x-kubernetes-preserve-unknown-fields"))
    if preserving and s is None:
        return _keep
    if s is None:
        return _drop_all
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    declared = {name: _pruner(sub, False) for name, sub in properties(s).items()}
    additional = (_pruner(node(s.get("additionalProperties")), False)
                  if s.get("additionalProperties") is not None else None)
    items = _pruner(node(s.get("items")), preserving)

    def prune(x: Any, path: Path, pruned: list[str]) -> None:
        if isinstance(x, dict):
            for name in list(x):
                if embedded and name in META_FIELDS:
                    if name == "metadata":
                        _object_meta()(x[name], (path, name), pruned)
                    continue
                sub = declared.get(name, additional)
                if sub is not None:
                    if isinstance(value := x[name], dict | list):  # scalars have nothing to prune
                        sub(value, (path, name), pruned)
                elif not preserving:
                    if name not in META_FIELDS or path_text(path):
                        pruned.append(path_text((path, name)))
                    del x[name]
        elif isinstance(x, list):
            for i, item in enumerate(x):
                if isinstance(item, dict | list):
                    items(item, (path, i), pruned)

    return prune


def _keep(x: Any, path: Path, pruned: list[str]) -> None:
    return None


def _drop_all(x: Any, path: Path, pruned: list[str]) -> None:
    """No schema and not preserving: a map loses every key; a list's items are looked at alike."""
    if isinstance(x, dict):
        pruned.extend(path_text((path, name)) for name in x)
        x.clear()
    elif isinstance(x, list):
        for i, item in enumerate(x):
            _drop_all(item, (path, i), pruned)


class _Official:
    """``pruning._prune_official`` for one official schema, its children built on first use (the
    official definitions are module-level and never change)."""

    def __init__(self, schema: Schema) -> None:
        schema = resolve(schema)
        declared, additional, items = schema.get("properties"), schema.get("additionalProperties"), schema.get("items")
        self._declared = declared if isinstance(declared, dict) else None
        self._additional = additional if isinstance(additional, dict) else None
        self._items = items if isinstance(items, dict) else None
        self._children: dict[str, _Official] = {}

    def _child(self, name: str, schema: Schema) -> _Official:
        found = self._children.get(name)
        if found is None:
            found = self._children[name] = _Official(schema)
        return found

    def __call__(self, x: Any, path: Path, pruned: list[str]) -> None:
        if isinstance(x, dict):
            if self._declared is not None:
                for name in list(x):
                    sub = self._declared.get(name)
                    if sub is None:
                        pruned.append(path_text((path, name)))
                        del x[name]
                    elif isinstance(value := x[name], dict | list):  # scalars have nothing to prune
                        self._child(name, sub)(value, (path, name), pruned)
            elif self._additional is not None:
                below = self._child("*additionalProperties*", self._additional)
                for name, value in x.items():
                    below(value, (path, name), pruned)
        elif isinstance(x, list) and self._items is not None:
            below = self._child("*items*", self._items)
            for i, value in enumerate(x):
                below(value, (path, i), pruned)


@functools.cache
def _object_meta() -> _Official:
    """ObjectMeta's pruner, built on first use."""
    return _Official(definitions()[OBJECT_META])


# -- defaulting ---------------------------------------------------------------------------------

def _null_dropper(s: Schema | None) -> Walker | None:
    """``defaulting._prune_nulls`` for node ``s``; None where it can change nothing."""
    if s is None:
        return None
    declared = properties(s)
    additional = node(s.get("additionalProperties"))
    items = node(s.get("items"))
    if not declared and additional is None and items is None:
        return None
    children = {name: (_drops(sub), _null_dropper(sub)) for name, sub in declared.items()}
    other = (_drops(additional), _null_dropper(additional)) if additional is not None else None
    item = _null_dropper(items)

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for name in list(x):
                found = children.get(name, other)
                if found is None:
                    continue
                drops, below = found
                value = x[name]
                if value is None:
                    if drops:
                        del x[name]
                elif below is not None:
                    below(value)
        elif isinstance(x, list) and item is not None:
            for value in x:
                item(value)

    return walk


def _drops(s: Schema) -> bool:
    """A null under ``s`` is dropped: not nullable and no default."""
    return not s.get("nullable") and s.get("default") is None


def _defaulter(s: Schema | None) -> Walker | None:
    """``defaulting._default`` for node ``s``; None where the subtree sets no default."""
    if s is None or not carries(s, "default"):
        return None
    declared = properties(s)
    defaults = [(name, sub["default"], bool(sub.get("nullable"))) for name, sub in declared.items()
                if sub.get("default") is not None]
    below = [(name, walker) for name, sub in declared.items() if (walker := _defaulter(sub)) is not None]
    additional = node(s.get("additionalProperties"))
    other = _defaulter(additional)
    other_default = additional.get("default") if additional is not None else None
    other_nullable = bool(additional.get("nullable")) if additional is not None else False
    items = node(s.get("items"))
    item = _defaulter(items)
    item_default = items.get("default") if items is not None else None
    item_nullable = bool(items.get("nullable")) if items is not None else False

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for name, default, nullable in defaults:
                if name not in x or (x[name] is None and not nullable):
                    x[name] = copy.deepcopy(default)
            for name, walker in below:
                if name in x:
                    walker(x[name])
            if additional is not None and (other is not None or other_default is not None):
                for name in list(x):
                    if name in declared:
                        continue
                    if x[name] is None and other_default is not None and not other_nullable:
                        x[name] = copy.deepcopy(other_default)
                    if other is not None:
                        other(x[name])
        elif isinstance(x, list) and items is not None:
            for i in range(len(x)):
                if x[i] is None and item_default is not None and not item_nullable:
                    x[i] = copy.deepcopy(item_default)
                if item is not None:
                    item(x[i])

    return walk
