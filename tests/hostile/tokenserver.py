"""A plain-HTTP server whose users come from a ``--token-auth-file``, for the request-limit tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerProcess, start_server_process


def start_token_server(directory: Path, tokens: dict[str, tuple[str, str]], *extra: str) -> ServerProcess:
    """``tokens``: token -> (user, comma-separated groups); the scheduler and controller manager off."""
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(f'{token},{user},uid-{user},"{groups}"\n'
                                  for token, (user, groups) in tokens.items()))
    return start_server_process(directory / "data", extra=(
        "--token-auth-file", str(token_file), "--disable", "scheduler,controller-manager", *extra))
