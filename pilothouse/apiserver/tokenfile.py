"""``--token-auth-file``: static bearer tokens (``apiserver/pkg/authentication/token/tokenfile``).

The file's format and its errors are :mod:`pilothouse.machinery.tokenfile`'s (read once at start).
"""

from __future__ import annotations

from pathlib import Path

from pilothouse.apiserver.auth import UserInfo
from pilothouse.machinery.tokenfile import read_token_file

__all__ = ["TokenFile"]


class TokenFile:
    def __init__(self, tokens: dict[str, UserInfo]) -> None:
        self.tokens = tokens

    @classmethod
    def load(cls, path: str | Path) -> TokenFile:
        return cls({r.token: UserInfo(r.user, r.groups, {}, r.uid) for r in read_token_file(path)})

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        return self.tokens.get(token)
