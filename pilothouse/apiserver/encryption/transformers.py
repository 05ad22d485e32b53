"""Value transformers: bytes on their way to and from the store (``k8s.io/apiserver/pkg/storage/value``).

The stored layout is Kubernetes' own, byte for byte, so an operator recognises it and the data could
move between the two: ``k8s:enc:<provider>:v1:<key name>:`` then

* aescbc: a random 16-byte IV, then AES-CBC with PKCS#7 padding;
* aesgcm: a random 12-byte nonce, then AES-GCM ciphertext and tag, the store key as associated data
  (so a value copied under another key does not decrypt);
* secretbox: a random 24-byte nonce, then NaCl's secretbox (Poly1305 tag, XSalsa20 ciphertext).

AES comes from ``cryptography`` (OpenSSL underneath: constant-time, AES-NI); XSalsa20-Poly1305 is not in
``cryptography``, so secretbox comes from PyNaCl (libsodium's binding by the PyCA, the same people),
whose ``SecretBox`` is exactly Go's ``nacl/secretbox`` layout. Neither primitive is written by hand.

Reading picks the first transformer whose prefix matches; data read with any but the first (the
writing) one is *stale*, which tells the API server to rewrite it on update even when nothing changed
(that is how ``kubectl replace`` re-encrypts everything during key rotation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from pilothouse.apiserver.encryption.config import Key, Provider
from pilothouse.store.interface import StoreError

__all__ = [
    "ENCRYPTED_PREFIX",
    "IdentityTransformer",
    "PrefixTransformers",
    "TransformError",
    "Transformer",
    "provider_transformers",
]

ENCRYPTED_PREFIX = b"k8s:enc:"


class TransformError(StoreError):
    """Stored data cannot be turned back into an object (wrong key, tampered bytes, no provider)."""


class Transformer(Protocol):
    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """``data`` as stored; ``context`` is the store key (associated data where the cipher has it)."""

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """The plaintext and whether it is stale (not written by the current first transformer)."""


class IdentityTransformer:
    """Plain bytes, refusing to pass encrypted ones off as plaintext (``NewEncryptCheckTransformer``)."""

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        return data

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if data.startswith(ENCRYPTED_PREFIX):
            raise TransformError("identity transformer tried to read encrypted data")
        return data, False


class _AESCBC:
    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.AES(key)

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < 16:
            raise TransformError("the stored data was shorter than the required size")
        iv, body = data[:16], data[16:]
        if len(body) % 16:
            raise TransformError("the stored data is not a multiple of the block size")
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize(), False
        except ValueError:
            raise TransformError("invalid padding on input") from None


class _AESGCM:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, context)

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < 12:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self._aead.decrypt(data[:12], data[12:], context), False
        except InvalidTag:
            raise TransformError("cipher: message authentication failed") from None


class _Secretbox:
    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        return bytes(self._box.encrypt(data))  # nonce (random, 24 bytes) + tag + ciphertext

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < 24:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self._box.decrypt(data), False
        except CryptoError:
            raise TransformError("output array too small") from None  # Go's secretbox wording


@dataclass(frozen=True)
class _Prefixed:
    prefix: bytes
    transformer: Transformer


class PrefixTransformers:
    """Writes with the first transformer (its prefix first); reads with whichever prefix matches."""

    def __init__(self, transformers: Sequence[tuple[bytes, Transformer]], no_match: str) -> None:
        self._all = tuple(_Prefixed(prefix, transformer) for prefix, transformer in transformers)
        self._no_match = no_match

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        first = self._all[0]
        return first.prefix + first.transformer.to_storage(data, context)

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        for index, entry in enumerate(self._all):
            if not data.startswith(entry.prefix):
                continue
            try:
                plain, stale = entry.transformer.from_storage(data[len(entry.prefix):], context)
            except TransformError:
                # An identity provider (no prefix) placed first to migrate away from encryption
                # must let the encrypted values fall through to the providers after it.
                if not entry.prefix:
                    continue
                raise
            return plain, stale or index != 0
        raise TransformError(self._no_match)


_CIPHERS: dict[str, Callable[[bytes], Transformer]] = {"aescbc": _AESCBC, "aesgcm": _AESGCM, "secretbox": _Secretbox}


def provider_transformers(providers: Sequence[Provider]) -> PrefixTransformers:
    """One resource's chain: each provider in order under its ``k8s:enc:...`` prefix."""
    return PrefixTransformers([_provider(p) for p in providers], "no matching prefix found")


def _provider(provider: Provider) -> tuple[bytes, Transformer]:
    if provider.type == "identity":
        return b"", IdentityTransformer()
    make = _CIPHERS[provider.type]
    label = "Secretbox" if provider.type == "secretbox" else "AES"
    keys = PrefixTransformers([(_key_prefix(key), make(key.secret)) for key in provider.keys],
                              f"no matching key was found for the provided {label} transformer")
    return ENCRYPTED_PREFIX + provider.type.encode() + b":v1:", keys


def _key_prefix(key: Key) -> bytes:
    return key.name.encode() + b":"
