"""The data directory's format version: refuse a newer one, migrate an older one, never misread.

``<data-dir>/format-version`` holds one integer. A data dir without it is format 0: one written
before the file existed (it holds ``pki/``, ``state.db`` or a kubeconfig) or a new, empty one. Each
server start goes through :func:`prepare_data_dir`, which

* refuses a data dir of a newer format than this release knows (its layout may mean something this
  code would misread: better to stop with a message naming both versions than to guess);
* runs the :data:`MIGRATIONS` from the dir's version up to :data:`FORMAT_VERSION`, one step at a time,
  writing the version after each step, so an interrupted migration resumes where it stopped;
* refuses a version file it cannot parse.

Backups record the version (``pilothouse backup``'s manifest) and restore puts it back, so a restored
dir goes through the same gate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "VERSION_FILE", "DataDirError", "prepare_data_dir", "read_version",
           "write_version"]

#: The format this release writes and reads.
FORMAT_VERSION = 1
VERSION_FILE = "format-version"


class DataDirError(OSError):
    """The data dir cannot be used by this release. An OSError so that every command reporting a
    server that cannot start (port taken, dir unwritable) reports this one the same way, in one line."""


def _adopt_unversioned(data_dir: Path) -> None:
    """0 → 1: the layout of format 1 is the one pilothouse used before it versioned its data dir
    (``pki/``, ``state.db``, kubeconfigs): nothing moves; the version file alone is the step."""


#: ``MIGRATIONS[n]`` takes a data dir from format n to n + 1.
MIGRATIONS: dict[int, Callable[[Path], None]] = {0: _adopt_unversioned}


def read_version(data_dir: Path) -> int:
    """The dir's format (0: no version file)."""
    path = data_dir / VERSION_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        version = int(text.strip())
    except ValueError:
        raise DataDirError(f"{path} holds {text.strip()[:40]!r}, not a format version: refusing to guess "
                           "what this data dir holds") from None
    if version < 1:
        raise DataDirError(f"{path} holds format version {version}; format versions start at 1")
    return version


def write_version(data_dir: Path, version: int = FORMAT_VERSION) -> None:
    """Write the version file atomically (a crash leaves the old version or the new one, never half)."""
    path = data_dir / VERSION_FILE
    tmp = path.with_name(VERSION_FILE + ".tmp")
    with open(tmp, "w") as out:
        out.write(f"{version}\n")
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def prepare_data_dir(data_dir: Path) -> int:
    """Create, check and migrate ``data_dir`` for this release before anything opens it; the version
    it had (0: unversioned or new)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    found = read_version(data_dir)
    if found > FORMAT_VERSION:
        raise DataDirError(
            f"data dir {data_dir} has format version {found}, newer than this pilothouse understands "
            f"(format {FORMAT_VERSION}): it was written by a newer release. Run that release (or a newer "
            f"one), or restore into a new data dir a backup made in format {FORMAT_VERSION} or older.")
    for version in range(found, FORMAT_VERSION):
        MIGRATIONS[version](data_dir)
        write_version(data_dir, version + 1)
    return found
