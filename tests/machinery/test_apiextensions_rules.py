"""x-kubernetes-validations CEL rules on custom resources, with Kubernetes' messages.

Cases follow apiextensions-apiserver's ``pkg/apiserver/schema/cel/validation_test.go`` and
``pkg/apiserver/validation/validation_test.go`` (transition rules, list-map correlation, reasons,
fieldPath, messageExpression fallbacks), evaluated by the real CEL library.
"""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery.apiextensions import validate_crd_schema, validate_rules


def _obj(props: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _spec(props: dict[str, Any], *rules: dict[str, Any]) -> dict[str, Any]:
    return _obj({"spec": _obj(props, list(rules))})


def _messages(schema: dict[str, Any], new: Any, old: Any = None) -> list[str]:
    return [e.message() for e in validate_rules(schema, new, old)]


REPLICAS = {"replicas": {"type": "integer"}, "name": {"type": "string"}}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("passes", {"rule": "self.replicas >= 1"}, {"replicas": 2}, []),
    ("default message", {"rule": "self.replicas >= 1"}, {"replicas": 0},
     ['spec: Invalid value: "object": failed rule: self.replicas >= 1']),
    ("message", {"rule": "self.replicas >= 1", "message": "  must be positive "}, {"replicas": 0},
     ['spec: Invalid value: "object": must be positive']),
    ("messageExpression", {"rule": "self.replicas >= 1", "messageExpression": "'got ' + string(self.replicas)"},
     {"replicas": -3}, ['spec: Invalid value: "object": got -3']),
    ("messageExpression not a string falls back", {"rule": "self.replicas >= 1", "messageExpression": "true"},
     {"replicas": 0}, ['spec: Invalid value: "object": failed rule: self.replicas >= 1']),
    ("messageExpression error falls back to message",
     {"rule": "self.replicas >= 1", "message": "message not messageExpression",
      "messageExpression": "'str1 ' + ['a', 'b'][4]"}, {"replicas": 0},
     ['spec: Invalid value: "object": message not messageExpression']),
    ("reason Forbidden", {"rule": "self.replicas >= 1", "reason": "FieldValueForbidden", "message": "no"},
     {"replicas": 0}, ["spec: Forbidden: no"]),
    ("reason Required", {"rule": "has(self.name)", "reason": "FieldValueRequired", "message": "name please"},
     {"replicas": 0}, ["spec: Required value: name please"]),
    ("reason Duplicate", {"rule": "false", "reason": "FieldValueDuplicate"}, {"replicas": 0},
     ['spec: Duplicate value: "object"']),
    ("fieldPath", {"rule": "self.replicas >= 1", "fieldPath": ".replicas"}, {"replicas": 0},
     ['spec.replicas: Invalid value: "object": failed rule: self.replicas >= 1']),
    ("fieldPath quoted", {"rule": "self.replicas >= 1", "fieldPath": "['replicas']"}, {"replicas": 0},
     ['spec.replicas: Invalid value: "object": failed rule: self.replicas >= 1']),
    ("no such key", {"rule": "self.name == 'x'"}, {"replicas": 0},
     ['spec: Invalid value: "object": no such key: name evaluating rule: self.name == \'x\'']),
    ("division by zero", {"rule": "self.replicas / 0 == 1"}, {"replicas": 1},
     ['spec: Invalid value: "object": division by zero evaluating rule: self.replicas / 0 == 1']),
    ("string functions", {"rule": "self.name.startsWith('a') && self.name.matches('^[a-z]+$') "
                                  "&& self.name.lowerAscii() == 'abc' && size(self.name) == 3"},
     {"name": "abc"}, []),
    ("has and macros", {"rule": "!has(self.name) || ['a', 'b'].exists(x, x == self.name)"}, {"replicas": 1}, []),
    ("null fields are absent", {"rule": "!has(self.name)"}, {"replicas": 1, "name": None}, []),
]


