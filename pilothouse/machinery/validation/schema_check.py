"""Check an object against its OpenAPI schema the way kube-apiserver's decoding does.

Why: a real apiserver decodes a built-in object into Go structs first. A wrong JSON type is a 400
``BadRequest`` carrying Go's decoder message; a field the struct lacks is an "unknown field"
(rejected with ``fieldValidation=Strict``, a ``Warning`` header with ``Warn``, dropped with
``Ignore``). Custom resources get the same unknown-field treatment (pruning) but type errors there
are 422 ``Invalid`` causes. This module reports all of that in one pass, never raising.

Speed: schemas are compiled once into :class:`_Node` trees (cached per definition, and per schema
object for custom resources), so checking a Pod touches each field once.

Paths: ``unknown_fields`` use the decoder's format, ``spec.template.spec.containers[0].imagee``
(no leading dot, list indices kept); Go's type errors name the path without indices
(``Container.spec.template.spec.containers.image``); :class:`FieldError` paths carry indices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.recent import Recent
from pilothouse.machinery.schema import Schema, definitions, types_of
from pilothouse.machinery.validation import literals

__all__ = ["SchemaReport", "check_against_schema", "decode_error_message"]

_REF_PREFIXES = ("#/$defs/", "#/definitions/", "#/components/schemas/")
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Definitions whose Go types decode themselves (custom UnmarshalJSON): checked by kind, not shape.
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "quantity",
    _META + "Time": "time",
    _META + "MicroTime": "microtime",
    _META + "FieldsV1": "any",
    _META + "Patch": "any",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "any",
}
#: Required by Kubernetes validation though optional in the schema.
_EXTRA_REQUIRED = {"io.k8s.api.core.v1.Container": ("image",)}
#: Root fields every object has, even when a custom resource's schema leaves them out.
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass
class SchemaReport:
    """What :func:`check_against_schema` found."""

    #: Wrong types, as 422 causes (``FieldValueTypeInvalid``).
    errors: list[FieldError] = field(default_factory=list)
    #: Go decoder messages for built-in kinds; non-empty means the apiserver answers 400
    #: (Kubernetes reports the first one).
    decode_errors: list[str] = field(default_factory=list)
    #: ``spec.foo``-style paths, in document order, without duplicates.
    unknown_fields: list[str] = field(default_factory=list)
    #: ``FieldValueRequired`` errors (only when asked for).
    missing_required: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.decode_errors or self.unknown_fields or self.missing_required)

    def strict_error(self) -> str:
        """The ``fieldValidation=Strict`` failure text (wrapped by the caller in a 400)."""
        return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in self.unknown_fields)

    def warnings(self) -> list[str]:
        """One ``Warning`` header text per unknown field, for ``fieldValidation=Warn``."""
        return [f'unknown field "{p}"' for p in self.unknown_fields]


def decode_error_message(kind: str, version: str, error: str) -> str:
    """How the apiserver wraps a decode error: ``Deployment in version "v1" cannot be handled as a
    Deployment: <error>``."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {error}'


class _Node:
    """A compiled schema. ``kind`` is one of: object, map, array, string, bytes, integer, number,
    boolean, intorstring, quantity, time, microtime, any."""

    __slots__ = ("def_name", "go_type", "items", "kind", "preserve", "props", "required", "struct",
                 "type_name", "typed", "values")

    def __init__(self, kind: str, typed: bool) -> None:
        self.kind = kind
        self.typed = typed
        self.props: dict[str, _Node] = {}
        self.required: tuple[str, ...] = ()
        self.items: _Node | None = None
        self.values: _Node | None = None
        self.preserve = False
        self.go_type = ""
        self.struct = ""
        self.type_name = kind  # the OpenAPI type word for CRD-style messages
        self.def_name = ""


@functools.cache
def _def_ids() -> dict[int, str]:
    return {id(schema): name for name, schema in definitions().items()}


