"""SPDY/3.1 framing: the wire format of kubectl's port-forward (and the legacy exec transport).

kubectl 1.32 tunnels SPDY inside a websocket for port-forward (``SPDY/3.1+portforward.k8s.io``) and
falls back to a raw ``Upgrade: SPDY/3.1`` connection; either way the node agent must speak the
framing that ``github.com/moby/spdystream`` (the Go client) speaks. That is:

- control frames: ``0x8003`` (control bit + version 3), a 16-bit type, 8-bit flags, a 24-bit length;
- data frames: a 31-bit stream id, 8-bit flags (``0x01`` FIN), a 24-bit length;
- header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib streams primed with the SPDY/3 dictionary,
  one compression context per direction for the whole connection, sync-flushed per block. Inside: a
  32-bit pair count, then length-prefixed lowercase names and values (several values of one name are
  joined by NUL).

:class:`SpdyCodec` owns both zlib contexts: :meth:`SpdyCodec.feed` takes bytes as they arrive (a frame
may be split across websocket messages or TCP reads, and several may come together) and returns the
complete frames; :meth:`SpdyCodec.encode` turns a frame into bytes. No I/O here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

__all__ = [
    "CONTROL_FLAG_FIN",
    "DATA_FLAG_FIN",
    "HEADER_DICTIONARY",
    "MAX_DATA_LENGTH",
    "RST_CANCEL",
    "RST_INTERNAL_ERROR",
    "RST_INVALID_STREAM",
    "RST_PROTOCOL_ERROR",
    "RST_REFUSED_STREAM",
    "DataFrame",
    "Frame",
    "GoAway",
    "Headers",
    "Ping",
    "RstStream",
    "Settings",
    "SpdyCodec",
    "SpdyError",
    "SynReply",
    "SynStream",
    "UnknownControl",
    "WindowUpdate",
]

VERSION = 3
TYPE_SYN_STREAM = 1
TYPE_SYN_REPLY = 2
TYPE_RST_STREAM = 3
TYPE_SETTINGS = 4
TYPE_PING = 6
TYPE_GOAWAY = 7
TYPE_HEADERS = 8
TYPE_WINDOW_UPDATE = 9

CONTROL_FLAG_FIN = 0x01
CONTROL_FLAG_UNIDIRECTIONAL = 0x02
DATA_FLAG_FIN = 0x01

RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6

#: A frame's length field is 24 bits.
MAX_DATA_LENGTH = (1 << 24) - 1
#: Refuse absurd header blocks instead of inflating them without bound.
_MAX_HEADER_BLOCK = 1 << 20


def _dictionary() -> bytes:
    # The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed tokens, then a tail
    # of status codes, dates and media types. 1423 bytes, zlib dictionary id (Adler-32) 0xe3c6a7c2;
    # a test checks both, because a single wrong byte makes every peer's inflate fail.
    tokens = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
        "cache-control", "connection", "content-base", "content-encoding", "content-language",
        "content-length", "content-location", "content-md5", "content-range", "content-type",
        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    ]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack(">I", len(t)) + t.encode() for t in tokens) + tail.encode()


HEADER_DICTIONARY = _dictionary()

HeaderMap = dict[str, list[str]]


class SpdyError(Exception):
    """The peer sent something that is not SPDY/3: the session cannot go on."""


@dataclass
class SynStream:
    stream_id: int
    headers: HeaderMap = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & CONTROL_FLAG_FIN)


@dataclass
class SynReply:
    stream_id: int
    headers: HeaderMap = field(default_factory=dict)
    flags: int = 0


@dataclass
class Headers:
    stream_id: int
    headers: HeaderMap = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    #: (flags, id, value) triples
    entries: list[tuple[int, int, int]] = field(default_factory=list)
    flags: int = 0


@dataclass
class Ping:
    id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass
class UnknownControl:
    """A control frame type this codec does not model (CREDENTIAL, NOOP): skipped, not fatal."""

    type: int
    flags: int
    payload: bytes


@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & DATA_FLAG_FIN)


Frame = (SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway | WindowUpdate
         | UnknownControl | DataFrame)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATA_LENGTH:
        raise SpdyError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def _encode_header_pairs(headers: HeaderMap) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        raw_name = name.lower().encode()
        raw_value = "\x00".join(values).encode()
        out.append(struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(out)


def _decode_header_pairs(raw: bytes) -> HeaderMap:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        offset = 4
        headers: HeaderMap = {}
        for _ in range(count):
            (name_len,) = struct.unpack_from(">I", raw, offset)
            offset += 4
            name = raw[offset:offset + name_len].decode()
            offset += name_len
            (value_len,) = struct.unpack_from(">I", raw, offset)
            offset += 4
            value = raw[offset:offset + value_len].decode()
            offset += value_len
            if name != name.lower():
                raise SpdyError("header was not lowercased")
            if name in headers:
                raise SpdyError("multiple headers with same name")
            headers[name] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as error:
        raise SpdyError(f"malformed header block: {error}") from None
    return headers


class SpdyCodec:
    """One SPDY connection's framer: incremental parsing in, encoding out, shared zlib contexts."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._compressor = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8,
                                            zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)
        self._decompressor = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    # ------------------------------------------------------------------ encoding

    def _header_block(self, headers: HeaderMap) -> bytes:
        raw = _encode_header_pairs(headers)
        return self._compressor.compress(raw) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_DATA_LENGTH:
                raise SpdyError("data frame too large")
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            payload = struct.pack(">IIBB", frame.stream_id & 0x7FFFFFFF, frame.associated_id & 0x7FFFFFFF,
                                  (frame.priority & 0x7) << 5, 0) + self._header_block(frame.headers)
            return _control(TYPE_SYN_STREAM, frame.flags, payload)
        if isinstance(frame, SynReply):
            payload = struct.pack(">I", frame.stream_id & 0x7FFFFFFF) + self._header_block(frame.headers)
            return _control(TYPE_SYN_REPLY, frame.flags, payload)
        if isinstance(frame, Headers):
            payload = struct.pack(">I", frame.stream_id & 0x7FFFFFFF) + self._header_block(frame.headers)
            return _control(TYPE_HEADERS, frame.flags, payload)
        if isinstance(frame, RstStream):
            return _control(TYPE_RST_STREAM, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags << 24) | (ident & 0xFFFFFF), value) for flags, ident, value in frame.entries)
            return _control(TYPE_SETTINGS, frame.flags, body)
        if isinstance(frame, Ping):
            return _control(TYPE_PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(TYPE_GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id & 0x7FFFFFFF, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(TYPE_WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                                                                frame.delta & 0x7FFFFFFF))
        return _control(frame.type, frame.flags, frame.payload)

    # ------------------------------------------------------------------ decoding

    def _headers_from(self, block: bytes) -> HeaderMap:
        try:
            raw = self._decompressor.decompress(block, _MAX_HEADER_BLOCK)
        except zlib.error as error:
            raise SpdyError(f"header block decompression failed: {error}") from None
        if self._decompressor.unconsumed_tail:
            raise SpdyError("header block too large")
        return _decode_header_pairs(raw)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame now complete (possibly none)."""
        self._buffer.extend(data)
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer, 0)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            flags = second >> 24
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise SpdyError(f"unsupported SPDY version {version}")
                frames.append(self._control_frame(first & 0xFFFF, flags, payload))
            else:
                frames.append(DataFrame(first & 0x7FFFFFFF, payload, flags))
        return frames

    def _control_frame(self, frame_type: int, flags: int, payload: bytes) -> Frame:
        try:
            if frame_type == TYPE_SYN_STREAM:
                stream_id, associated, priority = struct.unpack_from(">IIB", payload, 0)
                return SynStream(stream_id & 0x7FFFFFFF, self._headers_from(payload[10:]),
                                 associated & 0x7FFFFFFF, priority >> 5, flags)
            if frame_type in (TYPE_SYN_REPLY, TYPE_HEADERS):
                (stream_id,) = struct.unpack_from(">I", payload, 0)
                cls = SynReply if frame_type == TYPE_SYN_REPLY else Headers
                return cls(stream_id & 0x7FFFFFFF, self._headers_from(payload[4:]), flags)
            if frame_type == TYPE_RST_STREAM:
                stream_id, status = struct.unpack_from(">II", payload, 0)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if frame_type == TYPE_SETTINGS:
                (count,) = struct.unpack_from(">I", payload, 0)
                entries = []
                for index in range(count):
                    flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                    entries.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
                return Settings(entries, flags)
            if frame_type == TYPE_PING:
                return Ping(struct.unpack_from(">I", payload, 0)[0])
            if frame_type == TYPE_GOAWAY:
                last, status = struct.unpack_from(">II", payload, 0) if len(payload) >= 8 else (
                    struct.unpack_from(">I", payload, 0)[0], 0)
                return GoAway(last & 0x7FFFFFFF, status)
            if frame_type == TYPE_WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from(">II", payload, 0)
                return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise SpdyError(f"truncated control frame of type {frame_type}") from None
        return UnknownControl(frame_type, flags, payload)
