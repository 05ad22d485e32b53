"""A host's root file system in a temp dir, for ``systemd-analyze verify --root``.

``verify`` loads units the way PID 1 would on that host: the unit search path, the units they name
(network-online.target, multi-user.target...) and every Exec*= program must be there. The root gets
this Debian machine's system units, what the cloud-config's ``write_files`` writes (scripts, units),
and the programs the units run: copies of this machine's (bash, curl, python3: what the target's
``packages`` bring) and, for what the install step creates on first boot (the venv's pilothouse and
python, the downloaded kubectl), the venv's real console script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["CONSOLE_SCRIPT", "exec_programs", "make_root", "provide_program", "verify_unit", "write_files"]

SYSTEM_UNITS = Path("/usr/lib/systemd/system")
CONSOLE_SCRIPT = Path(sys.executable).parent / "pilothouse"


def make_root(root: Path) -> Path:
    """Debian's merged-/usr layout with this machine's system units."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    for link in ("bin", "sbin", "lib"):  # relative links: verify resolves them inside the root
        (root / link).symlink_to(f"usr/{link}")
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def write_files(root: Path, entries: list[dict[str, Any]]) -> None:
    """What cloud-init's write_files module does, under ``root``."""
    for entry in entries:
        target = root / entry["path"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
        target.chmod(int(str(entry["permissions"]), 8))


_EXEC = re.compile(r"^Exec\w+=[-@:+!]*(\S+)", re.MULTILINE)


def exec_programs(unit_text: str) -> list[str]:
    return _EXEC.findall(unit_text)


def provide_program(root: Path, program: str, installed_by_setup: tuple[str, ...]) -> None:
    """Put ``program`` into the root unless write_files did: a stand-in for what the install step
    creates (prefixes in ``installed_by_setup``), else this machine's own copy (it must exist here)."""
    target = root / program.lstrip("/")
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if program.startswith(installed_by_setup):
        shutil.copy(CONSOLE_SCRIPT, target)
        return
    shutil.copy(Path(program).resolve(strict=True), target)


def verify_unit(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", name], capture_output=True,
                          text=True, timeout=60, check=False)