_def_nodes: dict[str, _Node] = {}
# Custom resource schemas by identity; the schema is kept alive so its id is never reused.
_inline_nodes: dict[int, tuple[Schema, _Node]] = {}
_INLINE_CACHE_LIMIT = 512


def _ref_name(ref: str) -> str:
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref.rsplit("/", 1)[-1]


def _go_name(def_name: str) -> str:
    # io.k8s.api.apps.v1.DeploymentSpec -> v1.DeploymentSpec (Go's package.Type).
    parts = def_name.split(".")
    return ".".join(parts[-2:])


def _compile_def(name: str) -> _Node:
    node = _def_nodes.get(name)
    if node is None:
        schema = definitions().get(name)
        if schema is None:
            return _Node("any", True)
        special = _SPECIAL.get(name)
        if special:
            node = _Node(special, True)
            node.go_type = _go_name(name)
            node.type_name = {"intorstring": "integer-or-string", "quantity": "quantity"}.get(
                special, "string")
            _def_nodes[name] = node
            return node
        # Register before filling in: definitions refer to each other recursively.
        node = _Node("object", True)
        _def_nodes[name] = node
        _fill(node, schema, True)
        node.def_name = name
        node.go_type = _go_name(name)
        node.struct = name.rsplit(".", 1)[-1]
        node.required = tuple(node.required) + _EXTRA_REQUIRED.get(name, ())
    return node


def _compile(schema: Schema | None, typed: bool) -> _Node:
    if not schema:
        return _Node("any", typed)
    ref = schema.get("$ref")
    if ref is not None:
        return _compile_def(_ref_name(ref))
    all_of = schema.get("allOf")
    if all_of and len(all_of) == 1 and not schema.get("properties"):
        return _compile(all_of[0], typed)
    name = _def_ids().get(id(schema))
    if name is not None:
        return _compile_def(name)
    node = _Node("any", typed)
    _fill(node, schema, typed)
    return node


def _fill(node: _Node, schema: Schema, typed: bool) -> None:
    types = types_of(schema)
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if schema.get("x-kubernetes-int-or-string"):
        node.kind, node.go_type, node.type_name = "intorstring", "intstr.IntOrString", "integer-or-string"
        return
    one_of = schema.get("oneOf") or schema.get("anyOf")
    if one_of and not types:
        branch_types: set[str] = set()
        for branch in one_of:
            branch_types |= types_of(branch)
        if branch_types == {"string", "integer"}:
            node.kind, node.type_name = "intorstring", "integer-or-string"
        elif branch_types == {"string", "number"}:
            node.kind, node.type_name = "quantity", "quantity"
        return
    if "object" in types or (not types and ("properties" in schema or "additionalProperties" in schema)):
        additional = schema.get("additionalProperties")
        if "properties" not in schema and isinstance(additional, dict):
            node.kind = "map"
            node.values = _compile(additional, typed)
            node.go_type = "map[string]" + (node.values.go_type or "interface {}")
        else:
            node.kind = "object"
            node.props = {key: _compile(sub, typed) for key, sub in (schema.get("properties") or {}).items()}
            node.required = tuple(schema.get("required") or ())
            # Without declared fields (and no schema for extra ones) anything goes.
            node.preserve = preserve or (not node.props and additional is not False) or additional is True
        node.type_name = "object"
    elif "array" in types or (not types and "items" in schema):
        node.kind = "array"
        node.items = _compile(schema.get("items"), typed)
        node.go_type = "[]" + (node.items.go_type or "interface {}")
        node.type_name = "array"
    elif "string" in types:
        if schema.get("format") == "byte":
            node.kind, node.go_type = "bytes", "[]uint8"
        else:
            node.kind, node.go_type = "string", "string"
        node.type_name = "string"
    elif "integer" in types:
        node.kind = "integer"
        node.go_type = schema.get("format") or "int64"
        node.type_name = "integer"
    elif "number" in types:
        node.kind, node.go_type, node.type_name = "number", "float64", "number"
    elif "boolean" in types:
        node.kind, node.go_type, node.type_name = "boolean", "bool", "boolean"
    else:
        node.kind = "any"
    if preserve and node.kind == "any":
        node.preserve = True


