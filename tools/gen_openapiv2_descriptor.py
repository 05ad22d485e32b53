"""Extract gnostic's ``openapiv2/OpenAPIv2.proto`` descriptor from the kubectl binary.

Why: kubectl decodes ``GET /openapi/v2`` as gnostic's ``openapi.v2.Document`` message. gnostic-models is
built with google.golang.org/protobuf, which embeds each file's serialized ``FileDescriptorProto``
verbatim (``file_openapiv2_OpenAPIv2_proto_rawDesc``) in the binary. Taking it from the kubectl that
will read our answers gives the exact field numbers it expects, and lets the ``protobuf`` package build
the message classes at run time, with no protoc step and no generated code in the tree.

Writes ``pilothouse/machinery/protobuf/gnostic_openapiv2.desc`` (the raw ``FileDescriptorProto``).

Usage: ``.venv/bin/python tools/gen_openapiv2_descriptor.py [/path/to/kubectl.1.32]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.protobuf import descriptor_pb2

from pilothouse.machinery.protobuf.wire import WIRE_LEN, WIRE_VARINT, read_varint

__all__ = ["extract", "main"]

DEFAULT_BINARY = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
OUT = Path(__file__).resolve().parents[1] / "pilothouse/machinery/protobuf/gnostic_openapiv2.desc"
# FileDescriptorProto field 1 (name) then field 2 (package): how the raw descriptor starts.
_START = b"\n\x19openapiv2/OpenAPIv2.proto\x12\nopenapi.v2"
_LAST_FIELD = 14  # FileDescriptorProto's highest field number (edition)


def extract(binary: bytes) -> bytes:
    """The raw descriptor: fields are written in ascending number order, so it ends where that breaks."""
    start = binary.find(_START)
    if start < 0:
        raise SystemExit("openapiv2/OpenAPIv2.proto descriptor not found")
    pos, last = start, 0
    while True:
        key, after_key = read_varint(binary, pos)
        number, wire = key >> 3, key & 7
        if not last <= number <= _LAST_FIELD or number == 0 or wire not in (WIRE_LEN, WIRE_VARINT):
            break
        value, after_value = read_varint(binary, after_key)
        pos = after_value + value if wire == WIRE_LEN else after_value
        last = number
    raw = binary[start:pos]
    parsed = descriptor_pb2.FileDescriptorProto.FromString(raw)
    if not any(m.name == "Document" for m in parsed.message_type):
        raise SystemExit("extracted descriptor has no Document message")
    return raw


def main(argv: list[str]) -> int:
    raw = extract(Path(argv[1] if len(argv) > 1 else DEFAULT_BINARY).read_bytes())
    OUT.write_bytes(raw)
    print(f"wrote {OUT} ({len(raw)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
