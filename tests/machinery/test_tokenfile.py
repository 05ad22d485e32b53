"""The static token file's format, as kube-apiserver's ``tokenfile.NewCSV`` reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.machinery.tokenfile import TokenRecord, read_token_file


def test_rows_with_and_without_groups(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text('abc,alice,1,"dev,ops"\n\ndef , bob ,2\n')
    assert read_token_file(path) == [TokenRecord("abc", "alice", "1", ("dev", "ops")),
                                     TokenRecord("def", "bob", "2", ())]


@pytest.mark.parametrize(("text", "error"), [("abc,alice\n", "at least 3 columns"),
                                             ("abc,alice,1\nabc,bob,2\n", "duplicate token on line 2")])
def test_a_file_kube_apiserver_refuses_is_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        read_token_file(path)
