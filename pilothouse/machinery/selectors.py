"""Label and field selectors: parsing the query-string forms and matching objects.

Grammar as in k8s.io/apimachinery/pkg/labels (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x)``, ``a``, ``!a``, comma-separated = AND) and pkg/fields (``a=b``, ``a==b``,
``a!=b``). ``LabelSelector`` objects (``matchLabels`` + ``matchExpressions``) from specs compile to
the same :class:`LabelSelector`, so the apiserver, controllers and the scheduler share one matcher.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.machinery.errors import StatusError, bad_request

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_object",
    "selector_from_set",
]

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        value = labels.get(self.key)
        if op == "=":
            return value == self.values[0]
        if op == "!=":
            return value != self.values[0]
        if op == "in":
            return value is not None and value in self.values
        if op == "notin":
            return value is None or value not in self.values
        if op in ("gt", "lt"):
            try:
                number, bound = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return number > bound if op == "gt" else number < bound
        return False

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    #: A selector that matches nothing (a nil LabelSelector object in a spec).
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def equality_pairs(self) -> dict[str, str]:
        """The ``key=value`` requirements: usable as an index lookup before full matching."""
        return {r.key: r.values[0] for r in self.requirements if r.operator == "="}

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise bad_request(f"unable to parse requirement: {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector=`` query text. Raises a 400 StatusError on bad syntax."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def fail(why: str) -> StatusError:
        return bad_request(f"unable to parse requirement: {why}")

    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            if i + 1 >= len(tokens):
                raise fail("missing key after '!'")
            requirements.append(Requirement(tokens[i + 1], "!"))
            i += 2
        else:
            key = token
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ","
            if nxt == ",":
                requirements.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                if i + 2 >= len(tokens) or tokens[i + 2] == ",":
                    value = ""
                    i += 2
                else:
                    value = tokens[i + 2]
                    i += 3
                requirements.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in ("in", "notin"):
                if i + 2 >= len(tokens) or tokens[i + 2] != "(":
                    raise fail(f"found '{tokens[i + 2] if i + 2 < len(tokens) else ''}', expected: '('")
                j = i + 3
                values: list[str] = []
                while j < len(tokens) and tokens[j] != ")":
                    if tokens[j] != ",":
                        values.append(tokens[j])
                    j += 1
                if j >= len(tokens):
                    raise fail("found '', expected: ')'")
                requirements.append(Requirement(key, nxt, tuple(sorted(set(values)))))
                i = j + 1
            elif nxt in ("gt", "lt"):
                requirements.append(Requirement(key, nxt, (tokens[i + 2],)))
                i += 3
            else:
                raise fail(f"found '{nxt}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(tokens):
            if tokens[i] != ",":
                raise fail(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    return LabelSelector(tuple(requirements))


def selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` from a spec. None matches nothing; ``{}`` matches everything."""
    if selector is None:
        return LabelSelector(nothing=True)
    requirements = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or ():
        operator = operators.get(expression.get("operator", ""))
        if operator is None:
            return LabelSelector(nothing=True)
        requirements.append(Requirement(expression.get("key", ""), operator,
                                        tuple(expression.get("values") or ())))
    return LabelSelector(tuple(requirements))


def selector_from_set(labels: Mapping[str, Any] | None) -> LabelSelector:
    """A plain ``key: value`` map selector (a ReplicationController's or a Service's ``spec.selector``),
    as ``labels.SelectorFromSet``: requirements sorted by key, so its string form is Kubernetes'.

    None matches nothing, as the replication manager's conversion makes a nil map a nil
    ``LabelSelector`` (``metav1.SetAsLabelSelector``); ``{}`` matches everything.
    """
    if labels is None:
        return LabelSelector(nothing=True)
    return LabelSelector(tuple(Requirement(key, "=", (str(labels[key]),)) for key in sorted(labels)))


@dataclass(frozen=True, slots=True)
class FieldSelector:
    #: (field, operator "=" or "!=", value)
    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        for field, operator, value in self.terms:
            actual = fields.get(field, "")
            if (actual == value) != (operator == "="):
                return False
        return True

    def empty(self) -> bool:
        return not self.terms

    def fields(self) -> set[str]:
        return {term[0] for term in self.terms}

    def required_value(self, field: str) -> str | None:
        """The value ``field=value`` pins, if any (lets the server narrow a scan)."""
        for name, operator, value in self.terms:
            if name == field and operator == "=":
                return value
        return None


def parse_field_selector(text: str | None) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    terms: list[tuple[str, str, str]] = []
    for part in _split_unescaped(text):
        part = part.strip()
        if not part:
            continue
        for operator in ("!=", "==", "="):
            if operator in part:
                field, value = part.split(operator, 1)
                terms.append((field.strip(), "!=" if operator == "!=" else "=", _unescape(value.strip())))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    return FieldSelector(tuple(terms))


def _split_unescaped(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)
