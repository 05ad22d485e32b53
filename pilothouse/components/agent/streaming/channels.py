"""The websocket channel protocol of ``kubectl exec``/``attach`` (``v5.channel.k8s.io``, also v4).

Every websocket message is binary; its first byte names a channel, the rest is that channel's
payload: 0 stdin (client → server), 1 stdout, 2 stderr, 3 error (a ``metav1.Status`` JSON, written
once when the command ends), 4 resize (``{"Width":W,"Height":H}``), and in v5 only 255 "close": the
client half-closes the channel named by the one payload byte (after piped stdin ends, kubectl sends
``[255, 0]``). v4 has no close signal. No I/O here: encoding, decoding and the Status bodies, shaped
as kubelet's ``remotecommand`` server writes them (kubectl turns ``NonZeroExitCode`` into its own exit
code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pilothouse.machinery.errors import status_object

__all__ = [
    "CLOSE",
    "ERROR",
    "PROTOCOL_V4",
    "PROTOCOL_V5",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SUPPORTED_PROTOCOLS",
    "ChannelMessage",
    "decode",
    "encode",
    "parse_resize",
    "status_exit_code",
    "status_failure",
    "status_success",
]

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
#: In the server's order of preference (aiohttp picks the client's first that is listed here).
SUPPORTED_PROTOCOLS = (PROTOCOL_V5, PROTOCOL_V4)

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255


@dataclass(frozen=True)
class ChannelMessage:
    channel: int
    data: bytes


def encode(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def decode(message: bytes) -> ChannelMessage | None:
    """A received message's channel and payload; None for an empty message (carries nothing)."""
    if not message:
        return None
    return ChannelMessage(message[0], bytes(message[1:]))


def parse_resize(payload: bytes) -> list[tuple[int, int]]:
    """(width, height) pairs from a resize payload: JSON documents, each followed by a newline."""
    sizes: list[tuple[int, int]] = []
    decoder = json.JSONDecoder()
    text = payload.decode("utf-8", "replace")
    index = 0
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            break
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            break
        if isinstance(value, dict):
            width, height = value.get("Width"), value.get("Height")
            if isinstance(width, int) and isinstance(height, int) and width >= 0 and height >= 0:
                sizes.append((width, height))
    return sizes


def status_success() -> dict[str, Any]:
    return status_object("Success", type_meta=False)


def status_exit_code(code: int, command: list[str] | None = None) -> dict[str, Any]:
    """What kubelet writes when the command exits non-zero; kubectl then exits with ``code``."""
    what = f"error executing command [{' '.join(command)}], exit code {code}" if command else f"exit code {code}"
    return status_object("Failure", f"command terminated with non-zero exit code: {what}", "NonZeroExitCode",
                         {"causes": [{"reason": "ExitCode", "message": str(code)}]}, type_meta=False)


def status_failure(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    """Any other failure: kubectl prints ``message`` as the command's error."""
    return status_object("Failure", message, reason, code=code, type_meta=False)
