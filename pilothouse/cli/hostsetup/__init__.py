"""Setting up real hosts: ``cloud-config`` (cloud-init user-data) and ``install``/``uninstall`` (systemd)."""

from __future__ import annotations

from pilothouse.cli.hostsetup.commands import COMMANDS

__all__ = ["COMMANDS"]
