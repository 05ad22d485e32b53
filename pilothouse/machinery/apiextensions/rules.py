"""``x-kubernetes-validations`` CEL rules on custom resources (``validate_rules``).

Why ``common-expression-language`` (PyPI): it binds the Rust ``cel`` interpreter, a maintained
implementation of the CEL spec with the macros and functions Kubernetes rules use (``has()``,
``size``, ``all``/``exists``/``exists_one``/``map``/``filter``, ``matches``, ``startsWith``,
timestamps and durations, heterogeneous numeric equality), compiles an expression once into a
reusable ``Program`` and evaluates it fast. ``cel-python`` works too but is pure Python and an
order of magnitude slower per evaluation. The Kubernetes extension functions the CEL standard
lacks (``lowerAscii``, ``split``, ``isSorted``, ``url``, ``quantity``...) come from ``cellib``.

Semantics follow ``apiserver/schema/cel/validation.go``: each rule is evaluated with ``self``
bound to its node's value and, for transition rules, ``oldSelf`` to the correlated old value
(object properties and map entries by key, ``x-kubernetes-list-type: map`` items by their keys;
nothing else correlates, and a transition rule without an old value is skipped). A false result
is ``<path>: Invalid value: "<schema type>": <message>`` (``failed rule: <rule>`` by default),
shaped by ``reason`` and moved by ``fieldPath``; an evaluation error names the rule.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

import cel

from pilothouse.machinery.apiextensions.celcheck import undefined_field
from pilothouse.machinery.apiextensions.cellib import LIBRARY
from pilothouse.machinery.apiextensions.celsyntax import desugar
from pilothouse.machinery.apiextensions.celvalues import to_cel, to_cel_fields
from pilothouse.machinery.apiextensions.correlation import ABSENT, entry, items, same
from pilothouse.machinery.apiextensions.fieldpath import normalize_field_path
from pilothouse.machinery.apiextensions.nodes import Schema, carries, node, properties
from pilothouse.machinery.apiextensions.paths import NIL_PATH, child, go_quote, index, key
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import GoValue, duplicate, forbidden, invalid, required

__all__ = ["RuleCompileError", "compile_errors", "validate_rules"]

# -- compiling -------------------------------------------------------------------------------

class RuleCompileError(Exception):
    """A rule that does not parse; ``detail`` is cel-go's ``ERROR: <input>:l:c: ...`` text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@functools.lru_cache(maxsize=4096)
def _compile(expression: str) -> Any:
    """One compiled Program per expression text, shared by every schema that uses it."""
    try:
        return cel.compile(desugar(expression))
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        at = text.find("ERROR:")
        detail = text[at:] if at >= 0 else text
        # cel-go's Issues.String() indents the source excerpt lines with " | ".
        raise RuleCompileError(re.sub(r"(?m)^\| ", " | ", detail)) from None


def _uses_old_self(expression: str) -> bool:
    return "oldSelf" in _compile(expression).variables()


def _go_rule(rule: dict[str, Any]) -> GoValue:
    """A rule as Go prints ``apiextensions.ValidationRule`` with ``%#v`` in Invalid messages."""
    reason = rule.get("reason")
    reason_text = ("(*apiextensions.FieldValueErrorReason)(nil)" if reason is None
                   else f"(*apiextensions.FieldValueErrorReason)({go_quote(str(reason))})")
    optional = rule.get("optionalOldSelf")
    optional_text = "(*bool)(nil)" if optional is None else f"(*bool)({str(bool(optional)).lower()})"
    text = (f"apiextensions.ValidationRule{{Rule:{go_quote(str(rule.get('rule', '')))}, "
            f"Message:{go_quote(str(rule.get('message', '')))}, "
            f"MessageExpression:{go_quote(str(rule.get('messageExpression', '')))}, Reason:{reason_text}, "
            f"FieldPath:{go_quote(str(rule.get('fieldPath', '')))}, OptionalOldSelf:{optional_text}}}")
    return GoValue(rule, text)


