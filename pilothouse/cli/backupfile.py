"""The backup archive: one tar file holding a manifest, the store's snapshot and the data dir's keys.

Like k3s' etcd-snapshot (the datastore snapshot plus what the server needs to use it), one file:

* ``manifest.json`` first, so ``tar -xOf FILE manifest.json`` tells what a file holds without
  unpacking the rest: the archive format, the data dir format, the store (``sqlite`` or ``etcd``),
  the revision, when, by which release, and a reference to the encryption configuration;
* ``state.db`` (SQLite, one self-contained file) or ``etcd-snapshot.db`` (what ``etcdctl snapshot
  save`` writes);
* ``pki/`` (the cluster CA, so clients' kubeconfigs keep working; the service-account signing key
  ``pki/sa.key``, so pods' tokens stay valid) and ``format-version``.

The encryption configuration is referenced (path and sha256), not copied: it holds the keys that
encrypt the Secrets in the snapshot, and an archive that carried both would put them in the clear
together. Restore checks that the referenced file is there with the same contents.

Reading is defensive: only the names above are extracted, through tarfile's ``data`` filter (no
absolute paths, no ``..``, no links out of the target), and an archive of a newer format is refused.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ARCHIVE_FORMAT", "MANIFEST", "STORE_FILES", "Manifest", "file_sha256", "read_manifest",
           "unpack", "write_archive"]

#: The version of this archive layout (not of the data dir, which the manifest records separately).
ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
#: The store's snapshot in the archive, by store kind.
STORE_FILES = {"sqlite": "state.db", "etcd": "etcd-snapshot.db"}
#: What besides the store a restore needs from the data dir.
DATA_DIR_ENTRIES = ("pki", "format-version")


@dataclass
class Manifest:
    store: str
    revision: int
    data_dir_format: int
    created: str = ""
    release: str = ""
    archive_format: int = ARCHIVE_FORMAT
    #: {"path": ..., "sha256": ...} of --encryption-provider-config, or None.
    encryption_provider_config: dict[str, str] | None = None

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        doc: dict[str, Any] = json.loads(raw)
        return cls(store=doc["store"], revision=int(doc["revision"]), data_dir_format=int(doc["dataDirFormat"]),
                   created=doc.get("created", ""), release=doc.get("release", ""),
                   archive_format=int(doc["archiveFormat"]),
                   encryption_provider_config=doc.get("encryptionProviderConfig"))

    def to_json(self) -> bytes:
        fields = asdict(self)
        camel = {"store": "store", "revision": "revision", "data_dir_format": "dataDirFormat",
                 "created": "created", "release": "release", "archive_format": "archiveFormat",
                 "encryption_provider_config": "encryptionProviderConfig"}
        return json.dumps({"kind": "PilothouseBackup", **{camel[k]: v for k, v in fields.items()}},
                          indent=2).encode() + b"\n"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def write_archive(output: Path, manifest: Manifest, store_snapshot: Path, data_dir: Path) -> None:
    """Write the archive to ``output`` atomically (a temporary name, fsync, rename)."""
    tmp = output.with_name(output.name + ".partial")
    # gzip at a low level: the store is JSON and shrinks ~5x even so, at a fraction of level 9's time.
    with tarfile.open(tmp, "w:gz", compresslevel=3) as tar:
        info = tarfile.TarInfo(MANIFEST)
        body = manifest.to_json()
        info.size, info.mtime, info.mode = len(body), int(datetime.datetime.now().timestamp()), 0o600
        tar.addfile(info, io.BytesIO(body))
        tar.add(store_snapshot, arcname=STORE_FILES[manifest.store])
        for name in DATA_DIR_ENTRIES:
            if (data_dir / name).exists():
                tar.add(data_dir / name, arcname=name)
    with open(tmp, "rb") as written:
        os.fsync(written.fileno())
    os.chmod(tmp, 0o600)  # it holds the CA's and the signing key's private keys
    tmp.replace(output)


def read_manifest(archive: Path) -> Manifest:
    """The manifest of ``archive``; ValueError when it is not a backup this release can read."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest = Manifest.from_json(member.read())
    except (tarfile.TarError, KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{archive} is not a pilothouse backup: {error}") from None
    if manifest.archive_format > ARCHIVE_FORMAT:
        raise ValueError(f"{archive} is a backup in archive format {manifest.archive_format}, newer than this "
                         f"pilothouse reads ({ARCHIVE_FORMAT}): restore it with the release that made it "
                         f"({manifest.release or 'unknown'}) or a newer one")
    if manifest.store not in STORE_FILES:
        raise ValueError(f"{archive} holds a store of unknown kind {manifest.store!r}")
    return manifest


def unpack(archive: Path, manifest: Manifest, into: Path) -> Path:
    """Extract the store snapshot and the data dir entries into ``into``; the snapshot's path."""
    wanted = (STORE_FILES[manifest.store], *DATA_DIR_ENTRIES)
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers()
                   if any(m.name == name or m.name.startswith(name + "/") for name in wanted)]
        tar.extractall(into, members=members, filter="data")
    return into / STORE_FILES[manifest.store]
