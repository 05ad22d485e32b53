"""systemd unit files as data: a ``Unit`` renders to the INI text systemd reads.

Command lines are written one argument per line with ``\\`` continuations, as the seed wrote them, so a
reader of ``systemctl cat`` sees the flags. Arguments are quoted for systemd's own splitter, which
accepts shell-style single quotes, and ``%`` is doubled because systemd expands ``%H``-style
specifiers in command lines; ``EnvVar`` is left unquoted so systemd substitutes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["EnvVar", "Unit", "command_line"]

_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class EnvVar:
    """An argument systemd takes from the unit's environment (``${NAME}``, one word)."""

    name: str


def _quote(argument: str | EnvVar) -> str:
    if isinstance(argument, EnvVar):
        return "${" + argument.name + "}"
    text = argument.replace("%", "%%")
    if _SAFE.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command_line(arguments: Sequence[str | EnvVar]) -> str:
    """One Exec*= value; long command lines continue over lines like the seed's units."""
    words = [_quote(a) for a in arguments]
    if len(" ".join(words)) <= 100:
        return " ".join(words)
    lines: list[str] = [words[0]]
    for word in words[1:]:
        last = lines[-1].strip()
        # the subcommand stays with the program, a flag with its value
        if not word.startswith("-") and (len(lines) == 1 or (last.startswith("-") and not {"=", " "} & set(last))):
            lines[-1] += " " + word
        else:
            lines.append("    " + word)
    return " \\\n".join(lines)


@dataclass(frozen=True)
class Unit:
    """A unit file: name (``pilothouse-agent.service``) and its sections as ordered key/value pairs."""

    name: str
    unit: Sequence[tuple[str, str]]
    service: Sequence[tuple[str, str]] = ()
    install: Sequence[tuple[str, str]] = field(default=(("WantedBy", "pilothouse.target"),))

    def render(self) -> str:
        out: list[str] = []
        for section, pairs in (("Unit", self.unit), ("Service", self.service), ("Install", self.install)):
            if pairs:
                out.append(f"[{section}]")
                out.extend(f"{key}={value}" for key, value in pairs)
        return "\n".join(out) + "\n"
