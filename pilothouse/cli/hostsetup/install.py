"""``pilothouse install`` / ``uninstall``: the host plan written and enabled on this machine.

What k3s's install script does: units that run this very pilothouse (the venv it was started from),
helper scripts, credentials, then ``systemctl enable --now``. Every file written is listed in
``<config-dir>/installed-files`` so ``uninstall`` removes exactly those (and pilothouse's directories
when they are left empty; the data dir, the cluster's state, stays as after k3s-uninstall's
``--keep-data``). With ``root`` (systemd's
``--root`` convention) files go under that directory and ``systemctl --root`` only enables them,
with no running systemd involved: how the tests install without touching the machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pilothouse.cli.hostsetup.plan import File, Layout, Settings, plan_host

__all__ = ["InstallError", "install", "local_layout", "uninstall"]

Runner = Callable[[Sequence[str]], None]


class InstallError(RuntimeError):
    """A file could not be written or systemctl failed; the message says which."""


def local_layout() -> Layout:
    """Units run the pilothouse console script next to this interpreter (the venv it came from)."""
    executable = Path(sys.executable).parent / "pilothouse"
    if not os.access(executable, os.X_OK):
        raise InstallError(f"{executable} is not an executable: install runs from pilothouse's venv "
                           "(pip install pilothouse, then .venv/bin/pilothouse install)")
    return Layout(pilothouse=str(executable))


def _systemctl(arguments: Sequence[str]) -> None:
    result = subprocess.run(["systemctl", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemctl {' '.join(arguments)}: {result.stderr.strip() or result.returncode}")


def _under(root: Path | None, path: str) -> Path:
    return Path(path) if root is None else root / path.lstrip("/")


def _write(target: Path, file: File) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    # created with its final mode: a token or a registry password is never readable by others
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file.mode)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(file.content)
    os.chmod(temporary, file.mode)
    os.replace(temporary, target)


def _manifest(layout: Layout, root: Path | None) -> Path:
    return _under(root, f"{layout.config_dir}/installed-files")


def _installed(layout: Layout, root: Path | None) -> list[str]:
    """The paths the last install wrote (none when nothing is installed)."""
    with contextlib.suppress(FileNotFoundError):
        return [line for line in _manifest(layout, root).read_text().splitlines() if line]
    return []


def _remove(paths: Sequence[str], layout: Layout, root: Path | None, systemctl: Runner) -> None:
    """Stop and disable the units among ``paths``, then delete every one of them."""
    units = [Path(p).name for p in paths if Path(p).parent == Path(layout.unit_dir)]
    if units:
        systemctl([f"--root={root}", "disable", *units] if root is not None else ["disable", "--now", *units])
    for path in paths:
        _under(root, path).unlink(missing_ok=True)


def install(settings: Settings, layout: Layout, *, root: Path | None = None, start: bool = True,
            systemctl: Runner = _systemctl) -> list[str]:
    """Write the host plan and enable it (and (re)start it, on this machine); returns the paths written.

    Installing again (an upgrade, another role) replaces the previous install: its files that the
    new plan does not write are removed, its units disabled, and the running units restarted.
    """
    plan = plan_host(settings, layout)
    files = (*plan.files, *plan.unit_files(layout))
    written = {f.path for f in files}
    _remove([p for p in _installed(layout, root) if p not in written], layout, root, systemctl)
    for file in files:
        try:
            _write(_under(root, file.path), file)
        except OSError as error:
            raise InstallError(f"writing {file.path}: {error.strerror}") from error
    manifest = File(str(_manifest(layout, None)), "".join(f"{f.path}\n" for f in files), 0o600)
    _write(_manifest(layout, root), manifest)
    if root is not None:
        systemctl([f"--root={root}", "enable", *plan.enable])
    else:
        systemctl(["daemon-reload"])
        systemctl(["enable", *plan.enable])
        if start:  # restart: an upgrade's new units take effect (the agent's pods outlive it)
            systemctl(["restart", "--no-block", *plan.enable])
    return [f.path for f in files]


def uninstall(layout: Layout, *, root: Path | None = None, systemctl: Runner = _systemctl) -> list[str]:
    """Stop and disable the installed units and remove every file install wrote; returns the paths removed."""
    paths = _installed(layout, root)
    if not paths:
        raise InstallError(f"nothing to uninstall: {_manifest(layout, root)} is missing")
    _remove(paths, layout, root, systemctl)
    _manifest(layout, root).unlink()
    # pilothouse's own directories go when empty; the data dir (the cluster's state) stays
    owned = [layout.bin_dir, layout.config_dir]
    if Path(layout.bin_dir).parent.name == "pilothouse":  # /opt/pilothouse
        owned.append(str(Path(layout.bin_dir).parent))
    for directory in owned:
        with contextlib.suppress(OSError):  # not empty (someone else's file there) or already gone
            _under(root, directory).rmdir()
    if root is None:
        systemctl(["daemon-reload"])
    return paths
