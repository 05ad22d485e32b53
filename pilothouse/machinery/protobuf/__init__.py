"""Kubernetes protobuf (``application/vnd.kubernetes.protobuf``) request-body decoding.

See :mod:`pilothouse.machinery.protobuf.decode`; the API server calls
:func:`decode_kubernetes_protobuf` for bodies with that Content-Type.
"""

from __future__ import annotations

from pilothouse.machinery.protobuf.decode import (
    PROTOBUF_CONTENT_TYPE,
    decode_kubernetes_protobuf,
    decode_message,
    message_type_for,
)

__all__ = ["PROTOBUF_CONTENT_TYPE", "decode_kubernetes_protobuf", "decode_message", "message_type_for"]
