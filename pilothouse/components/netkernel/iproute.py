"""iproute2 from asyncio: ``ip``/``bridge`` read as JSON (``-j``) and written in one ``-batch`` each.

pyroute2 (netlink from Python) is neither installed nor in the project's dependencies; a batch costs
one process however many routes, neighbours and forwarding entries it holds, which is what a sync of
the pod network across hosts writes, so iproute2's own batch mode is enough and adds no dependency.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["IPRouteError", "batch", "show"]


class IPRouteError(Exception):
    pass


async def _run(argv: list[str], stdin: bytes | None = None) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate(stdin)
    if process.returncode != 0:
        raise IPRouteError(err.decode(errors="replace").strip() or f"{' '.join(argv)} failed")
    return out


async def show(tool: str, *args: str) -> list[dict[str, Any]]:
    """``tool -j args`` parsed (``[]`` for no output, as ``ip`` prints nothing for an empty table)."""
    out = (await _run([tool, "-j", *args])).strip()
    value = json.loads(out) if out else []
    return value if isinstance(value, list) else [value]


async def batch(tool: str, lines: list[str]) -> None:
    """``tool -force -batch -``: every line is tried (``-force``), an error in one is reported after."""
    if lines:
        await _run([tool, "-force", "-batch", "-"], ("\n".join(lines) + "\n").encode())
