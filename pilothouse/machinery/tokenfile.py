"""The static token file (kube-apiserver's ``--token-auth-file``), read the same way on both sides.

CSV: ``token,user,uid[,"group1,group2,..."]`` (``apiserver/pkg/authentication/token/tokenfile``). A
line with fewer than three columns, or a token given twice, is an error, as kube-apiserver refuses
to start on either. Python's :mod:`csv` reads the quoted group column exactly as Go's
``encoding/csv`` does. The API server authenticates with it; simulated nodes pick each node's token
from it (``agent --simulate-token-file``), so one file serves both.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TokenRecord", "read_token_file"]


@dataclass(frozen=True)
class TokenRecord:
    token: str
    user: str
    uid: str
    groups: tuple[str, ...]


def read_token_file(path: str | Path) -> list[TokenRecord]:
    records: list[TokenRecord] = []
    seen: set[str] = set()
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 3:
                raise ValueError(f"token file '{path}' must have at least 3 columns (token, user name, "
                                 f"user uid), found {len(row)} on line {number}")
            token = row[0].strip()
            if token in seen:
                raise ValueError(f"duplicate token on line {number} of {path}")
            seen.add(token)
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            records.append(TokenRecord(token, row[1].strip(), row[2].strip(), groups))
    return records
