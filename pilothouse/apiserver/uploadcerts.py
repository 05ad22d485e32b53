"""kubeadm's ``--upload-certs``: the cluster-wide PKI files, encrypted with a certificate key, in the
Secret ``kube-system/kubeadm-certs``, so that another API server over the same datastore joins with
the key alone (``pilothouse server --certificate-key KEY``) instead of a copy of the files
(``--cluster-pki-from``).

As kubeadm (``phases/copycerts``): the key is 32 random bytes written as 64 hex digits, each file is
AES-256-GCM sealed with a random 12-byte nonce in front (``cryptoutil.EncryptBytes``), and the Secret's
data keys are the file names. The files are ``pkidir.SHARED_FILES`` (the CA and the service-account
key; pilothouse makes no front-proxy or etcd CA). kubeadm also makes the Secret expire with a
two-hour bootstrap token; here it stays until deleted (``kubectl -n kube-system delete secret
kubeadm-certs``), and uploading again replaces it.

The joining server reads the Secret straight from the datastore before it makes its PKI (it has no
credentials for the API yet, and shares the store anyway), through the same encryption-at-rest
wrapper as the API, so an encrypted Secret reads back.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilothouse.apiserver.encryption import wrap_store
from pilothouse.apiserver.pkidir import SHARED_FILES, adopt_shared
from pilothouse.apiserver.registry import WriteContext
from pilothouse.machinery.errors import StatusError
from pilothouse.store import open_store

__all__ = ["SECRET_KEY", "CertificateKeyError", "decrypt", "download", "encrypt", "new_key", "upload"]

log = logging.getLogger("pilothouse.apiserver.pki")

NAMESPACE, NAME = "kube-system", "kubeadm-certs"
SECRET_KEY = f"/registry/core/secrets/{NAMESPACE}/{NAME}"  # ResourceType.key of a core Secret
_NONCE = 12


class CertificateKeyError(OSError):
    """The key is malformed or wrong, or there is nothing to decrypt: the server does not start."""


def new_key() -> str:
    """``kubeadm certs certificate-key``."""
    return os.urandom(32).hex()


def _key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CertificateKeyError("error decoding certificate key: the key must be 64 hexadecimal digits (32 bytes)")
    return raw


def encrypt(data: bytes, key: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(_key(key)).encrypt(nonce, data, None)


def decrypt(sealed: bytes, key: str) -> bytes:
    try:
        return AESGCM(_key(key)).decrypt(sealed[:_NONCE], sealed[_NONCE:], None)
    except InvalidTag:
        raise CertificateKeyError("error decoding secret data with provided key: cipher: message authentication "
                                  "failed") from None


async def upload(storage: Callable[[str, str, str], Any], pki_dir: Path, key: str) -> None:
    """Write (or replace) the Secret with this server's shared files, sealed with ``key``."""
    data = {name: base64.b64encode(encrypt((pki_dir / name).read_bytes(), key)).decode() for name in SHARED_FILES}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": data}
    secrets = storage("", "v1", "secrets")
    context = WriteContext(field_manager="pilothouse-apiserver")
    try:
        await secrets.create(NAMESPACE, secret, context)
    except StatusError as error:
        if error.reason != "AlreadyExists":
            raise
        await secrets.update(NAMESPACE, NAME, secret, context)
    log.info("[upload-certs] stored the cluster's certificates in Secret %s/%s", NAMESPACE, NAME)


async def download(endpoint: str, store_options: dict[str, Any], encryption_config: str, key: str,
                   pki_dir: Path) -> None:
    """The uploaded files into ``pki_dir`` (as ``--cluster-pki-from`` copies them: refused if it
    already holds another cluster's)."""
    store = wrap_store(open_store(endpoint, **store_options), encryption_config, False)
    await store.start()
    try:
        found = await store.get(SECRET_KEY)
    finally:
        await store.close()
    if found is None:
        raise CertificateKeyError(f"--certificate-key: Secret {NAMESPACE}/{NAME} not found in the datastore "
                                  "(run the first server with --upload-certs)")
    data = orjson.loads(found.value).get("data") or {}
    pki_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki_dir, 0o700)
    with tempfile.TemporaryDirectory(dir=pki_dir) as staging:
        for name in SHARED_FILES:
            if name not in data:
                raise CertificateKeyError(f"--certificate-key: Secret {NAMESPACE}/{NAME} lacks {name}")
            target = Path(staging) / name
            target.write_bytes(decrypt(base64.b64decode(data[name]), key))
            os.chmod(target, 0o600)
        adopt_shared(Path(staging), pki_dir)
    log.info("[download-certs] the cluster's certificates from Secret %s/%s", NAMESPACE, NAME)
