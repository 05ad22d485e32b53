"""Strategic merge patch, ``application/strategic-merge-patch+json``.

Why it exists: kubectl's client-side ``apply`` (a three-way patch carrying
``$setElementOrder/<list>``), ``edit``, ``cordon``, ``rollout restart``, ``scale`` and ``set image``
all send strategic merge patches, and they rely on its exact semantics: lists with
``patchStrategy: merge`` merge element-wise by their merge key, other lists are replaced, and the
``$patch``/``$retainKeys``/``$deleteFromPrimitiveList``/``$setElementOrder`` directives steer it.

This is a port of the *apply* half of k8s.io/apimachinery ``pkg/util/strategicpatch/patch.go``
(``StrategicMergeMapPatch`` with ``MergeParallelList`` and ``IgnoreUnmatchedNulls``), including
its ordering rules (patch order > live order; new items first) and its error classes, which the
API server maps to 400 / 422 / 500 in ``interpretStrategicMergePatchError``. Patch metadata comes
from the official schemas instead of Go struct tags.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pilothouse.machinery.errors import StatusError, bad_request, internal_error
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.patch.schemainfo import FieldMeta, field_meta, item_meta
from pilothouse.machinery.schema import Schema, resolve

__all__ = ["strategic_merge_patch", "unsupported_strategic_merge_patch"]

_DIRECTIVE = "$patch"
_DELETE = "delete"
_REPLACE = "replace"
_MERGE = "merge"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"

# mergepatch's sentinel errors and how the API server answers them.
ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
ERR_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_RETAIN_KEYS_MISMATCH = "patch content doesn't match retainKeys list"


class _PatchError(Exception):
    """A strategicpatch error; ``code`` is what interpretStrategicMergePatchError makes of it."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _sentinel(message: str) -> _PatchError:
    code = 422 if message in (ERR_NO_LIST_OF_LISTS, ERR_RETAIN_KEYS_MISMATCH) else 400
    return _PatchError(message, code)


# ---------------------------------------------------------------------------------------------
# Go-flavoured helpers: error texts print values with %v and types with reflect, and equality is
# Go interface equality (an int64 never equals a float64, a bool never equals a number).


def _go_type(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "<nil>"


def _go_fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_fmt(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_fmt(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(value: Any) -> str:
    """reflect.Kind-ish class used for Go interface equality and type checks."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return _go_type(value)


def _eq(left: Any, right: Any) -> bool:
    return _kind(left) == _kind(right) and bool(left == right)


def _hashable(value: Any) -> tuple[str, Any]:
    return (_kind(value), value if not isinstance(value, dict | list) else repr(value))


def _bad_arg_type(expected: str, actual: Any) -> _PatchError:
    return _PatchError(f"expected a {expected}, but received a {_go_type(actual)}")


def _no_merge_key(item: dict[str, Any], key: str) -> _PatchError:
    return _PatchError(f"map: {_go_fmt(item)} does not contain declared merge key: {key}")


def _bad_patch_type(directive: Any, item: dict[str, Any]) -> _PatchError:
    return _PatchError(f"unknown patch type: {_go_fmt(directive)} in map: {_go_fmt(item)}")


# ---------------------------------------------------------------------------------------------


def _patch_strategy(meta: FieldMeta) -> str:
    """extractRetainKeysPatchStrategy: the non-retainKeys strategy of a field."""
    strategies = list(meta.strategies)
    if not strategies:
        return ""
    if len(strategies) == 1:
        return "" if strategies[0] == "retainKeys" else strategies[0]
    if len(strategies) == 2 and "retainKeys" in strategies:
        return strategies[0] if strategies[1] == "retainKeys" else strategies[1]
    raise _PatchError(f"unexpected patch strategy: {','.join(strategies)}")


def _extract_key(key: str, prefix: str) -> str:
    parts = key.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE:
            raise _sentinel(ERR_BAD_PRIMITIVE_LIST)
        if prefix == _SET_ELEMENT_ORDER:
            raise _sentinel(ERR_BAD_SET_ELEMENT_ORDER)
        raise _PatchError(f"fail to find unknown prefix {prefix!r} in {key}")
    return parts[1]


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Strip ``$patch`` maps from a value taken verbatim from the patch; False: drop it."""
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        for key in list(value):
            value[key], keep = _remove_directives(value[key])
            if not keep:
                del value[key]
        return value, True
    if isinstance(value, list):
        kept = []
        for item in value:
            item, keep = _remove_directives(item)
            if keep:
                kept.append(item)
        return kept, True
    return value, True


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for key in list(value):
            if value[key] is None:
                del value[key]
            else:
                _discard_nulls(value[key])
    elif isinstance(value, list):
        for item in value:
            _discard_nulls(item)


def _take_patch_value(original: dict[str, Any], key: str, value: Any) -> None:
    _discard_nulls(value)
    value, keep = _remove_directives(value)
    if keep:
        original[key] = value
    else:
        original.pop(key, None)


def _directive_in_map(directive: Any, patch: dict[str, Any]) -> dict[str, Any]:
    if directive == _REPLACE:
        del patch[_DIRECTIVE]
        return patch
    if directive == _DELETE:
        return {}
    raise _bad_patch_type(directive, patch)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _sentinel(ERR_BAD_RETAIN_KEYS)
    keep = {_hashable(v) for v in retain}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE, _SET_ELEMENT_ORDER)):
            continue
        if _hashable(key) not in keep:
            raise _sentinel(ERR_BAD_RETAIN_KEYS)
    for key in list(original):
        if _hashable(key) not in keep:
            del original[key]


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any],
               schema: Schema | None) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        return _directive_in_map(patch[_DIRECTIVE], patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, schema)

    for key, patch_value in list(patch.items()):
        is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE)
        if is_delete_list:
            key = _extract_key(key, _DELETE_FROM_PRIMITIVE)
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                _take_patch_value(original, key, patch_value)
            continue
        original_value = original[key]
        if _kind(original_value) != _kind(patch_value):
            if not is_delete_list:
                _take_patch_value(original, key, patch_value)
            continue
        if isinstance(original_value, dict):
            meta = field_meta(schema, key)
            if _patch_strategy(meta) == _REPLACE:
                original[key] = patch_value
            else:
                original[key] = _merge_map(original_value, patch_value, meta.schema)
        elif isinstance(original_value, list):
            meta = field_meta(schema, key)
            original[key] = _merge_slice_handler(original_value, patch_value, meta, is_delete_list)
        else:
            _take_patch_value(original, key, patch_value)
    return original


