"""A container image of pilothouse built from this machine's own interpreter, for a control plane run as
static pods (kubeadm's way; docs/decisions/host-setup.md).

No image can be pulled here, so one is made as the pause image is made from busybox-static: a root
filesystem tar holding the running interpreter (``sys.executable`` resolved, its standard library and
``libpython``), pilothouse and the installed distributions its requirements reach (read from their
``RECORD`` through importlib.metadata, so test-only packages of the venv stay out), and every shared
library ``ldd`` finds for the interpreter and the extension modules, each at its own path. The
machine's merged-``/usr`` links (``/lib -> usr/lib``...) are reproduced as they are, so the dynamic
loader is found where the binaries name it. Bind-mounting the host's interpreter instead was tried and
dropped: the loader is reached through link chains, and a venv's interpreter may live anywhere (pyenv).

The image runs ``<python> -m pilothouse ...`` with ``PYTHONPATH=/site`` (see :data:`SITE`); :data:`PYTHON`
names the interpreter whatever its path on the machine that built the image, for a manifest written
before the image exists (a real server host's, rendered by ``cloud-config`` elsewhere).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pilothouse

__all__ = ["PYTHON", "SITE", "interpreter", "write_image_tar"]

#: where the image keeps pilothouse and its distributions (the image's PYTHONPATH)
SITE = "/site"
#: a link to the interpreter in every image (a name no distribution's python uses)
PYTHON = "/usr/local/bin/pilothouse-python"
#: standard-library parts no pilothouse process imports
_STDLIB_SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
                "dist-packages", "__pycache__", "config-3.11-x86_64-linux-gnu"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_LDD_PATH = re.compile(r"(/\S+) \(0x")


def interpreter() -> str:
    """The interpreter's path inside the image: the same as on this machine."""
    return os.path.realpath(sys.executable)


def _canonical(path: Path) -> Path:
    """``path`` with its directories' links resolved (``/lib64/x`` -> ``/usr/lib64/x``), not its own."""
    return Path(os.path.realpath(path.parent)) / path.name


def _distributions() -> list[importlib.metadata.Distribution]:
    """pilothouse's runtime requirements and theirs, installed ones only (extras left out)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = ["pilothouse"]
    while todo:
        match = _NAME.match(todo.pop())
        if match is None:
            continue
        key = re.sub(r"[-_.]+", "-", match.group()).lower()
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(key)
        except importlib.metadata.PackageNotFoundError:  # a marker for another platform
            continue
        found[key] = dist
        todo += [req for req in dist.requires or [] if "extra ==" not in req]
    return list(found.values())


class _Tree:
    """What goes into the tar: image path -> host file, and links."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.links: dict[str, str] = {}

    def host_file(self, path: Path) -> None:
        """A file of this machine at its own (canonical) path, links followed and kept."""
        path = _canonical(path)
        name = str(path)
        if name in self.files or name in self.links:
            return
        if path.is_symlink():
            target = os.readlink(path)
            self.links[name] = target
            self.host_file(path.parent / target)
        elif path.is_file():
            self.files[name] = path

    def host_tree(self, directory: Path) -> None:
        for root, dirs, names in os.walk(directory):
            dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP]
            for name in names:
                if not name.endswith((".pyc", ".pyo")):
                    self.host_file(Path(root) / name)

    def libraries(self) -> None:
        """Every shared library the interpreter and the extension modules load."""
        objects = [p for p in self.files.values() if p.suffix == ".so" or ".so." in p.name or os.access(p, os.X_OK)]
        wanted: set[str] = set()
        for chunk in range(0, len(objects), 200):
            out = subprocess.run(["ldd", *map(str, objects[chunk:chunk + 200])], capture_output=True, text=True,
                                 check=False).stdout
            wanted.update(_LDD_PATH.findall(out))
        for library in sorted(wanted):
            self.host_file(Path(library))


def write_image_tar(destination: Path) -> Path:
    """Write the image's root filesystem as a tar (for ``podman import`` or Docker's ``fromSrc``)."""
    tree = _Tree()
    tree.host_file(Path(interpreter()))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tree.host_tree(stdlib)
    for library in Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent").glob("libpython*.so*"):
        tree.host_file(library)
    site: dict[str, Path] = {}
    for dist in _distributions():
        for record in dist.files or ():
            path = Path(str(dist.locate_file(record)))
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                parts = Path(str(record)).parts
                if parts and parts[0] != "..":  # console scripts and the like live outside site-packages
                    site[str(Path(SITE, *parts))] = path
    package = Path(pilothouse.__file__).parent  # an editable install's RECORD does not list the sources
    for path in package.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            site[str(Path(SITE, "pilothouse", path.relative_to(package)))] = path
    tree.files.update(site)
    tree.libraries()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, "w") as tar:
        for top in sorted(Path("/").iterdir()):  # the merged-/usr links, as on this machine
            if top.is_symlink():
                _link(tar, top.name, os.readlink(top))
        for directory in ("tmp", "proc", "dev", "sys", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for name, target in sorted(tree.links.items()):
            _link(tar, name.lstrip("/"), target)
        _link(tar, PYTHON.lstrip("/"), interpreter())
        for name, path in sorted(tree.files.items()):
            tar.add(path, arcname=name.lstrip("/"), recursive=False)
    return destination


def _link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)
