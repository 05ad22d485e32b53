"""Generate ``pilothouse/machinery/protobuf/descriptors.json`` from the kubectl binary.

Why the binary: every gogo-generated ``generated.pb.go`` in k8s.io/api and k8s.io/apimachinery registers
its gzipped ``FileDescriptorProto`` (``proto.RegisterFile``), so a kubectl build carries the exact
descriptors of the API types it encodes, *including the gogoproto field options* that the published
``generated.proto`` text strips (``nullable=false`` tells a Go value field from a pointer field, which we
need to decide whether a zero value on the wire is meaningful). Reading them from the binary that
produces the request bodies is as close to the source of truth as it gets.

The second input is the official OpenAPI definitions (:func:`pilothouse.machinery.schema.definitions`):
a field listed in ``required`` has no ``omitempty`` in its Go json tag, so Go's JSON output keeps its
zero value, and so do we.

Usage: ``.venv/bin/python tools/gen_protobuf_descriptors.py [/path/to/kubectl.1.32]``
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.machinery.protobuf.wire import iter_fields
from pilothouse.machinery.schema import definitions

__all__ = ["main"]

DEFAULT_BINARY = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
OUT = Path(__file__).resolve().parents[1] / "pilothouse/machinery/protobuf/descriptors.json"

# generated.proto files whose messages we keep (the served kinds, plus what they reference and
# the request-only types: Scale, Eviction, DeleteOptions, SelfSubject*Review, Binding).
FILES = [
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/certificates/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/schema/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
]

# proto package -> API group (the package only carries the short group name).
GROUPS = {
    "core": "", "apps": "apps", "batch": "batch", "policy": "policy", "autoscaling": "autoscaling",
    "authorization": "authorization.k8s.io", "authentication": "authentication.k8s.io",
    "coordination": "coordination.k8s.io", "discovery": "discovery.k8s.io", "events": "events.k8s.io",
    "networking": "networking.k8s.io", "rbac": "rbac.authorization.k8s.io",
    "scheduling": "scheduling.k8s.io", "certificates": "certificates.k8s.io",
}

# FieldDescriptorProto.type -> our kind
_TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
          9: "string", 11: "message", 12: "bytes", 13: "uint", 15: "sfixed32", 16: "sfixed64"}
_GOGO_NULLABLE = 65001
_FLAG_REPEATED = 1
_FLAG_KEEP_ZERO = 2
_FLAG_INLINE = 4


def extract_descriptors(binary: bytes) -> dict[str, bytes]:
    """All gzipped FileDescriptorProtos in a Go binary, by file name."""
    found: dict[str, bytes] = {}
    for match in re.finditer(rb"\x1f\x8b\x08", binary):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(binary[match.start():match.start() + 4_000_000])
        except zlib.error:
            continue
        if not inflater.eof or raw[:1] != b"\n":
            continue
        try:
            name = next(v for n, _, v in iter_fields(raw) if n == 1)
        except Exception:  # random bytes that happened to inflate
            continue
        if isinstance(name, bytes) and name.endswith(b".proto"):
            found[name.decode()] = raw
    return found


def _fields_of(data: bytes) -> list[tuple[int, int, int | bytes]]:
    return list(iter_fields(data))


def _parse_message(data: bytes, prefix: str, out: dict[str, dict[str, Any]]) -> None:
    name = ""
    fields: list[dict[str, Any]] = []
    map_entry = False
    for num, _, value in _fields_of(data):
        if num == 1:
            assert isinstance(value, bytes)
            name = value.decode()
    full = f"{prefix}.{name}"
    for num, _, value in _fields_of(data):
        assert isinstance(value, bytes | int)
        if num == 2 and isinstance(value, bytes):
            field: dict[str, Any] = {"nullable": True}
            for fnum, _, fval in _fields_of(value):
                if fnum == 1 and isinstance(fval, bytes):
                    field["name"] = fval.decode()
                elif fnum == 3:
                    field["number"] = fval
                elif fnum == 4:
                    field["label"] = fval
                elif fnum == 5:
                    field["type"] = fval
                elif fnum == 6 and isinstance(fval, bytes):
                    field["type_name"] = fval.decode().lstrip(".")
                elif fnum == 8 and isinstance(fval, bytes):
                    for onum, _, oval in _fields_of(fval):
                        if onum == _GOGO_NULLABLE:
                            field["nullable"] = bool(oval)
            fields.append(field)
        elif num == 3 and isinstance(value, bytes):
            _parse_message(value, full, out)
        elif num == 7 and isinstance(value, bytes):
            map_entry = any(onum == 7 and oval for onum, _, oval in _fields_of(value))
    out[full] = {"fields": fields, "map_entry": map_entry}


def parse_file(raw: bytes) -> tuple[str, dict[str, dict[str, Any]]]:
    package = ""
    for num, _, value in _fields_of(raw):
        if num == 2 and isinstance(value, bytes):
            package = value.decode()
    messages: dict[str, dict[str, Any]] = {}
    for num, _, value in _fields_of(raw):
        if num == 4 and isinstance(value, bytes):
            _parse_message(value, package, messages)
    return package, messages


def _kind(field: dict[str, Any], messages: dict[str, dict[str, Any]]) -> tuple[str, Any]:
    kind = _TYPES.get(field["type"])
    if kind is None:
        raise SystemExit(f"unsupported proto type {field['type']} for {field['name']}")
    if kind != "message":
        return kind, None
    ref = field["type_name"]
    entry = messages.get(ref)
    if entry is not None and entry["map_entry"]:
        by_num = {f["number"]: f for f in entry["fields"]}
        key_kind, _ = _kind(by_num[1], messages)
        value_kind, value_ref = _kind(by_num[2], messages)
        return "map", [key_kind, value_kind, value_ref]
    return "message", ref


def _inlined(name: str, ref: str, schema: dict[str, Any], messages: dict[str, dict[str, Any]]) -> bool:
    """An embedded Go struct with ``json:",inline"`` (IngressRule's IngressRuleValue, Volume's
    VolumeSource, ...): a protobuf field of its own, but its fields sit in the parent's JSON. The
    official schema tells: the parent has no property of that name, and has all of the child's
    fields (inlined types often have no definition of their own, so the child's come from its
    message)."""
    properties = schema.get("properties") or {}
    if not properties or name in properties or ref not in messages:
        return False
    child = {f["name"] for f in messages[ref]["fields"]}
    return bool(child) and child <= set(properties)


def build(binary_path: str) -> dict[str, Any]:
    descriptors = extract_descriptors(Path(binary_path).read_bytes())
    missing = [f for f in FILES if f not in descriptors]
    if missing:
        raise SystemExit(f"descriptors not found in {binary_path}: {missing}")
    messages: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for name in FILES:
        package, parsed = parse_file(descriptors[name])
        messages.update(parsed)
        parts = package.split(".")
        if parts[:3] == ["k8s", "io", "api"]:
            group, version = GROUPS[parts[3]], parts[4]
            kinds[f"{group}/{version}" if group else version] = package
    schemas = definitions()
    out: dict[str, list[list[Any]]] = {}
    for full, message in sorted(messages.items()):
        if message["map_entry"]:
            continue
        schema = schemas.get("io.k8s." + full.removeprefix("k8s.io."), {})
        required = set(schema.get("required", ()))
        rows: list[list[Any]] = []
        for field in sorted(message["fields"], key=lambda f: f["number"]):
            kind, ref = _kind(field, messages)
            flags = 0
            if field.get("label") == 3 and kind != "map":
                flags |= _FLAG_REPEATED
            # A pointer scalar (proto2 optional without nullable=false) is written only when set,
            # and Go's JSON keeps a set pointer even when it points at zero; a required field has
            # no omitempty. Either way a zero on the wire must survive decoding.
            if field["nullable"] or field["name"] in required:
                flags |= _FLAG_KEEP_ZERO
            if kind == "message" and _inlined(field["name"], ref, schema, messages):
                flags |= _FLAG_INLINE
            rows.append([field["number"], field["name"], kind, flags, ref])
        out[full] = rows
    return {
        "source": f"gogo FileDescriptorProtos embedded in {Path(binary_path).name}; "
                  "required fields from the official OpenAPI definitions",
        "kinds": kinds,
        "messages": out,
    }


def main(argv: list[str]) -> int:
    data = build(argv[1] if len(argv) > 1 else DEFAULT_BINARY)
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(data['messages'])} messages, {len(data['kinds'])} group versions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
