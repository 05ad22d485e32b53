"""OpenAPI v3 validation of a custom resource, as kube-apiserver runs it (``validate_instance``).

A port of kube-openapi's ``pkg/validation/validate`` schema validator (the validators run in its
order: type, allOf/anyOf/oneOf/not, string, format, number, array, enum, object) and of
apiextensions' ``kubeOpenAPIResultToFieldErrors``, which turns each validator message into a
``field.Error``: ``spec.replicas: Invalid value: "string": spec.replicas in body must be of type
integer: "string"``. Then the two structural passes the custom resource strategy adds: embedded
resources (``embedded``) and ``x-kubernetes-list-type`` set/map uniqueness (``listtype``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilothouse.machinery.apiextensions.correlation import ABSENT, canonical, entry, same
from pilothouse.machinery.apiextensions.correlation import items as correlated_items
from pilothouse.machinery.apiextensions.embedded import validate_embedded_resources
from pilothouse.machinery.apiextensions.formats import format_valid, supported_format
from pilothouse.machinery.apiextensions.listtype import validate_list_sets_and_maps
from pilothouse.machinery.apiextensions.nodes import Schema, number, properties
from pilothouse.machinery.apiextensions.paths import (
    NIL_PATH,
    go_json,
    go_json_value,
    go_number,
    go_quote,
    index,
    json_type,
)
from pilothouse.machinery.apiextensions.paths import (
    child as path_child,
)
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import invalid, not_supported, required

__all__ = ["has_failures", "pattern_of", "validate_instance"]

_IN = "body"

# Codes of kube-openapi's errors that kubeOpenAPIResultToFieldErrors treats specially.
_REQUIRED, _ENUM, _TOO_LONG, _MAX_ITEMS, _TOO_MANY_PROPS, _INVALID_TYPE, _OTHER = range(7)


@dataclass
class _Failure:
    """One kube-openapi ``errors.Validation`` (``composite`` for the allOf/anyOf/oneOf/not ones)."""

    code: int
    name: str
    message: str
    value: Any = None
    valid: Any = None
    values: list[Any] = field(default_factory=list)
    composite: bool = False


def validate_instance(schema: Schema, obj: Any, old: Any = None,
                      valid: Callable[[Any], bool] | None = None) -> list[FieldError]:
    """The field errors Kubernetes reports for ``obj`` against a structural ``openAPIV3Schema``.

    With ``old`` (an update) validation ratchets as in 1.32 (CRDValidationRatcheting): a part of
    the object equal to its correlated old value reports nothing, and list set/map uniqueness is
    only enforced if the old object already satisfied it. ``valid``: the schema compiled
    (``compiled.CompiledSchema.valid``), which spares the walk below when it vouches for ``obj``.
    """
    failures: list[_Failure] = []
    if valid is None or not valid(obj):
        _validate(schema, "", obj, failures, ABSENT if old is None else old)
    errors = [_to_field_error(f) for f in failures]
    errors += validate_embedded_resources(schema, obj)
    if old is None or not validate_list_sets_and_maps(schema, old):
        errors += validate_list_sets_and_maps(schema, obj)
    return errors


def has_failures(schema: Schema, data: Any) -> bool:
    """Whether the schema validator finds anything wrong with ``data`` (on a create)."""
    failures: list[_Failure] = []
    _validate(schema, "", data, failures)
    return bool(failures)


def _to_field_error(f: _Failure) -> FieldError:
    if f.composite:
        return invalid(NIL_PATH, "", f.message)
    name = f.name.removeprefix(".") if f.name not in ("", ".") else ""
    path = name or NIL_PATH
    if f.code == _REQUIRED:
        return required(path)
    if f.code == _ENUM:
        values = [v if isinstance(v, str) else go_json(v) for v in f.values]
        return not_supported(path, go_json_value(f.value), values)
    if f.code == _TOO_LONG:  # field.TooLong of 1.32: the limit in bytes, whatever maxLength counts
        return FieldError("FieldValueTooLong", path, f"may not be more than {f.valid} bytes", None)
    if f.code in (_MAX_ITEMS, _TOO_MANY_PROPS):  # field.TooMany, for properties too
        return FieldError("FieldValueTooMany", path, f"must have at most {f.valid} items", f.value)
    if f.code == _INVALID_TYPE:
        return FieldError("FieldValueTypeInvalid", path, f.message, go_json_value("" if f.value is None else f.value))
    return invalid(path, go_json_value("" if f.value is None else f.value), f.message)


# -- the schema validator ---------------------------------------------------------------------

def _types(s: Schema) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    type_ = s.get("type")
    if isinstance(type_, list):
        return [str(t) for t in type_]
    return [type_] if isinstance(type_, str) and type_ else []


def _in(path: str) -> str:
    return f"{path} in {_IN}"


def _validate(s: Schema, path: str, data: Any, out: list[_Failure], old: Any = ABSENT) -> None:
    if same(old, data):
        return  # ratcheted: the errors of an unchanged value are only warnings upstream
    types = _types(s)
    if data is None:
        _check_type(s, types, path, data, out)
        _check_enum(s, path, data, out)
        return
    kind = json_type(data)
    _check_type(s, types, path, data, out)
    if not _JUNCTORS.isdisjoint(s):
        _check_junctors(s, path, data, out, old)
    if kind == "string":
        _check_string(s, path, data, out)
        fmt = supported_format(s.get("format"))
        if fmt and format_valid(fmt, data) is False:
            out.append(_Failure(_INVALID_TYPE, path, f"{_in(path)} must be of type {fmt}: {go_quote(data)}", data))
    if kind in ("integer", "number"):
        _check_number(s, path, data, out)
    if kind == "array":
        _check_array(s, path, data, out, old)
    _check_enum(s, path, data, out)
    if kind == "object":
        _check_object(s, path, data, out, old)


def _type_failure(path: str, expected: str, actual: str) -> _Failure:
    return _Failure(_INVALID_TYPE, path, f"{_in(path)} must be of type {expected}: {go_quote(actual)}", actual)


def _check_type(s: Schema, types: list[str], path: str, data: Any, out: list[_Failure]) -> None:
    fmt = supported_format(s.get("format"))
    if not types and not fmt:
        return
    if data is None:
        if types and "null" not in types and not s.get("nullable"):
            out.append(_type_failure(path, ",".join(types), "null"))
        return
    kind = json_type(data)
    if not fmt and kind in types:
        return  # the common case, decided without the format and float/int conversions below
    data_format = {"integer": "int64", "number": "float64"}.get(kind, "")
    is_float_int = kind == "number" and float(data).is_integer() and "integer" in types
    is_int_float = kind == "integer" and "number" in types
    if kind not in ("string", "array") and fmt and not (
            kind in types or data_format == fmt or is_float_int or is_int_float
            or (fmt == "int64" and data_format == "int32") or (fmt == "float64" and data_format == "float32")):
        out.append(_type_failure(path, fmt, data_format))
        return
    if not ("number" in types or "integer" in types) and fmt and kind in ("string", "array"):
        return
    if not (kind in types or is_float_int or is_int_float):
        out.append(_type_failure(path, ",".join(types), kind))


_JUNCTORS = frozenset({"anyOf", "oneOf", "allOf", "not"})


def _check_junctors(s: Schema, path: str, data: Any, out: list[_Failure], old: Any) -> None:
    def run(sub: Any) -> list[_Failure]:
        found: list[_Failure] = []
        if isinstance(sub, dict):
            _validate(sub, path, data, found, old)
        return found

    any_of = s.get("anyOf")
    if isinstance(any_of, list) and any_of:
        results = [run(sub) for sub in any_of]
        if not any(not r for r in results):
            out.append(_composite(path, "must validate at least one schema (anyOf)"))
            out.extend(_fewest(results))
    one_of = s.get("oneOf")
    if isinstance(one_of, list) and one_of:
        results = [run(sub) for sub in one_of]
        valid = sum(1 for r in results if not r)
        if valid != 1:
            extra = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            out.append(_composite(path, f"must validate one and only one schema (oneOf). {extra}"))
            if valid == 0:
                out.extend(_fewest(results))
    all_of = s.get("allOf")
    if isinstance(all_of, list) and all_of:
        results = [run(sub) for sub in all_of]
        for r in results:
            out.extend(r)
        valid = sum(1 for r in results if not r)
        if valid != len(results):
            extra = ". None validated" if valid == 0 else ""
            out.append(_composite(path, f"must validate all the schemas (allOf){extra}"))
    if isinstance(s.get("not"), dict) and not run(s["not"]):
        out.append(_composite(path, "must not validate the schema (not)"))


def _composite(path: str, message: str) -> _Failure:
    # The quoted path is only built when an allOf/anyOf/oneOf/not actually fails.
    return _Failure(_OTHER, path, f"{go_quote(path)} {message}", composite=True)


def _fewest(results: list[list[_Failure]]) -> list[_Failure]:
    """The alternative that failed least (kube-openapi merges the best failure's errors)."""
    return min(results, key=lambda r: len(r))


def _check_string(s: Schema, path: str, data: str, out: list[_Failure]) -> None:
    # kube-openapi's string validator stops at the first failure.
    max_length, min_length, pattern = s.get("maxLength"), s.get("minLength"), s.get("pattern")
    if isinstance(max_length, int) and len(data) > max_length:
        out.append(_Failure(_TOO_LONG, path, f"{_in(path)} should be at most {max_length} chars long", data,
                            valid=max_length))
    elif isinstance(min_length, int) and len(data) < min_length:
        out.append(_Failure(_OTHER, path, f"{_in(path)} should be at least {min_length} chars long", data))
    elif isinstance(pattern, str) and pattern and not pattern_of(pattern).search(data):
        out.append(_Failure(_OTHER, path, f"{_in(path)} should match '{pattern}'", data))


_PATTERNS: dict[str, re.Pattern[str]] = {}


def pattern_of(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern)
        except re.error:
            compiled = re.compile(re.escape(pattern))
        _PATTERNS[pattern] = compiled
    return compiled


def _json_integer(f: float) -> bool:
    """swag.IsFloat64AJSONInteger."""
    if math.isnan(f) or math.isinf(f) or abs(f) > 2**53:
        return False
    whole = float(math.trunc(f))
    if f == whole:
        return True
    diff = abs(f - whole)
    if whole == 0:
        return False
    return diff / (abs(f) + abs(whole)) < 1e-9


def _bound(limit: float, data: int | float) -> int | float:
    # MaximumNativeType/MinimumNativeType compare an integer against int64(limit).
    return int(limit) if isinstance(data, int) else float(limit)


def _check_number(s: Schema, path: str, data: int | float, out: list[_Failure]) -> None:
    factor, maximum, minimum = number(s.get("multipleOf")), number(s.get("maximum")), number(s.get("minimum"))
    if factor is not None and factor <= 0:
        out.append(_Failure(_OTHER, path, f"factor MultipleOf declared for {path} must be positive: "
                                          f"{go_number(float(factor))}", factor))
    elif factor is not None:
        if isinstance(data, int) and float(factor).is_integer():
            bad = data % int(factor) != 0
        else:  # validate.MultipleOf: the quotient must be a JSON integer, within a relative 1e-9
            quotient = (1 / factor) * data if factor < 1 else data / factor
            bad = not _json_integer(quotient)
        if bad:
            out.append(_Failure(_OTHER, path, f"{_in(path)} should be a multiple of {go_number(float(factor))}", data))
    for limit, exclusive_key, upper in ((minimum, "exclusiveMinimum", False), (maximum, "exclusiveMaximum", True)):
        if limit is None:
            continue
        exclusive = bool(s.get(exclusive_key))
        bound = _bound(limit, data)
        if upper:
            fails = data >= bound if exclusive else data > bound
            words = "less than" if exclusive else "less than or equal to"
        else:
            fails = data <= bound if exclusive else data < bound
            words = "greater than" if exclusive else "greater than or equal to"
        if fails:
            shown = str(bound) if isinstance(bound, int) else go_number(bound)
            out.append(_Failure(_OTHER, path, f"{_in(path)} should be {words} {shown}", data))


def _check_array(s: Schema, path: str, data: list[Any], out: list[_Failure], old: Any) -> None:
    items = s.get("items")
    if isinstance(items, dict):
        olds = correlated_items(s, data, old)
        for i, item in enumerate(data):
            _validate(items, index(path, i), item, out, olds[i])
    min_items, max_items = s.get("minItems"), s.get("maxItems")
    if isinstance(min_items, int) and len(data) < min_items:
        out.append(_Failure(_OTHER, path, f"{_in(path)} should have at least {min_items} items", len(data)))
    if isinstance(max_items, int) and len(data) > max_items:
        out.append(_Failure(_MAX_ITEMS, path, f"{_in(path)} should have at most {max_items} items", len(data),
                            valid=max_items))
    if s.get("uniqueItems") and _has_duplicates(data):
        out.append(_Failure(_OTHER, path, f"{_in(path)} shouldn't contain duplicates"))


def _has_duplicates(items: list[Any]) -> bool:
    seen = {canonical(item) for item in items}
    return len(seen) != len(items)


def _enum_match(data: Any, allowed: Any) -> bool:
    """basicCommonValidator: ``data`` converted to the enum value's Go type, then DeepEqual.

    Go conversions are loose: a float becomes an int by truncation, an int a string by rune.
    """
    if isinstance(allowed, bool) or isinstance(data, bool):
        return isinstance(allowed, bool) and isinstance(data, bool) and allowed == data
    if isinstance(allowed, int):
        return isinstance(data, int | float) and int(data) == allowed
    if isinstance(allowed, float):
        return isinstance(data, int | float) and float(data) == allowed
    if isinstance(allowed, str):
        if isinstance(data, int):
            return (chr(data) if 0 <= data <= 0x10FFFF else "\ufffd") == allowed
        return isinstance(data, str) and data == allowed
    return type(data) is type(allowed) and canonical(data) == canonical(allowed)


def _check_enum(s: Schema, path: str, data: Any, out: list[_Failure]) -> None:
    enum = s.get("enum")
    if not isinstance(enum, list) or not enum:
        return
    if data is not None and any(v is not None and _enum_match(data, v) for v in enum):
        return
    values = ", ".join(str(v) for v in enum)
    out.append(_Failure(_ENUM, path, f"{_in(path)} should be one of [{values}]", data, values=list(enum)))


def _check_object(s: Schema, path: str, data: dict[str, Any], out: list[_Failure], old: Any) -> None:
    count = len(data)
    min_props, max_props = s.get("minProperties"), s.get("maxProperties")
    if isinstance(min_props, int) and count < min_props:
        out.append(_Failure(_OTHER, path, f"{_in(path)} should have at least {min_props} properties", count))
        return
    if isinstance(max_props, int) and count > max_props:
        out.append(_Failure(_TOO_MANY_PROPS, path, f"{_in(path)} should have at most {max_props} properties", count,
                            valid=max_props))
        return
    declared = properties(s)
    additional = s.get("additionalProperties")
    if additional is False:
        for name in sorted(data):
            if name not in declared:
                out.append(_Failure(_OTHER, path, f"{path}.{name} in {_IN} is a forbidden property", name))
    elif isinstance(additional, dict):
        for name in sorted(data):
            if name not in declared:
                _validate(additional, f"{path}.{name}", data[name], out, entry(s, old, name, False))
    for name in sorted(declared):
        if name in data:
            _validate(declared[name], path_child(path, name), data[name], out, entry(s, old, name, True))
    for name in s.get("required") or []:
        if name not in data:
            out.append(_Failure(_REQUIRED, f"{path}.{name}", f"{path}.{name} in {_IN} is required"))