def compile_errors(s: Schema, path: str, uncorrelatable: str | None, is_resource: bool = False) -> list[FieldError]:
    """The CRD-time errors of one node's rules: syntax, undefined fields, and ``oldSelf`` where
    nothing correlates. ``is_resource``: the node is the resource root or an embedded resource."""
    errors: list[FieldError] = []
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        if not isinstance(rule, dict):
            continue
        rule_path = index(child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule") or "")
        try:
            uses_old = _uses_old_self(text)
            _check_fields(s, text, is_resource)
        except RuleCompileError as exc:
            errors.append(invalid(child(rule_path, "rule"), _go_rule(rule), f"compilation failed: {exc.detail}"))
            continue
        expression = str(rule.get("messageExpression") or "")
        if expression.strip():
            try:
                _compile(expression)
                _check_fields(s, expression, is_resource)
            except RuleCompileError as exc:
                errors.append(invalid(child(rule_path, "messageExpression"), _go_rule(rule),
                                      f"messageExpression compilation failed: {exc.detail}"))
        if uses_old and uncorrelatable is not None:
            errors.append(invalid(child(rule_path, "rule"), text,
                                  f"oldSelf cannot be used on the uncorrelatable portion of the schema within "
                                  f"{uncorrelatable}"))
        elif not uses_old and rule.get("optionalOldSelf") is not None:
            errors.append(invalid(child(rule_path, "optionalOldSelf"), GoValue(rule["optionalOldSelf"], str(
                bool(rule["optionalOldSelf"])).lower()), "may not be set if oldSelf is not used in rule"))
    return errors


def _check_fields(s: Schema, expression: str, is_resource: bool) -> None:
    detail = undefined_field(s, expression, is_resource)
    if detail is not None:
        raise RuleCompileError(detail)


# -- evaluating -----------------------------------------------------------------------------

def validate_rules(schema: Schema, new: Any, old: Any = None, *, path: str = NIL_PATH,
                   warnings: list[str] | None = None) -> list[FieldError]:
    """Errors of every ``x-kubernetes-validations`` rule over ``new`` (``old`` on update).

    On update a failing rule that does not use ``oldSelf`` is not an error where the value is
    unchanged from the old object (validation ratcheting, on by default in 1.32): Kubernetes
    sends it as a warning instead, which is appended to ``warnings`` when a list is given (the
    rules are not even run otherwise). ``path`` is where ``new`` sits (the resource root by
    default, which Kubernetes prints as ``<nil>``).
    """
    activation = _Activation(warnings)
    return _validate(schema, path, new, ABSENT if old is None else old, activation)


#: One library-loaded ``cel.Context`` per thread, reused by every validation, with the variables
#: of the rule being run handed to it through a resolver (a dict the thread rebinds) rather than
#: ``add_variable``: the ``cel`` library rebuilds its whole environment, the library's functions
#: included, after every ``add_variable`` (~7 µs), and keeps it while only the resolver's answers
#: change. Evaluation is synchronous (no await between binding and executing), so a thread's
#: context is never shared mid-rule; a validation without an old value clears ``oldSelf``, which
#: then is unbound (a messageExpression reading it falls back), as on a fresh context.
_CONTEXTS = threading.local()


def _library_context() -> cel.Context:
    context = cel.Context()
    for name, function in LIBRARY.items():
        context.add_function(name, function)
    return context


def _shared_context() -> tuple[cel.Context, dict[str, Any]]:
    found: tuple[cel.Context, dict[str, Any]] | None = getattr(_CONTEXTS, "context", None)
    if found is None:
        context, bindings = _library_context(), dict[str, Any]()
        context.set_variable_resolver(bindings.get)
        found = _CONTEXTS.context = (context, bindings)
    return found


class _Activation:
    """The thread's ``cel.Context``, rebound at each node that carries rules."""

    def __init__(self, warnings: list[str] | None) -> None:
        self.warnings = warnings

    def bind(self, s: Schema, value: Any, old: Any) -> cel.Context:
        self_fields, old_fields = _fields_read(s)
        converted = _converted(value, s, self_fields)
        # A stale oldSelf is never read: transition rules are skipped without an old value.
        old_converted = ABSENT if old is ABSENT else _converted(old, s, old_fields)
        if old_converted is None:
            # A null oldSelf, which the resolver cannot answer (None is its "not mine"): bound as a
            # variable, on a context of its own.
            context = _library_context()
            context.add_variable("self", converted)
            context.add_variable("oldSelf", None)
            return context
        context, bindings = _shared_context()
        bindings.clear()
        bindings["self"] = converted
        if old_converted is not ABSENT:
            bindings["oldSelf"] = old_converted
        return context


def _converted(value: Any, s: Schema, fields: frozenset[str] | None) -> Any:
    if fields is not None and isinstance(value, dict):
        return to_cel_fields(value, s, fields)
    return to_cel(value, s)


# Handing a value to the ``cel`` library costs about a microsecond per string or list item (it is
# converted to Rust values whether or not a rule reads it): most of a rule's cost. So a node
# whose rules read ``self`` only as ``self.<field>`` binds those fields alone. An identifier is
# found in the rule's text without parsing it: any other use of ``self`` (``size(self)``,
# ``self.all(...)``, ``self[k]``, ``self == ...``), even one inside a string literal, binds
# the whole value, so the guess can only err towards converting too much.
_USES = {name: re.compile(rf"(?<!\w){name}(?!\w)(?:\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(?!\w)(?!\s*\())?")
         for name in ("self", "oldSelf")}
_FIELDS_READ: dict[int, tuple[Schema, frozenset[str] | None, frozenset[str] | None]] = {}


def _fields_read(s: Schema) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """The fields of ``self`` and of ``oldSelf`` the rules at ``s`` (messages included) can read;
    None for a variable they may read whole. Memoised by node identity, as ``carries`` is."""
    memo = _FIELDS_READ.get(id(s))
    if memo is not None and memo[0] is s:
        return memo[1], memo[2]
    texts = [desugar(str(rule.get(key) or "")) for rule in s.get("x-kubernetes-validations") or ()
             if isinstance(rule, dict) for key in ("rule", "messageExpression")]
    found: list[frozenset[str] | None] = []
    for variable in ("self", "oldSelf"):
        fields: set[str] | None = set()
        for text in texts:
            for match in _USES[variable].finditer(text):
                if match.group(1) is None:
                    fields = None
                    break
                assert fields is not None
                fields.add(match.group(1))
            if fields is None:
                break
        found.append(None if fields is None else frozenset(fields))
    if len(_FIELDS_READ) >= 65536:
        _FIELDS_READ.clear()
    _FIELDS_READ[id(s)] = (s, found[0], found[1])
    return found[0], found[1]


def _validate(s: Schema, path: str, value: Any, old: Any, activation: _Activation) -> list[FieldError]:
    if not carries(s, "x-kubernetes-validations"):
        return []  # no rule in this subtree: nothing to bind, correlate or evaluate
    errors = _rules_here(s, path, value, old, activation) if value is not None else []
    if isinstance(value, dict):
        declared = properties(s)
        additional = node(s.get("additionalProperties"))
        base = "" if path == NIL_PATH else path
        for name in sorted(value):
            if name in declared:
                errors += _validate(declared[name], child(base, name), value[name], entry(s, old, name, True),
                                    activation)
            elif additional is not None:
                errors += _validate(additional, key(base, name), value[name], entry(s, old, name, False),
                                    activation)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        base = "" if path == NIL_PATH else path
        olds = items(s, value, old)
        for i, item in enumerate(value):
            errors += _validate(s["items"], index(base, i), item, olds[i], activation)
    return errors


def _rules_here(s: Schema, path: str, value: Any, old: Any, activation: _Activation) -> list[FieldError]:
    rules = s.get("x-kubernetes-validations")
    if not isinstance(rules, list) or not rules:
        return []
    errors: list[FieldError] = []
    type_ = str(s.get("type") or "")
    context: cel.Context | None = None
    # Ratcheting (CRDValidationRatcheting, on in 1.32): on an unchanged value a rule without
    # oldSelf can only warn, so it need not run unless warnings are collected.
    unchanged = same(old, value)
    ratcheted = unchanged and activation.warnings is not None
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        text = str(rule.get("rule") or "")
        try:
            program = _compile(text)
            uses_old = "oldSelf" in program.variables()
        except RuleCompileError as exc:
            errors.append(invalid(path, type_, f"rule compile error: {exc.detail}"))
            continue
        if (uses_old and old is ABSENT) or (unchanged and not uses_old and not ratcheted):
            continue  # a transition rule only runs when there is an old value to compare with
        if context is None:
            context = activation.bind(s, value, old)
        try:
            result = program.execute(context)
        except Exception as exc:  # any evaluation failure is the rule's error
            errors.append(_evaluation_error(path, type_, exc, rule))
            continue
        if result is not True:
            target = path
            relative = normalize_field_path(s, str(rule.get("fieldPath") or ""))
            if relative:
                # Upstream appends the normalized path as one child: "<nil>" then disappears.
                target = child("" if path == NIL_PATH else path, relative)
            error = _reason_error(target, type_, _message(rule, context), rule.get("reason"))
            if ratcheted and not uses_old and activation.warnings is not None:
                activation.warnings.append(error.message())
            else:
                errors.append(error)
    return errors


def _rule_text(rule: dict[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message or str(rule.get("rule") or "").strip()


def _default_message(rule: dict[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message or f"failed rule: {_rule_text(rule)}"


def _message(rule: dict[str, Any], context: cel.Context) -> str:
    expression = str(rule.get("messageExpression") or "").strip()
    if expression:
        try:
            result = _compile(expression).execute(context)
        except Exception:  # upstream falls back to the static message
            return _default_message(rule)
        # A message that is not a one-line non-empty string falls back to the rule's message.
        if isinstance(result, str) and result.strip() and "\n" not in result.strip():
            return result.strip()
    return _default_message(rule)


def _reason_error(path: str, type_: str, detail: str, reason: Any) -> FieldError:
    if reason == "FieldValueForbidden":
        return forbidden(path, detail)
    if reason == "FieldValueRequired":
        return required(path, detail)
    if reason == "FieldValueDuplicate":
        return duplicate(path, type_)
    return invalid(path, type_, detail)


def _evaluation_error(path: str, type_: str, exc: Exception, rule: dict[str, Any]) -> FieldError:
    text = _rule_text(rule)
    if isinstance(exc, TypeError) and str(exc).startswith("No such overload"):
        return invalid(path, type_, f"'no such overload': call arguments did not match a supported operator, "
                                    f"function or macro signature for rule: {text}")
    if isinstance(exc, KeyError):
        detail = f"no such key: {exc.args[0] if exc.args else ''}"
    elif isinstance(exc, ZeroDivisionError):
        detail = "division by zero"
    elif isinstance(exc, IndexError):
        detail = str(exc) or "index out of bounds"
    else:
        detail = str(exc)
    return invalid(path, type_, f"{detail} evaluating rule: {text}")
