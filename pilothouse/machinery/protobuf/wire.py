"""A minimal protobuf wire-format reader.

kubectl's typed clientset sends ``application/vnd.kubernetes.protobuf`` request bodies. Pulling in the
full protobuf runtime for that would be heavy, and Kubernetes only uses a small part of the format:
plain (non-zigzag) varints, length-delimited fields, and the occasional fixed 32/64-bit value. This
module splits a message into ``(field number, wire type, value)`` triples; interpretation (which
field means what) lives in :mod:`pilothouse.machinery.protobuf.decode`.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "WIRE_FIXED32",
    "WIRE_FIXED64",
    "WIRE_LEN",
    "WIRE_VARINT",
    "WireError",
    "iter_fields",
    "read_varint",
    "to_int32",
    "to_int64",
]

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5

_START_GROUP = 3
_END_GROUP = 4


class WireError(ValueError):
    """The bytes are not valid protobuf wire format."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return ``(value, next position)``."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def to_int64(value: int) -> int:
    """Reinterpret an unsigned varint as a two's-complement int64 (how Go encodes negative ints)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def to_int32(value: int) -> int:
    """Reinterpret as int32: negative int32 values are sign-extended to 10-byte varints on the wire."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)`` for each field of one message.

    Varints come back as unsigned ints, fixed-width values as little-endian unsigned ints, and
    length-delimited values as ``bytes``. Groups (deprecated, never used by Kubernetes) are rejected.
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == WIRE_VARINT:
            value, pos = read_varint(data, pos)
            yield number, wire, value
        elif wire == WIRE_LEN:
            size, pos = read_varint(data, pos)
            stop = pos + size
            if stop > end:
                raise WireError("truncated length-delimited field")
            yield number, wire, data[pos:stop]
            pos = stop
        elif wire == WIRE_FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wire, int.from_bytes(data[pos:pos + 8], "little")
            pos += 8
        elif wire == WIRE_FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wire, int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        elif wire in (_START_GROUP, _END_GROUP):
            raise WireError("protobuf groups are not supported")
        else:
            raise WireError(f"invalid wire type {wire}")
