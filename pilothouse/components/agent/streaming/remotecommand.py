"""``exec`` and ``attach`` over a websocket: the channel protocol between kubectl and an ExecSession.

Mirrors kubelet's websocket remotecommand server: after the upgrade, an empty message on the lowest
output channel tells the client the stream is up; stdout/stderr flow out as produced; stdin, resize
and (v5) close-stdin flow in; when the process ends the Status goes out on the error channel and the
websocket closes with 1000. A client that goes away ends an attach (detach) or an exec's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from pilothouse.components.agent.runtime.interface import ExecSession
from pilothouse.components.agent.streaming import channels

__all__ = ["StreamOptions", "serve_session"]

log = logging.getLogger("pilothouse.agent.streaming")


@dataclass(frozen=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    #: The exec'd argv (for the exit-code message); None for attach.
    command: list[str] | None = None


async def _pump_input(ws: web.WebSocketResponse, session: ExecSession, opts: StreamOptions,
                      stdin_closed: asyncio.Event) -> None:
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            data = message.data
        elif message.type == WSMsgType.TEXT:
            # The kubelet reads every frame as bytes (x/net/websocket's Message.Receive), and the
            # official Python client sends stdin as text frames: channel byte, then the data.
            data = message.data.encode()
        else:
            continue
        decoded = channels.decode(data)
        if decoded is None:
            continue
        if decoded.channel == channels.STDIN:
            if opts.stdin and not stdin_closed.is_set() and decoded.data:
                await session.write_stdin(decoded.data)
        elif decoded.channel == channels.RESIZE:
            for width, height in channels.parse_resize(decoded.data):
                await session.resize(width, height)
        elif (decoded.channel == channels.CLOSE and ws.ws_protocol == channels.PROTOCOL_V5
              and decoded.data[:1] == bytes((channels.STDIN,)) and not stdin_closed.is_set()):
            stdin_closed.set()
            await session.close_stdin()


async def serve_session(ws: web.WebSocketResponse, session: ExecSession, opts: StreamOptions) -> None:
    """Run the session over the prepared websocket until the process ends or the client leaves."""
    first = channels.STDOUT if opts.stdout else channels.STDERR if opts.stderr else channels.ERROR
    await ws.send_bytes(channels.encode(first))
    stdin_closed = asyncio.Event()
    input_task = asyncio.create_task(_pump_input(ws, session, opts, stdin_closed))
    status: dict[str, object] | None = None
    try:
        output = session.output()
        output_task: asyncio.Task[None] = asyncio.create_task(_pump_output(ws, output, opts))
        done, _ = await asyncio.wait({input_task, output_task}, return_when=asyncio.FIRST_COMPLETED)
        if output_task in done:
            output_task.result()
            code = await session.exit_code()
            if opts.command is not None and code:
                status = channels.status_exit_code(code, opts.command)
            else:
                status = channels.status_success()
        else:
            # The client closed the websocket: nobody is left to read the result.
            output_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await output_task
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as error:  # an engine failure mid-stream: report it the way kubelet does
        log.warning("exec/attach stream failed: %s", error)
        status = channels.status_failure(f"Internal error occurred: {error}")
    finally:
        input_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await input_task
        with contextlib.suppress(Exception):
            await session.close()
    if status is not None and not ws.closed:
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(channels.encode(channels.ERROR, json.dumps(status).encode()))
    await ws.close()


async def _pump_output(ws: web.WebSocketResponse, output: AsyncIterator[tuple[int, bytes]],
                       opts: StreamOptions) -> None:
    async for stream, data in output:
        if not data:
            continue
        channel = channels.STDOUT if opts.tty or stream != 2 else channels.STDERR
        if (channel == channels.STDOUT and not opts.stdout) or (channel == channels.STDERR and not opts.stderr):
            continue
        await ws.send_bytes(channels.encode(channel, data))