def _root_node(schema: Schema) -> _Node:
    name = _def_ids().get(id(schema))
    if name is not None:
        return _compile_def(name)
    cached = _inline_nodes.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    node = _compile(schema, False)
    if node.kind == "object":
        # Every custom resource has these, whatever its schema says.
        node.props = dict(node.props)
        for key in _ROOT_FIELDS:
            if key not in node.props:
                node.props[key] = (_compile_def(_META + "ObjectMeta") if key == "metadata"
                                   else _Node("string", False))
    if len(_inline_nodes) >= _INLINE_CACHE_LIMIT:
        _inline_nodes.clear()
    _inline_nodes[id(schema)] = (schema, node)
    return node


class _Walk:
    """One pass over one object; collects into a report."""

    __slots__ = ("report", "required", "seen_unknown")

    def __init__(self, required: bool) -> None:
        self.report = SchemaReport()
        self.required = required
        self.seen_unknown: set[str] = set()

    def type_error(self, node: _Node, value: Any, path: str, struct: str, gopath: str,
                   number_detail: bool = False, go_type: str = "") -> None:
        actual = literals.schema_value_type(value)
        self.report.errors.append(FieldError(
            "FieldValueTypeInvalid", path, f'{path} in body must be of type {node.type_name}: "{actual}"',
            actual))
        if node.typed:
            self.report.decode_errors.append(literals.unmarshal_error(
                value, go_type or node.go_type, struct, gopath, number_detail))

    def walk(self, node: _Node, value: Any, path: str, struct: str, gopath: str) -> None:
        if value is None:
            return  # JSON null decodes to the zero value everywhere
        kind = node.kind
        if kind == "object":
            if not isinstance(value, dict):
                self.type_error(node, value, path, struct, gopath)
                return
            self.walk_object(node, value, path, struct, gopath)
        elif kind == "string":
            if not isinstance(value, str):
                self.type_error(node, value, path, struct, gopath)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.type_error(node, value, path, struct, gopath)
            elif isinstance(value, float):
                self.type_error(node, value, path, struct, gopath, number_detail=True)
            else:
                bounds = literals.INT_RANGES.get(node.go_type)
                if bounds and not bounds[0] <= value <= bounds[1] and node.typed:
                    self.report.decode_errors.append(literals.unmarshal_error(
                        value, node.go_type, struct, gopath, number_detail=True))
        elif kind == "array":
            if not isinstance(value, list):
                self.type_error(node, value, path, struct, gopath)
                return
            items = node.items
            if items is not None and items.kind != "any":
                for index, item in enumerate(value):
                    self.walk(items, item, f"{path}[{index}]", struct, gopath)
        elif kind == "map":
            if not isinstance(value, dict):
                self.type_error(node, value, path, struct, gopath)
                return
            values = node.values
            if values is not None and values.kind != "any":
                for key, item in value.items():
                    self.walk(values, item, f"{path}.{key}" if path else key, struct, gopath)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.type_error(node, value, path, struct, gopath)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.type_error(node, value, path, struct, gopath)
        else:
            self.walk_special(node, value, path, struct, gopath)

    def walk_special(self, node: _Node, value: Any, path: str, struct: str, gopath: str) -> None:
        kind = node.kind
        if kind == "intorstring":
            if isinstance(value, str):
                return
            if isinstance(value, bool) or not isinstance(value, int):
                # IntOrString decodes a non-string as int32, so Go names that type.
                self.type_error(node, value, path, struct, gopath,
                                number_detail=isinstance(value, float), go_type="int32")
        elif kind == "quantity":
            if not node.typed:
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    self.type_error(node, value, path, struct, gopath)
                return
            problem = literals.quantity_error(value)
            if problem:
                self.report.errors.append(FieldError("FieldValueInvalid", path, problem, value))
                self.report.decode_errors.append(problem)
        elif kind in ("time", "microtime"):
            if not isinstance(value, str):
                self.type_error(node, value, path, struct, gopath, go_type="string")
                return
            problem = literals.time_error(value, micro=kind == "microtime")
            if problem:
                self.report.errors.append(FieldError("FieldValueInvalid", path, problem, value))
                self.report.decode_errors.append(problem)
        elif kind == "bytes":
            if not isinstance(value, str):
                self.type_error(node, value, path, struct, gopath)
                return
            problem = literals.base64_error(value)
            if problem and node.typed:
                self.report.errors.append(FieldError("FieldValueInvalid", path, problem, "<bytes>"))
                self.report.decode_errors.append(problem)

    def walk_object(self, node: _Node, value: dict[str, Any], path: str, struct: str, gopath: str,
                    root: bool = False) -> None:
        props = node.props
        child_struct = node.struct or struct
        prefix = f"{path}." if path else ""
        goprefix = f"{gopath}." if gopath else ""
        for key, item in value.items():
            sub = props.get(key)
            if sub is None:
                if not node.preserve:
                    unknown = prefix + key
                    if unknown not in self.seen_unknown:
                        self.seen_unknown.add(unknown)
                        self.report.unknown_fields.append(unknown)
                continue
            if sub.kind == "any" or item is None:
                continue
            if root and sub.kind == "object" and isinstance(item, dict):
                self.walk_remembered(sub, item, prefix + key, child_struct, goprefix + key)
            else:
                self.walk(sub, item, prefix + key, child_struct, goprefix + key)
        if self.required and node.required:
            for key in node.required:
                present = value.get(key)
                if present is None or present == "":
                    self.report.missing_required.append(FieldError("FieldValueRequired", prefix + key))


    def walk_remembered(self, node: _Node, value: dict[str, Any], path: str, struct: str, gopath: str) -> None:
        """:meth:`walk` of a top-level map (``spec``, ``data``...), skipped when the same JSON passed
        under the same schema node lately: objects made from one template repeat their spec."""
        try:
            key = (id(node), self.required, path, orjson.dumps(value))
        except TypeError:  # not JSON: just walk it
            self.walk(node, value, path, struct, gopath)
            return
        if _CLEAN_SUBTREES.get(key) is node:
            return
        report = self.report
        before = (len(report.errors), len(report.decode_errors), len(report.unknown_fields),
                  len(report.missing_required))
        self.walk(node, value, path, struct, gopath)
        if before == (len(report.errors), len(report.decode_errors), len(report.unknown_fields),
                      len(report.missing_required)):
            _CLEAN_SUBTREES.put(key, node)  # held, so that its id cannot be another node's meanwhile


#: Top-level maps that walked clean (nothing reported) lately, by schema node, mode, path and JSON.
_CLEAN_SUBTREES: Recent[tuple[int, bool, str, bytes], _Node] = Recent(512)


def check_against_schema(obj: Object, schema: Schema, *, check_required: bool = False) -> SchemaReport:
    """Check ``obj`` against ``schema`` (a kind's definition from
    :func:`pilothouse.machinery.schema.schema_for_kind`, or a custom resource's
    ``openAPIV3Schema``).

    ``check_required``: also report fields the schema marks required (plus ``containers[].image``),
    outside ``metadata`` and ``status``; off by default because the server defaults many of them
    and each kind's own validation words the real requirements.
    """
    node = _root_node(schema)
    walk = _Walk(check_required)
    if node.kind == "object" and isinstance(obj, dict):
        walk.walk_object(node, obj, "", "", "", root=True)
        if check_required:
            walk.report.missing_required = [
                e for e in walk.report.missing_required
                if not e.field.startswith(("metadata.", "status."))
            ]
    else:
        walk.walk(node, obj, "", "", "")
    return walk.report
