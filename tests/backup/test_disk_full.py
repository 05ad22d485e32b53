"""Disk full under SQLite: a tmpfs data dir of a few MB, filled up while a real server writes.

As kube-apiserver answers etcd's "mvcc: database space exceeded": writes fail with a 500 Status that
says the store is out of space; reads keep working; nothing acknowledged is lost or corrupted; writes
resume when space returns, and the server restarts on the same file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server_process

BIG = "x" * 100_000  # a ConfigMap of 100 KB: the disk fills in a few writes


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def request(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def create(url: str, name: str) -> tuple[int, dict[str, Any]]:
    return request(f"{url}/api/v1/namespaces/default/configmaps", "POST",
                   {"metadata": {"name": name}, "data": {"big": BIG}})


def fill(directory: Path, leave: int) -> Path:
    """Take all of the file system's free space but ``leave`` bytes."""
    stat = os.statvfs(directory)
    filler = directory / "filler"
    with open(filler, "wb") as out:
        os.posix_fallocate(out.fileno(), 0, stat.f_bavail * stat.f_frsize - leave)
    return filler


def test_disk_full_fails_writes_keeps_reads_and_recovers(small_disk: Path) -> None:
    data_dir = small_disk / "data"
    server = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    url = server.url
    acked: dict[str, str] = {}
    try:
        filler = fill(small_disk, 1_500_000)
        for i in range(100):
            status, body = create(url, f"cm-{i}")
            if status != 201:
                break
            acked[body["metadata"]["name"]] = body["metadata"]["resourceVersion"]
        else:
            pytest.fail("the disk never filled")
        assert status == 500 and body["kind"] == "Status" and body["reason"] == "InternalError", body
        assert "database space exceeded" in body["message"] and "full" in body["message"], body
        assert acked, "some writes fit before the disk filled"

        # The server stays up; another write fails the same way; reads are served.
        assert create(url, "still-full")[0] == 500
        status, listed = request(f"{url}/api/v1/namespaces/default/configmaps")
        assert status == 200
        assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in listed["items"]} == acked
        assert "cm-0" in server.kubectl("get", "configmaps").stdout

        filler.unlink()  # space returns: writes resume
        status, body = create(url, "after")
        assert status == 201, body
        acked["after"] = body["metadata"]["resourceVersion"]
    finally:
        server.stop()

    with contextlib.closing(sqlite3.connect(data_dir / "state.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    server = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    try:
        status, listed = request(f"{server.url}/api/v1/namespaces/default/configmaps")
        assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in listed["items"]} == acked
    finally:
        server.stop()
