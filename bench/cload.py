"""h2load (nghttp2's load generator, ``--h1``) as the load generator: C, so its own TLS costs little CPU.

Why: on a 2-core machine the load generator shares the cores with the server it measures. The
Python lean client (bench/leanhttp.py) spends 43-77 µs of CPU on a GET over TLS against 23-32 µs
over plain HTTP (docs/decisions/tls.md), so over TLS it takes more of the server's CPU and lowers
HTTPS throughput by itself. h2load is C (OpenSSL, libev), one thread drives all the connections.

Why h2load rather than wrk (also packaged) or ab: ``--warm-up-time`` connects every client (TLS
handshakes included: neither resumes sessions) before the measured window opens, as the issue's
figure is for requests on open keep-alive connections (an informer's, kubectl's); wrk counts 100
full handshakes inside its window, which at 100 clients and a 1-3 s window was most of the HTTPS
server's extra CPU. ``--log-file`` gives each request's latency, so p50/p99 are computed here.
Creates POST one body with ``metadata.generateName`` (h2load sends a fixed body), gets cycle
over a file of URIs (``-i``).

The server's CPU comes from its ``schedstat`` over the measured window (ns), h2load's from its
``/proc/<pid>/stat`` over the same window (clock ticks, but counting its worker thread, which ends
before it can be read), each reported per request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["LoadResult", "available", "h2load_level"]

H2LOAD = "h2load"
#: Connecting 100 clients over TLS on a loaded 2-core machine takes well under this.
WARM_UP = 1.0
#: Seconds h2load gets, beyond its warm-up and window, to stop and exit.
STOP_GRACE = 30.0


@dataclass(frozen=True)
class LoadResult:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    #: CPU µs per request in the measured window: the server's and h2load's.
    server_us: float
    client_us: float


def available() -> bool:
    return shutil.which(H2LOAD) is not None


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` with its threads, ended ones included (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def h2load_level(url: str, server_pid: int, clients: int, seconds: float, paths: list[str], *,
                 token: str | None = None, body: dict[str, object] | None = None) -> LoadResult:
    """``clients`` keep-alive HTTP/1.1 connections for ``seconds`` (after :data:`WARM_UP`) against
    ``url``: GETs cycling over ``paths``, or POSTs of ``body`` to ``paths[0]``. Raises when any
    request in the window did not succeed, so a figure never hides errors."""
    from bench.api import cpu_seconds  # bench.api imports this module

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "uris").write_text("".join(f"{url}{path}\n" for path in paths))
        command = [H2LOAD, "--h1", "-t1", f"-c{clients}", "-D", f"{round(seconds * 1000)}ms",
                   "--warm-up-time", f"{round(WARM_UP * 1000)}ms",
                   "-H", "Accept: application/json", "--log-file", str(work / "log"), "-i", str(work / "uris")]
        if token:
            command += ["-H", f"Authorization: Bearer {token}"]
        if body is not None:
            (work / "body").write_bytes(orjson.dumps(body))
            command += ["-d", str(work / "body"), "-H", "Content-Type: application/json"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # h2load 1.52 was seen to go on sending on a few connections after "Stopped all clients"
        # (100 clients POSTing over TLS, on a loaded machine), for minutes: killed, and the level
        # fails, rather than the benchmark waiting forever.
        watchdog = threading.Timer(WARM_UP + seconds + STOP_GRACE, process.kill)
        watchdog.start()
        # The window opens when h2load says so (its warm-up is per thread; one thread here).
        assert process.stdout is not None
        server_before = client_before = server_used = client_used = 0.0
        output = []
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            output.append(line)
            if line.startswith("Main benchmark duration is started"):
                server_before, client_before = cpu_seconds(server_pid), _process_cpu_seconds(process.pid)
            elif line.startswith("Main benchmark duration is over"):
                server_used = cpu_seconds(server_pid) - server_before
                client_used = _process_cpu_seconds(process.pid) - client_before
        process.wait()
        watchdog.cancel()
        text = "".join(output)
        if process.returncode != 0 or not server_before:
            raise RuntimeError(f"h2load exited {process.returncode}: {text[-800:]}")
        rows = [line.split("\t") for line in (work / "log").read_text().splitlines() if line]
    failed = [row[1] for row in rows if not row[1].startswith("2")]
    summary = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                        r"(\d+) errored, (\d+) timeout", text)
    if failed or summary is None or any(int(summary.group(g)) for g in (4, 5, 6)):
        raise RuntimeError(f"h2load {paths[0]}: {len(failed)} failed statuses {sorted(set(failed))[:5]}: "
                           f"{text[-400:]}")
    latencies = sorted(int(row[2]) for row in rows)
    count = max(1, len(latencies))
    return LoadResult(rate=len(latencies) / seconds, p50_ms=_percentile(latencies, 0.5) / 1000,
                      p99_ms=_percentile(latencies, 0.99) / 1000, requests=len(latencies),
                      server_us=server_used / count * 1e6, client_us=client_used / count * 1e6)
