"""``--token-auth-file``: static bearer tokens (``apiserver/pkg/authentication/token/tokenfile``).

The file is CSV: ``token,user,uid[,"group1,group2,..."]``, read once at start; a line with fewer
than three columns is an error, as kube-apiserver refuses to start on it. Python's :mod:`csv`
reads the quoted group column exactly as Go's ``encoding/csv`` does.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pilothouse.apiserver.auth import UserInfo

__all__ = ["TokenFile"]


class TokenFile:
    def __init__(self, tokens: dict[str, UserInfo]) -> None:
        self.tokens = tokens

    @classmethod
    def load(cls, path: str | Path) -> TokenFile:
        tokens: dict[str, UserInfo] = {}
        with open(path, newline="") as handle:
            for number, record in enumerate(csv.reader(handle), start=1):
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if len(record) < 3:
                    raise ValueError(f"token file '{path}' must have at least 3 columns (token, user name, "
                                     f"user uid), found {len(record)} on line {number}")
                token = record[0].strip()
                groups = tuple(g.strip() for g in record[3].split(",") if g.strip()) if len(record) > 3 else ()
                if token in tokens:
                    raise ValueError(f"duplicate token on line {number} of {path}")
                tokens[token] = UserInfo(record[1].strip(), groups, {}, record[2].strip())
        return cls(tokens)

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        return self.tokens.get(token)
