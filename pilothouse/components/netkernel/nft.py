"""nftables transactions through ``nft -j -f -``: a list of JSON commands applied atomically.

Why the CLI: Debian's ``python3-nftables`` bindings (ctypes over libnftables) live in the system's
dist-packages, which the project's virtualenv does not see, and the PyPI copies of them are
unmaintained forks; ``nft`` is the same libnftables behind the same JSON schema (libnftables-json(5)),
and one process per transaction costs a few milliseconds, far below what the proxy's syncs are batched
at. JSON rather than nft's text syntax: rules are data we build and compare, never strings to quote.
A transaction either applies whole or not at all (nft sends one netlink batch).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["Nft", "NftError"]

Command = dict[str, Any]


class NftError(Exception):
    pass


class Nft:
    """Runs nft, optionally inside a named network namespace (``ip netns``; what the tests use)."""

    def __init__(self, netns: str | None = None, binary: str = "nft") -> None:
        self.argv: list[str] = (["ip", "netns", "exec", netns] if netns else []) + [binary]

    @staticmethod
    def available() -> bool:
        return shutil.which("nft") is not None

    async def _run(self, args: Sequence[str], stdin: bytes | None = None) -> bytes:
        # the input goes through a temporary file: nft reads "-" by opening /dev/stdin, which fails
        # for the socket pairs uvloop (the project's event loop) gives subprocesses, and a pipe would
        # need a writer of its own for inputs beyond the pipe's buffer
        with tempfile.TemporaryFile() as source:
            if stdin is not None:
                source.write(stdin)
                source.seek(0)
            process = await asyncio.create_subprocess_exec(
                *self.argv, *args, stdin=source if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await process.communicate()
        if process.returncode != 0:
            raise NftError(err.decode(errors="replace").strip() or f"nft {' '.join(args)} failed")
        return out

    async def apply(self, commands: Sequence[Command]) -> None:
        """Apply ``commands`` (``{"add": {...}}``, ``{"flush": ...}``...) as one transaction."""
        if commands:
            await self._run(["-j", "-f", "-"], orjson.dumps({"nftables": list(commands)}))

    async def list_table(self, family: str, table: str) -> list[Command]:
        """The table's objects as nft prints them in JSON (empty when the table does not exist)."""
        try:
            out = await self._run(["-j", "list", "table", family, table])
        except NftError as error:
            if "No such file or directory" in str(error):
                return []
            raise
        return [item for item in orjson.loads(out).get("nftables", []) if "metainfo" not in item]

    async def delete_table(self, family: str, table: str) -> None:
        # "add" first: deleting a table that is not there is an error, adding one that is is not
        await self.apply([{"add": {"table": {"family": family, "name": table}}},
                          {"delete": {"table": {"family": family, "name": table}}}])
