"""Encode a Swagger 2.0 (OpenAPI v2) document as gnostic's ``openapi.v2.Document`` protobuf.

Why: kubectl reads ``GET /openapi/v2`` only as that message (``Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf``); kube-apiserver produces it with
gnostic's compiler from the JSON document. We do the same mapping here.

Encoder choice: the ``protobuf`` package (Google's, well kept) does the wire encoding. Its message
classes are built at run time from gnostic's own ``FileDescriptorProto``, extracted from the kubectl
binary by ``tools/gen_openapiv2_descriptor.py`` (``gnostic_openapiv2.desc``), so there is no protoc
step and no generated code. Unlike the request-body decoder next door (a tiny hand-written reader,
because decoding needs Go's zero-value rules), encoding here needs nothing but the schema, which is
exactly what the library is for.

The mapping is driven by the descriptor: a JSON key becomes the field whose ``json_name`` matches
(``$ref`` is ``_ref``), ``x-*`` keys become ``vendor_extension`` entries, JSON maps become repeated
``Named*`` pairs, free-form values (``default``, ``enum``, ``example``, extensions) become ``Any``
with their YAML text, and gnostic's ``oneof`` wrappers pick their branch as its compiler does. Keys
Swagger 2.0 does not have are dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import orjson
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["document_class", "encode_document"]

_PACKAGE = "openapi.v2"


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    # A private pool: gnostic's names cannot clash with anything else registered in the process.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
    raw = resources.files(__package__).joinpath("gnostic_openapiv2.desc").read_bytes()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
    return pool


def document_class() -> type[Message]:
    """The ``openapi.v2.Document`` message class (for decoding, e.g. in tests)."""
    cls: type[Message] = message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{_PACKAGE}.Document"))
    return cls


def encode_document(document: Mapping[str, Any]) -> bytes:
    """The serialized ``openapi.v2.Document`` for a Swagger 2.0 JSON document."""
    message = document_class()()
    _fill(message, document)
    data: bytes = message.SerializeToString()
    return data


def _yaml(value: Any) -> str:
    # gnostic stores free-form values as YAML text; JSON is YAML, and every reader (kube-openapi,
    # kubectl) parses the field with a YAML parser.
    return orjson.dumps(value).decode()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@functools.cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by their OpenAPI key (the descriptor's json_name; ``$ref`` for ``_ref``)."""
    fields = {field.json_name: field for field in descriptor.fields}
    if "_ref" in descriptor.fields_by_name:
        fields["$ref"] = descriptor.fields_by_name["_ref"]
    return fields


_SECURITY = {"basic": "basic_authentication_security", "apiKey": "api_key_security"}
_OAUTH2 = {"implicit": "oauth2_implicit_security", "password": "oauth2_password_security",
           "application": "oauth2_application_security", "accessCode": "oauth2_access_code_security"}
_NON_BODY = {"header": "header_parameter_sub_schema", "formData": "form_data_parameter_sub_schema",
             "query": "query_parameter_sub_schema", "path": "path_parameter_sub_schema"}

# gnostic's oneof wrappers: which branch a JSON value goes to (as gnostic's compiler decides).
_BRANCH: dict[str, Callable[[Any], str]] = {
    "ParametersItem": lambda v: "json_reference" if "$ref" in v else "parameter",
    "Parameter": lambda v: "body_parameter" if v.get("in") == "body" else "non_body_parameter",
    "NonBodyParameter": lambda v: _NON_BODY[v.get("in", "query")],
    "ResponseValue": lambda v: "json_reference" if "$ref" in v else "response",
    "SchemaItem": lambda v: "file_schema" if v.get("type") == "file" else "schema",
    "SecurityDefinitionsItem": lambda v: _SECURITY.get(v.get("type", ""), _OAUTH2.get(v.get("flow", ""), "")),
}
# Messages holding a JSON map whose keys are not fixed (paths, response codes): key -> repeated field.
_KEYED = {"Paths": "path", "Responses": "response_code"}


def _fill(message: Message, value: Any) -> None:
    descriptor = message.DESCRIPTOR
    name = descriptor.name
    branch = _BRANCH.get(name)
    if branch is not None:
        field = branch(value)
        if field:
            _fill_message_field(message, field, value)
    elif name == "Any":
        message.yaml = _yaml(value)
    elif name in ("TypeItem", "StringArray"):
        message.value.extend(_as_list(value))
    elif name == "ItemsItem":
        for schema in _as_list(value):
            _fill(message.schema.add(), schema)
    elif name == "AdditionalPropertiesItem":
        if isinstance(value, bool):
            message.boolean = value
        else:
            _fill_message_field(message, "schema", value)
    elif name in _KEYED:
        for key, item in value.items():
            _add_named(message, "vendor_extension" if key.startswith("x-") else _KEYED[name], key, item)
    elif [f.name for f in descriptor.fields] == ["additional_properties"]:
        for key, item in value.items():
            _add_named(message, "additional_properties", key, item)
    else:
        _fill_fields(message, value)


def _fill_fields(message: Message, value: Mapping[str, Any]) -> None:
    fields = _fields(message.DESCRIPTOR)
    for key, item in value.items():
        if key.startswith("x-") and "vendorExtension" in fields:
            _add_named(message, "vendor_extension", key, item)
            continue
        field = fields.get(key)
        if field is None:
            continue  # not a Swagger 2.0 key (e.g. OpenAPI 3's nullable): gnostic has no field for it
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                for element in item:
                    _fill(getattr(message, field.name).add(), element)
            else:
                _fill_message_field(message, field.name, item)
        elif field.is_repeated:
            getattr(message, field.name).extend(item)
        else:
            setattr(message, field.name, _scalar(field, item))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(value)
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_INT32):
        return int(value)
    return value


def _fill_message_field(message: Message, field: str, value: Any) -> None:
    child = getattr(message, field)
    child.SetInParent()  # present even when empty: readers test e.g. ``GetProperties() != nil``
    _fill(child, value)


def _add_named(message: Message, field: str, key: str, value: Any) -> None:
    entry = getattr(message, field).add()
    entry.name = key
    if entry.DESCRIPTOR.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
        _fill_message_field(entry, "value", value)
    else:
        entry.value = value  # NamedString
