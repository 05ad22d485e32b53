"""``pilothouse install`` / ``uninstall`` into a ``--root`` (systemd's alternative root convention).

Nothing is enabled on the test machine: ``systemctl --root`` makes the enablement symlinks under the
temp root, and ``systemd-analyze verify --root`` checks the written units there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloudinit.hostroot import CONSOLE_SCRIPT, exec_programs, make_root, provide_program, verify_unit

pytestmark = pytest.mark.skipif(shutil.which("systemctl") is None or shutil.which("systemd-analyze") is None,
                                reason="systemd's tools are not installed")

UNITS = "etc/systemd/system"


def pilothouse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilothouse", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def machine_units() -> set[str]:
    return {p.name for p in Path("/etc/systemd/system").rglob("pilothouse*")}


def verify_all(root: Path) -> None:
    units = sorted(p.name for p in (root / UNITS).glob("pilothouse*") if p.is_file() and not p.is_symlink())
    for name in units:
        for program in exec_programs((root / UNITS / name).read_text()):
            provide_program(root, program, (str(CONSOLE_SCRIPT),))
    for name in units:
        result = verify_unit(root, name)
        assert (result.returncode, result.stderr) == (0, ""), f"{name}: {result.stderr}"


def test_install_agent_enables_units_under_root_and_uninstall_removes_them(tmp_path: Path) -> None:
    before = machine_units()
    root = make_root(tmp_path / "root")
    result = pilothouse("install", "--role", "agent", "--server", "https://10.1.0.1:6443", "--token",
                        "abcdef.0123456789abcdef", "--node-name", "azure-prd-02", "--node-labels", "host=azure",
                        "--address", "10.1.0.2", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert f"enabled pilothouse agent under {root}" in result.stdout
    agent = (root / UNITS / "pilothouse-agent.service").read_text()
    # the units run this very pilothouse: no venv to create, so no install unit
    assert f"ExecStart={CONSOLE_SCRIPT} agent" in agent
    assert not (root / UNITS / "pilothouse-install.service").exists()
    assert "ExecStartPre=/opt/pilothouse/bin/wait-healthz https://10.1.0.1:6443" in agent
    assert "--node-labels host=azure" in agent and "--address 10.1.0.2" in agent
    # enabled the systemd way: the target by multi-user.target, the agent by the target
    wants = root / UNITS / "multi-user.target.wants" / "pilothouse.target"
    assert os.readlink(wants) == "/etc/systemd/system/pilothouse.target"
    assert os.readlink(root / UNITS / "pilothouse.target.wants" / "pilothouse-agent.service") == \
        "/etc/systemd/system/pilothouse-agent.service"
    env = root / "etc/pilothouse/agent.env"
    assert env.read_text() == "PILOTHOUSE_TOKEN=abcdef.0123456789abcdef\n" and env.stat().st_mode & 0o777 == 0o600
    assert os.access(root / "opt/pilothouse/bin/wupiao", os.X_OK)
    verify_all(root)
    assert machine_units() == before  # the test machine's systemd saw nothing

    result = pilothouse("uninstall", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert "removed /etc/systemd/system/pilothouse-agent.service" in result.stdout
    left = [p for p in root.rglob("*") if ("pilothouse" in p.name or p.name == "agent.env")
            and p != root / str(CONSOLE_SCRIPT).lstrip("/")]  # (verify_all's copy of the venv's script)
    assert left == [] and not wants.is_symlink()
    again = pilothouse("uninstall", "--root", str(root))
    assert again.returncode == 1 and "nothing to uninstall" in again.stderr


def test_install_server_passes_extra_arguments(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    result = pilothouse("install", "--role", "server", "--address", "10.1.0.1", "--root", str(root), "--",
                        "--disable", "scheduler", "--service-cluster-ip-range", "10.100.0.0/16")
    assert result.returncode == 0, result.stderr
    server = (root / UNITS / "pilothouse-server.service").read_text()
    assert f"ExecStart={CONSOLE_SCRIPT} server" in server
    assert "--disable scheduler" in server and "--tls-san 10.1.0.1" in server
    assert "ExecStartPost=/opt/pilothouse/bin/wait-healthz https://127.0.0.1:6443" in server
    verify_all(root)
    assert pilothouse("uninstall", "--root", str(root)).returncode == 0
    assert not (root / UNITS / "pilothouse-server.service").exists()


def test_install_again_replaces_the_previous_role(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    assert pilothouse("install", "--role", "agent", "--server", "https://10.1.0.1:6443", "--token",
                      "abcdef.0123456789abcdef", "--root", str(root)).returncode == 0
    result = pilothouse("install", "--role", "server", "--root", str(root))
    assert result.returncode == 0, result.stderr
    units = root / UNITS
    assert (units / "pilothouse-server.service").is_file()
    assert not (units / "pilothouse-agent.service").exists() and not (root / "etc/pilothouse/agent.env").exists()
    assert sorted(p.name for p in (units / "pilothouse.target.wants").iterdir()) == ["pilothouse-server.service"]
    assert pilothouse("uninstall", "--root", str(root)).returncode == 0
    assert not (units / "pilothouse.target.wants").exists() or not any((units / "pilothouse.target.wants").iterdir())


def test_install_agent_needs_a_server(tmp_path: Path) -> None:
    result = pilothouse("install", "--role", "agent", "--root", str(tmp_path))
    assert result.returncode == 2 and "--server is required for --role agent" in result.stderr
