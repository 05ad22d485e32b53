"""An asyncio transport over a non-blocking ``ssl.SSLSocket``: OpenSSL reads and writes the socket itself.

A candidate measured by bench/tls_transport.py (variant ``socket-tls``), not used by pilothouse: it
saved 1-4 µs a request against uvloop's TLS, short of what would justify carrying a transport of
our own (docs/decisions/tls.md, "Sixth pass, follow-up"). Kept so that the figure can be
reproduced; it handles what the benchmark needs (handshake, reads, writes with backpressure,
close) and has not been put through pilothouse's TLS tests.

Why: uvloop's (and asyncio's) TLS runs OpenSSL over memory BIOs: every record is read from the
socket into a Python buffer, written into the incoming BIO, decrypted, and on the way out encrypted
into the outgoing BIO, read out into a new ``bytes`` and handed to the TCP transport, through
Python-level glue at each step (docs/decisions/tls.md, sixth pass). Here the socket is the BIO:
one ``SSL_read`` or ``SSL_write`` per record, driven by ``loop.add_reader``/``add_writer``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

__all__ = ["SocketTLSTransport", "serve_tls"]

log = logging.getLogger(__name__)

#: Plaintext asked of OpenSSL per read: one TLS record's worth (a record carries at most 16 KiB).
READ_SIZE = 16384
#: Records read in one readiness callback before yielding to the loop.
MAX_READS = 16
HANDSHAKE_TIMEOUT = 60.0


class SocketTLSTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop, tls: ssl.SSLSocket,
                 protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        super().__init__()
        self._loop = loop
        self._tls = tls
        self._fd = tls.fileno()
        # The C object's methods: ssl.SSLSocket's wrappers add a Python frame per call.
        native = tls._sslobj  # type: ignore[attr-defined]
        self._native = native
        self._read = native.read
        self._write = native.write
        self._factory = protocol_factory
        self._protocol: Any = None
        self._buffer: list[bytes] = []
        self._buffer_size = 0
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._writing_paused = False
        self._reading = False
        self._closing = False
        self._closed = False
        self._extra: dict[str, Any] = {"socket": tls, "ssl_object": tls, "sslcontext": tls.context}
        try:
            self._extra["peername"] = tls.getpeername()
        except OSError:
            self._extra["peername"] = None
        self._extra["sockname"] = tls.getsockname()
        self._handshake_timer: asyncio.TimerHandle | None = loop.call_later(HANDSHAKE_TIMEOUT, self._abort_handshake)
        self._handshake()

    # -------------------------------------------------------------- handshake

    def _handshake(self) -> None:
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        try:
            self._native.do_handshake()
        except ssl.SSLWantReadError:
            self._loop.add_reader(self._fd, self._handshake)
            return
        except ssl.SSLWantWriteError:
            self._loop.add_writer(self._fd, self._handshake)
            return
        except (OSError, ssl.SSLError) as exc:
            # As uvloop's SSLProtocol: a failed handshake closes the connection; the application
            # never sees it.
            log.debug("TLS handshake from %s failed: %s", self._extra["peername"], exc)
            self._handshake_done()
            self._close_socket()
            return
        self._handshake_done()
        self._extra["peercert"] = self._tls.getpeercert()
        self._extra["cipher"] = self._tls.cipher()
        self._extra["compression"] = self._tls.compression()
        self._protocol = self._factory()
        self._protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    def _handshake_done(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _abort_handshake(self) -> None:
        self._handshake_timer = None
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._close_socket()

    # -------------------------------------------------------------- reading

    def _on_readable(self) -> None:
        chunks: list[bytes] = []
        eof = False
        try:
            for _ in range(MAX_READS):
                chunk = self._read(READ_SIZE)
                if not chunk:  # close_notify
                    eof = True
                    break
                chunks.append(chunk)
                # A record shorter than READ_SIZE with nothing left decrypted is, for requests, the
                # usual end of what arrived: the next readiness callback (the loop polls level-
                # triggered) reads on if more did, without an SSLWantReadError raised here.
                if len(chunk) < READ_SIZE and not self._native.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:
            # OpenSSL must send (a TLS 1.3 key update answer) before reading on.
            self._loop.remove_reader(self._fd)
            self._loop.add_writer(self._fd, self._retry_read)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            eof = True
        except (OSError, ssl.SSLError) as exc:
            self._deliver(chunks)
            self._fatal(exc)
            return
        self._deliver(chunks)
        if eof and not self._closed:
            # As uvloop's SSLProtocol: end of stream (close_notify or a bare TCP FIN) ends the
            # connection; the application's reader sees its end, then connection_lost.
            self._loop.remove_reader(self._fd)
            self._reading = False
            self._protocol.eof_received()
            self.close()

    def _deliver(self, chunks: list[bytes]) -> None:
        if chunks and not self._closed:
            self._protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _retry_read(self) -> None:
        self._loop.remove_writer(self._fd)
        if self._buffer:
            self._loop.add_writer(self._fd, self._on_writable)
        if self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._on_readable()

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading and not self._closed:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)
            # Records already decrypted do not make the socket readable again.
            if self._native.pending():
                self._loop.call_soon(self._on_readable_if_reading)

    def _on_readable_if_reading(self) -> None:
        if self._reading and not self._closed:
            self._on_readable()

    # -------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._closed:
            return
        if not data:
            return
        if self._buffer:
            self._buffer.append(bytes(data))
            self._buffer_size += len(data)
            self._maybe_pause()
            return
        try:
            self._write(data)
            return
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            # OpenSSL keeps the records it already sent; it is given the same data again when the
            # socket is writable (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a copy will do).
            self._buffer.append(bytes(data))
            self._buffer_size += len(data)
            self._loop.add_writer(self._fd, self._on_writable)
            self._maybe_pause()
        except (OSError, ssl.SSLError) as exc:
            self._fatal(exc)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _on_writable(self) -> None:
        try:
            while self._buffer:
                self._write(self._buffer[0])
                self._buffer_size -= len(self._buffer.pop(0))
                if len(self._buffer) > 1:
                    # Not yet handed to OpenSSL: one write, fewer records.
                    self._buffer = [b"".join(self._buffer)]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except (OSError, ssl.SSLError) as exc:
            self._fatal(exc)
            return
        self._loop.remove_writer(self._fd)
        if self._writing_paused and self._buffer_size <= self._low_water:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._finish_close()

    def _maybe_pause(self) -> None:
        if not self._writing_paused and self._buffer_size > self._high_water:
            self._writing_paused = True
            self._protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS does not support half-closed connections")

    # -------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        """Graceful: what is buffered is sent, then close_notify, then the socket closes."""
        if self._closing or self._closed:
            return
        self._closing = True
        self.pause_reading()
        if not self._buffer:
            self._finish_close()

    def _finish_close(self) -> None:
        try:
            # Sends close_notify; not waiting for the peer's (as uvloop does not, past its timeout).
            self._native.shutdown()
        except (OSError, ssl.SSLError, ValueError):
            pass
        self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    def _fatal(self, exc: BaseException) -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            log.debug("TLS connection from %s lost: %s", self._extra["peername"], exc)
        elif not isinstance(exc, ssl.SSLError):
            log.warning("TLS connection from %s failed", self._extra["peername"], exc_info=exc)
        self._lose(exc)

    def _lose(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        self._reading = False
        self._close_socket()
        self._buffer.clear()
        self._buffer_size = 0
        if self._protocol is not None:
            self._loop.call_soon(self._protocol.connection_lost, exc)

    def _close_socket(self) -> None:
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._tls.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol


class TLSServer:
    """Accepts on ``sock`` and wraps every connection in a :class:`SocketTLSTransport`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, context: ssl.SSLContext,
                 protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._loop, self._sock, self._context, self._factory = loop, sock, context, protocol_factory
        self.sockets = [sock]
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(128):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed: %s", exc)
                    return
                raise
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                tls = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            except OSError:
                conn.close()
                continue
            SocketTLSTransport(self._loop, tls, self._factory)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        return None


async def serve_tls(protocol_factory: Callable[[], asyncio.BaseProtocol], context: ssl.SSLContext,
                    host: str, port: int, backlog: int = 1024) -> TLSServer:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return TLSServer(asyncio.get_running_loop(), sock, context, protocol_factory)