def _merge_slice_handler(original: list[Any], patch: list[Any], meta: FieldMeta,
                         is_delete_list: bool) -> list[Any]:
    # Delete lists are handled the same way whatever the field's patch strategy is.
    if _patch_strategy(meta) == _MERGE or is_delete_list:
        return _merge_slice(original, patch, meta, is_delete_list)
    return patch


def _slice_element_kind(*slices: list[Any]) -> str:
    previous: str | None = None
    for items in slices:
        for item in items:
            current = _kind(item)
            if previous is None:
                previous = current
                if current == "slice":
                    raise _sentinel(ERR_NO_LIST_OF_LISTS)
            elif previous != current:
                raise _PatchError("list element types are not identical: "
                                  + _go_fmt(list(slices)))
    if previous is None:
        raise _PatchError("no elements in any of the given slices")
    return previous


def _find(items: list[Any], key: str, value: Any) -> int:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _PatchError(f"value for key {index} is not a map.")
        if key in item and _eq(item[key], value):
            return index
    return -1


def _merge_slice(original: list[Any], patch: list[Any], meta: FieldMeta, is_delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    kind = _slice_element_kind(original, patch)
    merge_key = meta.merge_key
    if kind != "map":
        if is_delete_list:
            doomed = {_hashable(v) for v in patch}
            return [v for v in original if _hashable(v) not in doomed]
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise _PatchError("cannot merge lists without merge key for type map")
        original, patch = _merge_special_elements(original, patch, merge_key)
        merged = _merge_plain_elements(list(original), patch, merge_key, item_meta(meta.schema).schema)
    if not merge_key:
        patch_items, server_only = _partition_primitives(merged, patch)
    else:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _dedupe(items: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for item in items:
        marker = _hashable(item)
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out


def _merge_special_elements(original: list[Any], patch: list[Any],
                            merge_key: str) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == _DELETE:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if not (isinstance(o, dict) and merge_key in o
                                                    and _eq(o[merge_key], item[merge_key]))]
        elif directive == _REPLACE:
            replace = True
        elif directive == _MERGE:
            raise _PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        return plain, []
    return original, plain


def _merge_plain_elements(original: list[Any], patch: list[Any], merge_key: str,
                          schema: Schema | None) -> list[Any]:
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        index = _find(original, merge_key, item[merge_key])
        if index >= 0:
            original[index] = _merge_map(original[index], item, schema)
        else:
            _discard_nulls(item)
            stripped, keep = _remove_directives(item)
            if keep:
                original.append(stripped)
    return original


def _partition_primitives(items: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    marks = {_hashable(v) for v in by}
    inside = [v for v in items if _hashable(v) in marks]
    outside = [v for v in items if _hashable(v) not in marks]
    return inside, outside


def _partition_maps(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside: list[Any] = []
    outside: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        (inside if _find(by, merge_key, item[merge_key]) >= 0 else outside).append(item)
    return inside, outside


def _index(order: list[Any], item: Any, merge_key: str, kind: str) -> int:
    def value_of(x: Any) -> Any:
        if kind == "map":
            return x.get(merge_key) if isinstance(x, dict) else None
        return x

    wanted = value_of(item)
    for i, candidate in enumerate(order):
        if _eq(value_of(candidate), wanted):
            return i
    return -1


def _stable_sort(items: list[Any], less: Callable[[Any, Any], bool]) -> list[Any]:
    # Go's sort.SliceStable is an insertion sort for short slices; the less function used by
    # strategicpatch is not a strict order when items are missing from the order list, so the
    # algorithm (not just the comparator) decides the result.
    out = list(items)
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out


def _normalize_slice_order(items: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    doomed: list[Any] = []
    if kind == "map":
        for listing in (items, order):
            for item in listing:
                if not isinstance(item, dict):
                    raise _bad_arg_type("map[string]interface {}", item)
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
        doomed = [i for i in items if i.get(_DIRECTIVE) == _DELETE]
        items = [i for i in items if i.get(_DIRECTIVE) != _DELETE]

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, merge_key, kind)
        if ia >= 0:
            ib = _index(order, b, merge_key, kind)
            if ib >= 0:
                return ia < ib
        return True

    return _stable_sort(items, less) + doomed


def _normalize_element_order(patch: list[Any], server_only: list[Any], patch_order: list[Any],
                             server_order: list[Any], merge_key: str, kind: str) -> list[Any]:
    patch = _normalize_slice_order(patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    # mergeSortedSlice: interleave, keeping each list's order; a server-only item goes first only
    # when both are in the live list and it comes earlier there.
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch):
        if i >= len(server_only):
            out.append(patch[j])
            j += 1
        elif j >= len(patch):
            out.append(server_only[i])
            i += 1
        else:
            li = _index(server_order, server_only[i], merge_key, kind)
            ri = _index(server_order, patch[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch[j])
                j += 1
    return out


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
        plain = [i for i in patch_list if i.get(_DIRECTIVE) != _DELETE]
    else:
        plain = patch_list
    pi = oi = 0
    while pi < len(plain) and oi < len(order):
        if isinstance(plain[pi], dict) and _DIRECTIVE in plain[pi]:
            pi += 1
            continue
        if _merge_key_equal(plain[pi], order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(plain) and oi >= len(order):
        raise _PatchError(f"the order in patch list:\n{_go_fmt(patch_list)}\n doesn't match "
                          f"{_SET_ELEMENT_ORDER} list:\n{_go_fmt(order)}")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _eq(left, right)
    for side in (left, right):
        if not isinstance(side, dict):
            raise _bad_arg_type("map[string]interface {}", side)
        if merge_key not in side:
            raise _no_merge_key(side, merge_key)
    return _eq(left[merge_key], right[merge_key])


def _merge_set_element_order(original: dict[str, Any], patch: dict[str, Any], schema: Schema | None) -> None:
    for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        list_key = _extract_key(key, _SET_ELEMENT_ORDER)
        found_original = list_key in original
        found_patch = list_key in patch
        original_list: list[Any] = []
        patch_list: list[Any] = []
        if found_original:
            if not isinstance(original[list_key], list):
                raise _bad_arg_type("[]interface {}", original[list_key])
            original_list = original[list_key]
        if found_patch:
            if not isinstance(patch[list_key], list):
                raise _bad_arg_type("[]interface {}", patch[list_key])
            patch_list = patch[list_key]
        meta = field_meta(schema, list_key)
        merge_key = meta.merge_key
        _validate_set_order(patch_list, order, merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged, _ = _remove_directives(patch_list)
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, meta, False)
        else:
            continue
        if merge_key:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        else:
            patch_items, server_only = _partition_primitives(merged, order)
        if not original_list and not patch_list:
            original[list_key] = merged
        else:
            kind = _slice_element_kind(original_list, patch_list)
            original[list_key] = _normalize_element_order(patch_items, server_only, order, original_list,
                                                          merge_key, kind)
        patch.pop(list_key, None)


def unsupported_strategic_merge_patch() -> StatusError:
    """What the API server answers a strategic merge patch for a type without a Go schema (CRDs)."""
    return StatusError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")


def strategic_merge_patch(original: Object, patch: Any, schema: Schema | None) -> Object:
    """Apply a strategic merge patch to a copy of ``original``.

    ``schema`` is the kind's root schema (``schema_for_kind``); ``None`` means the type has no
    strategic-merge metadata (custom resources), which Kubernetes refuses with 415.
    Errors are StatusErrors with the codes the API server uses: 400 for malformed directives,
    422 for lists of lists, 500 (InternalError) for everything else (e.g. a missing merge key).
    """
    if schema is None:
        raise unsupported_strategic_merge_patch()
    if not isinstance(patch, dict):
        kind = {list: "array", str: "string", bool: "bool", int: "number", float: "number",
                type(None): "null"}.get(type(patch), "value")
        if patch is None:
            patch = {}
        else:
            raise bad_request(f"json: cannot unmarshal {kind} into Go value of type "
                              "map[string]interface {}")
    try:
        return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), resolve(schema))
    except _PatchError as exc:
        if exc.code == 400:
            raise bad_request(exc.message) from exc
        if exc.code == 422:
            raise StatusError(422, "Invalid",
                              "the server rejected our request due to an error in our request", {}) from exc
        raise internal_error(exc.message) from exc