@pytest.mark.parametrize(("rule", "value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(rule: dict[str, Any], value: dict[str, Any], expected: list[str]) -> None:
    assert _messages(_spec(REPLICAS, rule), {"spec": value}) == expected


def test_rule_on_scalar_reports_its_type() -> None:
    schema = _obj({"field": {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'x'"}]}})
    assert _messages(schema, {"field": "y"}) == ['field: Invalid value: "string": failed rule: self == \'x\'']


def test_root_rule_is_reported_at_nil_path() -> None:
    schema = _obj({"a": {"type": "integer"}}, [{"rule": "self.a > 1"}])
    assert _messages(schema, {"a": 0}) == ['<nil>: Invalid value: "object": failed rule: self.a > 1']


def test_transition_rule_needs_an_old_value() -> None:
    schema = _obj({"field": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}})
    assert _messages(schema, {"field": "y"}) == []  # create: no old value, rule skipped
    assert _messages(schema, {"field": "x"}, {"field": "x"}) == []
    assert _messages(schema, {"field": "y"}, {"field": "x"}) == [
        'field: Invalid value: "string": failed rule: self == oldSelf']


def test_transition_rule_under_list_map_correlates_by_keys() -> None:
    item = _obj({"k1": {"type": "string"}, "k2": {"type": "string"},
                 "v1": {"type": "number", "x-kubernetes-validations": [{"rule": "self >= oldSelf"}]}})
    schema = _obj({"field": {"type": "array", "x-kubernetes-list-type": "map",
                             "x-kubernetes-list-map-keys": ["k1", "k2"], "items": item}})
    old = {"field": [{"k1": "a", "k2": "b", "v1": 1.0}]}
    assert _messages(schema, {"field": [{"k1": "a", "k2": "b", "v1": 1.2}]}, old) == []
    assert _messages(schema, {"field": [{"k1": "a", "k2": "b", "v1": 0.9}]}, old) == [
        'field[0].v1: Invalid value: "number": failed rule: self >= oldSelf']
    # An item with other keys has no old counterpart, so its transition rule does not run.
    assert _messages(schema, {"field": [{"k1": "a", "k2": "c", "v1": 0.9}]}, old) == []


def test_rule_under_atomic_list_items() -> None:
    item = _obj({"x": {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'x'"}]}})
    schema = _obj({"field": {"type": "array", "items": item}})
    assert _messages(schema, {"field": [{"x": "x"}, {"x": "y"}]}) == [
        'field[1].x: Invalid value: "string": failed rule: self == \'x\'']


def test_map_values_use_key_paths() -> None:
    schema = _obj({"m": {"type": "object", "additionalProperties": {
        "type": "integer", "x-kubernetes-validations": [{"rule": "self < 10"}]}}})
    assert _messages(schema, {"m": {"a": 1, "b": 11}}) == ['m[b]: Invalid value: "integer": failed rule: self < 10']


def test_escaped_property_names() -> None:
    schema = _spec({"foo-bar": {"type": "string"}}, {"rule": "self.foo__dash__bar == 'ok'"})
    assert _messages(schema, {"spec": {"foo-bar": "ok"}}) == []
    assert len(_messages(schema, {"spec": {"foo-bar": "no"}})) == 1


def test_keyword_property_names() -> None:
    props = {"namespace": {"type": "integer"}, "if": {"type": "integer"}, "true": {"type": "integer"}}
    schema = _spec(props, {"rule": "self.namespace == 1 && self.__namespace__ == 1 && self.if == 2 "
                                   "&& self.__if__ == 2 && self.__true__ == 3"})
    assert validate_crd_schema(schema, CRD_PATH) == []
    assert _messages(schema, {"spec": {"namespace": 1, "if": 2, "true": 3}}) == []


CRD_PATH = "spec.versions[0].schema.openAPIV3Schema"


def test_crd_rule_compilation_error() -> None:
    schema = _spec(REPLICAS, {"rule": "self.replicas <"})
    messages = [e.message() for e in validate_crd_schema(schema, CRD_PATH)]
    assert len(messages) == 1
    assert messages[0].startswith(
        f"{CRD_PATH}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "
        'apiextensions.ValidationRule{Rule:"self.replicas <", Message:"", MessageExpression:"", '
        "Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: "
        "compilation failed: ERROR: <input>:1:16: Syntax error:")


def test_crd_rule_syntax_rules() -> None:
    schema = _spec(REPLICAS, {"rule": " "}, {"rule": "self.replicas > 0", "reason": "Bad"},
                   {"rule": "true", "fieldPath": ".nope"})
    assert [e.message() for e in validate_crd_schema(schema, CRD_PATH)] == [
        f"{CRD_PATH}.properties[spec].x-kubernetes-validations[0].rule: Required value: rule is not specified",
        f'{CRD_PATH}.properties[spec].x-kubernetes-validations[1].reason: Unsupported value: "Bad": supported '
        'values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"',
        f'{CRD_PATH}.properties[spec].x-kubernetes-validations[2].fieldPath: Invalid value: ".nope": fieldPath '
        "must be a valid path",
    ]


def test_crd_old_self_on_uncorrelatable_items() -> None:
    item = {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
    schema = _spec({"list": {"type": "array", "items": item}})
    assert [e.message() for e in validate_crd_schema(schema, CRD_PATH)] == [
        f'{CRD_PATH}.properties[spec].properties[list].items.x-kubernetes-validations[0].rule: Invalid value: '
        f'"self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within '
        f"{CRD_PATH}.properties[spec].properties[list]"]


def test_formats_and_numbers_as_cel_types() -> None:
    schema = _spec({"at": {"type": "string", "format": "date-time"}, "every": {"type": "string", "format": "duration"},
                    "data": {"type": "string", "format": "byte"}, "ratio": {"type": "number"}},
                   {"rule": "self.at < timestamp('2030-01-01T00:00:00Z')", "message": "at"},
                   {"rule": "self.every >= duration('1m')", "message": "every"},
                   {"rule": "size(self.data) == 3", "message": "data"},
                   {"rule": "self.ratio == 2.0", "message": "ratio"})
    assert _messages(schema, {"spec": {"at": "2029-01-01T00:00:00Z", "every": "1h30m", "data": "YWJj",
                                       "ratio": 2}}) == []
    assert _messages(schema, {"spec": {"at": "2031-01-01T00:00:00Z", "every": "30s", "data": "YQ==",
                                       "ratio": 2.5}}) == [
        'spec: Invalid value: "object": at', 'spec: Invalid value: "object": every',
        'spec: Invalid value: "object": data', 'spec: Invalid value: "object": ratio']


LIBRARY_RULES = [
    "self.name.lowerAscii() == 'hello-world' && self.name.upperAscii() == 'HELLO-WORLD'",
    "self.csv.split(',') == ['a', 'b', 'c'] && self.names.join('-') == 'a-b-c'",
    "self.name.indexOf('l') == 2 && self.name.lastIndexOf('l') == 9 && self.names.indexOf('b') == 1",
    "self.name.replace('l', 'L') == 'HeLLo-WorLd' && self.name.substring(0, 5) == 'Hello'",
    "self.names.isSorted() && !self.nums.isSorted() && self.nums.sum() == 6 && self.nums.max() == 3",
    "self.m.all(k, self.m[k] == 'v') && 'k' in self.m && has(self.m.k)",
    "self.names.exists_one(x, x == 'a') && self.names.map(x, x + 'x') == ['ax', 'bx', 'cx']",
    "url(self.u).getHostname() == 'example.com' && url(self.u).getPort() == '8080' && isURL(self.u)",
    "quantity(self.q).isGreaterThan(quantity('1')) && quantity(self.q).compareTo(quantity('1.5')) == 0",
    "isQuantity('1Gi') && !isQuantity('1GG') && quantity('1').add(quantity('500m')).isLessThan(quantity('2'))",
    "self.csv.find('[a-z]') == 'a' && self.csv.findAll('[a-z]', 2) == ['a', 'b']",
    "isIP('10.0.0.1') && !isIP('10.0.0') && ip('::1').family() == 6 && ip('127.0.0.1').isLoopback()",
    "cidr('10.0.0.0/8').containsIP('10.1.2.3') && !cidr('10.0.0.0/8').containsIP(ip('11.0.0.1')) "
    "&& cidr('10.0.0.0/8').prefixLength() == 8 && !isCIDR('10.0.0.0/33')",
    "self.?m.?k.orValue('') == 'v' && self.?m.?nope.orValue('d') == 'd' && !self.?absent.hasValue()",
    "self.names[?1].orValue('') == 'b' && self.names[?7].orValue('z') == 'z' && self.m[?'k'].value() == 'v'",
    "self.csv != 'x.?y' && optional.none().orValue(1) == 1",
    "self.m.all(k, v, v == 'v') && self.names.exists(i, n, i == 2 && n == 'c') && self.nums.existsOne(i, n, n == 3)",
    "self.names.transformList(i, n, i > 0, n + 'x') == ['bx', 'cx'] "
    "&& self.m.transformMap(k, v, v + '!')['k'] == 'v!'",
    "self.m.transformMapEntry(k, v, {v: k}) == {'v': 'k'} "
    "&& self.names.all(i, a, self.names.all(j, b, i == j || a != b))",
]


@pytest.mark.parametrize("rule", LIBRARY_RULES)
def test_kubernetes_library(rule: str) -> None:
    props = {"name": {"type": "string"}, "csv": {"type": "string"}, "u": {"type": "string"}, "q": {"type": "string"},
             "names": {"type": "array", "items": {"type": "string"}},
             "nums": {"type": "array", "items": {"type": "integer"}},
             "m": {"type": "object", "additionalProperties": {"type": "string"}}}
    value = {"name": "Hello-World", "csv": "a,b,c", "u": "https://example.com:8080/p?a=1", "q": "1500m",
             "names": ["a", "b", "c"], "nums": [3, 1, 2], "m": {"k": "v"}}
    assert _messages(_spec(props, {"rule": rule}), {"spec": value}) == []
    assert len(_messages(_spec(props, {"rule": f"!({rule})"}), {"spec": value})) == 1


def test_crd_rules_are_compiled_only_without_schema_errors_below() -> None:
    child = {"type": "string", "x-kubernetes-validations": [{"rule": "self >"}]}
    parent_rule = {"rule": "self.a >"}
    ok = _spec({"a": child}, parent_rule)
    paths = [e.field for e in validate_crd_schema(ok, CRD_PATH)]
    # Both compile errors, the child's first (upstream recurses before compiling a node's rules).
    assert paths == [f"{CRD_PATH}.properties[spec].properties[a].x-kubernetes-validations[0].rule",
                     f"{CRD_PATH}.properties[spec].x-kubernetes-validations[0].rule"]
    broken = _spec({"a": {**child, "x-kubernetes-map-type": "atomic"}}, parent_rule)
    # A schema error below a node stops its rules (and those below) from being compiled.
    assert [e.field for e in validate_crd_schema(broken, CRD_PATH)] == [
        f"{CRD_PATH}.properties[spec].properties[a].type"]


UNDEFINED = [
    ("self.replicass > 0", "ERROR: <input>:1:5: undefined field 'replicass'\n | self.replicass > 0\n | ....^"),
    ("self.replicas > 0 &&\n  oldSelf.nam == 'x'",
     "ERROR: <input>:2:10: undefined field 'nam'\n |   oldSelf.nam == 'x'\n | .........^"),
]


@pytest.mark.parametrize(("rule", "detail"), UNDEFINED)
def test_crd_rule_naming_an_undefined_field(rule: str, detail: str) -> None:
    schema = _spec(REPLICAS, {"rule": rule, "message": "m"})
    errors = validate_crd_schema(schema, CRD_PATH)
    assert [(e.field, e.detail) for e in errors] == [
        (f"{CRD_PATH}.properties[spec].x-kubernetes-validations[0].rule", f"compilation failed: {detail}")]


@pytest.mark.parametrize("rule", [
    "self.name.startsWith('a') && 'self.nope' != ''",  # a method and a string are not fields
    "has(self.name) && self.foo__dash__bar == 'x'",  # escaped names
    "self.labels.anything == 'x'",  # maps are open
    "self.free.anything.deeper == 1",  # preserved unknown fields are dynamic
])
def test_crd_rule_fields_that_exist(rule: str) -> None:
    props = {**REPLICAS, "foo-bar": {"type": "string"},
             "labels": {"type": "object", "additionalProperties": {"type": "string"}},
             "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    assert validate_crd_schema(_spec(props, {"rule": rule}), CRD_PATH) == []


def test_resource_root_rules_see_type_and_object_meta() -> None:
    schema = _obj({"spec": _obj(REPLICAS)}, [{"rule": "self.metadata.name.startsWith('a') && self.kind == 'X'"}])
    assert validate_crd_schema(schema, CRD_PATH) == []
