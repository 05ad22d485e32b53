"""``cluster create`` waiting for its hosts says why a host's supervisor is gone: how it ended (its exit
code or signal, when create started it) and the end of its log, or that the log is empty; and a live
supervisor rewriting its pid file is never taken for a dead one (the file is replaced atomically).

No network namespaces: the supervisor here is a plain child process standing in for ``run-host``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.lifecycle import ClusterError, wait_ready
from pilothouse.cli.supervisor import Backoff

TOPOLOGY = {"apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster",
            "network": {"hostSubnet": "10.51.0.0/24"},
            "hosts": [{"name": "boss", "role": "server", "address": "10.51.0.1", "agent": False}]}


def _layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "demo")
    layout.directory.mkdir()
    layout.topology_path.write_text(yaml.safe_dump(TOPOLOGY))
    layout.host_dir(layout.cluster().server).mkdir(parents=True)
    return layout


def _until_ended(pid: int) -> None:
    """Until the child has exited (a zombie: create has not reaped it either)."""
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)


def _wait_error(layout: Layout) -> str:
    with pytest.raises(ClusterError) as caught:
        asyncio.run(wait_ready(layout, layout.cluster(), lambda line: None, timeout=10))
    return str(caught.value)


def test_an_exit_code_and_the_log_tail(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    server = layout.cluster().server
    child = subprocess.Popen([sys.executable, "-c", "print('cannot bind 10.51.0.1:6443'); raise SystemExit(3)"],
                             stdout=layout.log_file(server).open("wb"))
    layout.write_pid(server, child.pid)
    _until_ended(child.pid)
    try:
        message = _wait_error(layout)
    finally:
        child.wait()
    assert f"boss: its supervisor (pid {child.pid}) exited with code 3" in message, message
    assert "cannot bind 10.51.0.1:6443" in message, message


def test_a_signal_and_an_empty_log(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    server = layout.cluster().server
    layout.log_file(server).touch()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    layout.write_pid(server, child.pid)
    child.send_signal(signal.SIGKILL)
    _until_ended(child.pid)
    try:
        message = _wait_error(layout)
    finally:
        child.wait()
    assert f"was killed by SIGKILL; {layout.log_file(server)} is empty" in message, message


def test_a_child_whose_command_line_does_not_name_the_cluster_yet_is_not_gone(tmp_path: Path) -> None:
    """``cluster start`` checks the host it started last at once: that child may still be inside
    execve, its /proc cmdline empty (seed cluster test, CI). An unreaped child of ours is alive."""
    layout = _layout(tmp_path)
    server = layout.cluster().server
    layout.log_file(server).touch()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # no "cluster" in it
    layout.write_pid(server, child.pid)
    try:
        with pytest.raises(ClusterError) as caught:
            asyncio.run(wait_ready(layout, layout.cluster(), lambda line: None, timeout=1))
    finally:
        child.kill()
        child.wait()
    assert "the server did not start within 1s" in str(caught.value), caught.value


def test_a_pid_file_rewritten_while_read_never_reads_as_gone(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    server = layout.cluster().server
    stop = threading.Event()
    layout.write_pid(server, 4242)

    def rewrite() -> None:
        while not stop.is_set():
            layout.write_pid(server, 4242)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        reads = {layout.pid_file(server).read_text() for _ in range(20000)}
    finally:
        stop.set()
        writer.join()
    assert reads == {"4242"}  # never empty, as a truncate-then-write left it between the two


def test_restart_backoff_grows_and_starts_afresh_after_a_healthy_run() -> None:
    """systemd's Restart=always with a growing delay, for the host's podman and the server's children."""
    backoff = Backoff(first=1.0, limit=8.0, healthy_after=60.0)
    delays = []
    for _ in range(6):  # each run fails at once
        backoff.started()
        delays.append(backoff.exited())
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.started()
    backoff.started_at -= 61  # it ran for a minute before failing
    assert backoff.exited() == 1.0
    backoff.started()  # and the next start fails at once again
    assert backoff.exited() == 2.0
