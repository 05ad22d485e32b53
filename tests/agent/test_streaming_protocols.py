"""The wire protocols of the agent's streaming server, without containers: SPDY/3.1 framing, the
websocket channel protocol, and a port-forward session against a local TCP server."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import pytest

from pilothouse.components.agent.streaming import channels, spdy
from pilothouse.components.agent.streaming.portforward import PortForwardSession
from pilothouse.components.agent.streaming.wsportforward import parse_ports

# ---------------------------------------------------------------------- SPDY framing


def test_header_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(spdy.HEADER_DICTIONARY) == 0xE3C6A7C2
    assert spdy.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.HEADER_DICTIONARY.endswith(b",*,enq=0.")


def test_every_frame_type_round_trips() -> None:
    out, back = spdy.SpdyCodec(), spdy.SpdyCodec()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}, priority=3),
        spdy.SynReply(1, {}),
        spdy.Headers(3, {"a": ["x", "y"]}, flags=spdy.CONTROL_FLAG_FIN),
        spdy.DataFrame(3, b"payload"),
        spdy.DataFrame(3, b"", spdy.DATA_FLAG_FIN),
        spdy.RstStream(5, spdy.RST_CANCEL),
        spdy.Settings([(0, 7, 65536)]),
        spdy.Ping(7),
        spdy.GoAway(9, 0),
        spdy.WindowUpdate(1, 1000),
    ]
    wire = b"".join(out.encode(f) for f in frames)
    assert back.feed(wire) == frames


def test_control_and_data_frame_layout() -> None:
    codec = spdy.SpdyCodec()
    assert codec.encode(spdy.Ping(1)) == bytes.fromhex("80030006 00000004 00000001")
    assert codec.encode(spdy.DataFrame(3, b"hi", spdy.DATA_FLAG_FIN)) == bytes.fromhex("00000003 01000002") + b"hi"
    assert codec.encode(spdy.RstStream(1, 5)) == bytes.fromhex("80030003 00000008 00000001 00000005")


def test_header_blocks_are_zlib_with_the_dictionary_and_one_context_per_direction() -> None:
    codec = spdy.SpdyCodec()
    first = codec.encode(spdy.SynReply(1, {"streamtype": ["data"]}))
    second = codec.encode(spdy.SynReply(3, {"streamtype": ["data"]}))
    block1, block2 = first[12:], second[12:]
    # zlib header with FDICT set, then the dictionary's id
    assert block1[0] & 0x0F == 8 and block1[1] & 0x20
    assert struct.unpack(">I", block1[2:6])[0] == 0xE3C6A7C2
    # the second block continues the same stream: no new zlib header, and shorter
    assert len(block2) < len(block1)
    # what a Go peer does: one inflater primed with the dictionary, fed block after block
    inflater = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    raw1, raw2 = inflater.decompress(block1), inflater.decompress(block2)
    assert raw1 == raw2 == struct.pack(">I", 1) + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 4) + b"data"


def test_frames_split_across_messages_and_batched_together() -> None:
    out, back = spdy.SpdyCodec(), spdy.SpdyCodec()
    frames = [spdy.SynStream(i, {"port": [str(i)]}) for i in (1, 3, 5)] + [spdy.DataFrame(1, b"x" * 5000)]
    wire = b"".join(out.encode(f) for f in frames)
    received: list[spdy.Frame] = []
    for index in range(0, len(wire), 7):  # 7-byte websocket messages
        received.extend(back.feed(wire[index:index + 7]))
    assert received == frames
    assert back.feed(b"") == []


def test_foreign_version_and_garbage_are_errors() -> None:
    with pytest.raises(spdy.SpdyError):
        spdy.SpdyCodec().feed(struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1")
    with pytest.raises(spdy.SpdyError):
        spdy.SpdyCodec().feed(struct.pack(">HHI", 0x8003, 2, 8) + b"\0\0\0\1" + b"junk")


def test_unknown_control_frames_are_skipped_not_fatal() -> None:
    wire = struct.pack(">HHI", 0x8003, 10, 2) + b"ab" + bytes.fromhex("80030006 00000004 00000009")
    frames = spdy.SpdyCodec().feed(wire)
    assert frames == [spdy.UnknownControl(10, 0, b"ab"), spdy.Ping(9)]


# ---------------------------------------------------------------------- websocket channels


def test_channel_messages() -> None:
    assert channels.encode(channels.STDOUT, b"hi") == b"\x01hi"
    assert channels.decode(b"\xff\x00") == channels.ChannelMessage(channels.CLOSE, b"\x00")
    assert channels.decode(b"") is None
    assert channels.parse_resize(b'{"Width":100,"Height":30}\n{"Width":80,"Height":24}\n') == [(100, 30), (80, 24)]
    assert channels.parse_resize(b"not json") == []


def test_status_bodies_match_what_kubectl_reads() -> None:
    assert channels.status_success() == {"metadata": {}, "status": "Success"}
    failure = channels.status_exit_code(3, ["sh", "-c", "exit 3"])
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert "exit code 3" in failure["message"]
    assert json.loads(json.dumps(channels.status_failure("boom")))["message"] == "boom"


# ---------------------------------------------------------------------- port-forward session


class _Client:
    """The kubectl side of a port-forward session, wired to the session in memory."""

    def __init__(self, connect: object) -> None:
        self.codec = spdy.SpdyCodec()
        self.inbox: asyncio.Queue[spdy.Frame] = asyncio.Queue()
        self.server_codec_reader = spdy.SpdyCodec()

        async def send(data: bytes) -> None:
            for frame in self.server_codec_reader.feed(data):
                self.inbox.put_nowait(frame)

        self.session = PortForwardSession(send, connect, "default/web")  # type: ignore[arg-type]

    async def send(self, *frames: spdy.Frame) -> None:
        wire = b"".join(self.codec.encode(f) for f in frames)
        # deliver in awkward pieces, as the websocket tunnel does
        for index in range(0, len(wire), 5):
            await self.session.feed(wire[index:index + 5])

    async def next(self) -> spdy.Frame:
        return await asyncio.wait_for(self.inbox.get(), 5)

    async def open_pair(self, request_id: str, port: int, first_id: int) -> None:
        await self.send(spdy.SynStream(first_id, {"streamtype": ["error"], "port": [str(port)],
                                                  "requestid": [request_id]}),
                        spdy.DataFrame(first_id, b"", spdy.DATA_FLAG_FIN),
                        spdy.SynStream(first_id + 2, {"streamtype": ["data"], "port": [str(port)],
                                                      "requestid": [request_id]}))
        assert await self.next() == spdy.SynReply(first_id)
        assert await self.next() == spdy.SynReply(first_id + 2)


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client half-closes
        writer.write(b"echo:" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_port_forward_pipes_both_ways_and_fins_both_streams() -> None:
    server, port = await _echo_server()
    dialed: list[int] = []

    async def connect(target_port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        dialed.append(target_port)
        return await asyncio.open_connection("127.0.0.1", port)

    client = _Client(connect)
    async with server:
        await client.open_pair("0", 80, 1)
        await client.send(spdy.DataFrame(3, b"hello "), spdy.DataFrame(3, b"world", spdy.DATA_FLAG_FIN))
        received = b""
        frame = await client.next()
        while isinstance(frame, spdy.DataFrame) and frame.stream_id == 3 and not frame.fin:
            received += frame.data
            frame = await client.next()
        assert received == b"echo:hello world"
        assert frame == spdy.DataFrame(3, b"", spdy.DATA_FLAG_FIN)
        assert await client.next() == spdy.DataFrame(1, b"", spdy.DATA_FLAG_FIN)
        assert dialed == [80]
        await client.send(spdy.Ping(11))
        assert await client.next() == spdy.Ping(11)
        await client.session.close()


async def test_port_forward_reports_a_refused_port_on_the_error_stream() -> None:
    async def connect(target_port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise ConnectionRefusedError(111, "Connection refused")

    client = _Client(connect)
    await client.open_pair("7", 8080, 5)
    error = await client.next()
    assert isinstance(error, spdy.DataFrame) and error.stream_id == 5
    assert error.data.decode().startswith("error forwarding port 8080 to pod default/web:")
    assert [await client.next(), await client.next()] == [
        spdy.DataFrame(7, b"", spdy.DATA_FLAG_FIN), spdy.DataFrame(5, b"", spdy.DATA_FLAG_FIN)]


async def test_port_forward_rejects_bad_streams_and_honours_reset() -> None:
    hold = asyncio.Event()

    async def connect(target_port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await hold.wait()
        raise AssertionError("unreachable")

    client = _Client(connect)
    await client.send(spdy.SynStream(1, {"streamtype": ["data"]}))  # no port
    assert await client.next() == spdy.RstStream(1, spdy.RST_CANCEL)
    await client.open_pair("1", 80, 3)
    await client.send(spdy.RstStream(5, spdy.RST_CANCEL))
    await asyncio.sleep(0.05)
    assert client.inbox.empty()  # nothing written back to a reset stream
    await client.send(spdy.GoAway(5))
    assert client.session.closed.is_set()


def test_websocket_port_forward_ports_from_the_query() -> None:
    assert parse_ports(["80"]) == [80]
    assert parse_ports(["80,8080", "9090"]) == [80, 8080, 9090]
    for bad, message in (([], "is required"), ([""], "cannot be empty"),
                         (["80,http"], 'parsing "http": invalid syntax'), (["0"], 'port "0" must be > 0'),
                         (["70000"], "value out of range")):
        with pytest.raises(ValueError, match=message):
            parse_ports(bad)
