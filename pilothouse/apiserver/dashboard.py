"""The web dashboard's static files at ``/ui/`` (issue 14).

The files (plain ES modules, no build step) live in ``apiserver/ui/`` as package data. They are
public, like ``/healthz``: the page holds no data. Everything it shows comes from the API through the
normal authentication and authorization chain, with the token the user pastes (or the client
certificate the browser presents), so it shows what RBAC allows that user and nothing else.

Served by a middleware placed before the auth layer's, so the files skip the chain while every other
path still passes it; only GET/HEAD of the known files are answered here.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

__all__ = ["PREFIX", "middleware"]

PREFIX = "/ui/"

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# The page loads only its own scripts and styles and talks only to this origin (the API).
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    """Name → (body, content type), read once: the files are small and never change at run time."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("pilothouse.apiserver").joinpath("ui").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


_FILES: dict[str, tuple[bytes, str]] | None = None


def _files() -> dict[str, tuple[bytes, str]]:
    global _FILES
    if _FILES is None:
        _FILES = _load()
    return _FILES


def _serve(request: web.Request) -> web.StreamResponse | None:
    """The response for a dashboard path, or None for any other path (which goes on to the chain)."""
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path == PREFIX.rstrip("/"):
        raise web.HTTPMovedPermanently(PREFIX)
    if not request.path.startswith(PREFIX):
        return None
    name = request.path[len(PREFIX):] or "index.html"
    found = _files().get(name)
    if found is None:
        return None
    body, content_type = found
    return web.Response(body=body, content_type=content_type, headers=_HEADERS)


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    response = _serve(request)
    if response is not None:
        return response
    return await handler(request)  # type: ignore[no-any-return]
