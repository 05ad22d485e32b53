"""The soak (issue 15): a steady mixed workload for ``--minutes`` against real processes, sampled every
``--window`` seconds, with any upward trend flagged.

The cluster: ``pilothouse server`` (SQLite; its scheduler and controller manager as the child processes
it supervises) and one ``pilothouse agent --simulate N``. The churn: pods created and deleted at
``--rate`` per second each (simulated nodes: they go Running without containers), ConfigMaps
written, pods listed and read, and watches opened and closed all the time (each a random 1 to 5 s).

Each window prints, per process (server, scheduler, controller manager, agent): RSS and open file
descriptors (from /proc), threads, and the asyncio task count where the process's ``/metrics``
exposes ``python_asyncio_tasks`` (the API server's: the Go ``go_goroutines`` equivalent); the SQLite
file and WAL sizes; and request latency p99 per verb in the window, as clients saw it. At the end,
a least-squares slope per series over the windows after the first (warm-up) with the growth it
projects over the run, flagged ``GROWS`` when that is more than 10% (and past a noise floor); then
the same over the windows after ``--settled`` minutes, once the store's history has reached its
retention (the SQLite file must level off there, not before).

    .venv/bin/python bench/soak.py --minutes 30 [--window 60] [--rate 20] [--nodes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import OPEN_FLAGS, free_port, wait_healthy

NS = "/api/v1/namespaces/default"
MERGE = {"Content-Type": "application/merge-patch+json"}
#: Requests in flight: the loop keeps only weak references to tasks.
_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Any) -> None:
    task = asyncio.ensure_future(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


@dataclass
class Latencies:
    by_verb: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0

    def take(self) -> dict[str, list[float]]:
        taken, self.by_verb = self.by_verb, defaultdict(list)
        return taken


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(RSS MiB, open fds, threads) of a live process, from /proc."""
    rss_kb = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def children(pid: int) -> dict[str, int]:
    """The server's supervised components by name (their command line names them)."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for name in ("scheduler", "controller-manager"):
            if name.encode() in argv:
                found[name] = int(entry)
    return found


async def asyncio_tasks(session: aiohttp.ClientSession, url: str) -> float:
    try:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("python_asyncio_tasks "):
            return float(line.split()[1])
    return float("nan")


async def timed(latencies: Latencies, verb: str, request: Any) -> Any:
    start = time.perf_counter()
    try:
        async with request as response:
            body = await response.read()
            if response.status >= 300 and response.status != 404:
                latencies.errors += 1
    except (aiohttp.ClientError, TimeoutError):
        latencies.errors += 1
        return None
    latencies.by_verb[verb].append(time.perf_counter() - start)
    return body


async def churn_pods(session: aiohttp.ClientSession, url: str, rate: float, latencies: Latencies,
                     until: float, rng: random.Random) -> None:
    """``rate`` pod creates and ``rate`` deletes per second; each pod lives about 5 s."""
    alive: list[str] = []
    n = 0
    while time.monotonic() < until:
        tick = time.monotonic()
        n += 1
        name = f"soak-{n}"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"soak": "yes"}},
               "spec": {"containers": [{"name": "c", "image": "sim/soak:1"}]}}
        spawn(timed(latencies, "create", session.post(url + NS + "/pods", data=orjson.dumps(pod),
                                                                    headers={"Content-Type": "application/json"})))
        alive.append(name)
        if len(alive) > rate * 5:
            victim = alive.pop(rng.randrange(len(alive) // 2))
            spawn(timed(latencies, "delete", session.delete(f"{url}{NS}/pods/{victim}")))
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))


async def mixed(session: aiohttp.ClientSession, url: str, latencies: Latencies, until: float,
                rng: random.Random) -> None:
    """ConfigMap writes, gets and lists, a few per second."""
    seq = 0
    while time.monotonic() < until:
        seq += 1
        name = f"soak-cm-{rng.randrange(50)}"
        body = orjson.dumps({"metadata": {"name": name}, "data": {"seq": str(seq), "pad": "x" * 2000}})
        got = await timed(latencies, "patch", session.patch(f"{url}{NS}/configmaps/{name}", data=body, headers=MERGE))
        if got is not None and b'"NotFound"' in got:
            await timed(latencies, "create", session.post(f"{url}{NS}/configmaps", data=body,
                                                          headers={"Content-Type": "application/json"}))
        await timed(latencies, "get", session.get(f"{url}{NS}/configmaps/{name}"))
        if seq % 5 == 0:
            await timed(latencies, "list", session.get(f"{url}{NS}/pods", params={"labelSelector": "soak=yes"}))
        await asyncio.sleep(0.1)


async def watches(session: aiohttp.ClientSession, url: str, latencies: Latencies, until: float,
                  rng: random.Random) -> None:
    """Watches opened and closed all the time: each reads for 1 to 5 s (server-side timeout), about
    four open at once."""
    async def one() -> None:
        seconds = rng.randint(1, 5)
        start = time.perf_counter()
        try:
            async with session.get(f"{url}{NS}/pods", params={"watch": "true", "timeoutSeconds": str(seconds)},
                                   timeout=aiohttp.ClientTimeout(total=seconds + 10)) as response:
                async for _ in response.content.iter_any():
                    pass
        except (aiohttp.ClientError, TimeoutError):
            latencies.errors += 1
        latencies.by_verb["watch-open"].append(time.perf_counter() - start - seconds)

    while time.monotonic() < until:
        spawn(one())
        await asyncio.sleep(0.75)


def slope(values: list[float]) -> float:
    """Least-squares slope per window."""
    points = [(i, v) for i, v in enumerate(values) if v == v]  # NaN dropped
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den if den else 0.0


#: Below these a series' projected growth is noise, whatever its percentage.
FLOORS = {"MiB": 8.0, "fds": 5.0, "threads": 2.0, "tasks": 20.0, "ms": 20.0, "MB": 2.0}


def trend(name: str, unit: str, values: list[float], skip: int = 1) -> str:
    steady = values[skip:] if len(values) > skip + 1 else values  # the first windows are warm-up
    s = slope(steady)
    finite = [v for v in steady if v == v]
    if not finite:
        return f"  {name:<34} (no samples)"
    base = finite[0] or 1.0
    projected = s * (len(steady) - 1)
    grows = projected > FLOORS.get(unit, 0.0) and projected / abs(base) > 0.10
    return (f"  {name:<34} first {finite[0]:9.1f} last {finite[-1]:9.1f} {unit:<7} slope {s:+8.2f}/window  "
            f"{'GROWS' if grows else 'flat'}")


async def soak(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = base / "server"
    data.mkdir()
    logs = [open(base / "server.log", "ab"), open(base / "agent.log", "ab")]  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data), "--port",
                               str(port), *OPEN_FLAGS, *args.server_arg], stdout=logs[0], stderr=subprocess.STDOUT)
    agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", url, "--node-name", "soak",
                              "--simulate", str(args.nodes), "--root-dir", str(base / "agent"), "--port",
                              str(free_port())], stdout=logs[1], stderr=subprocess.STDOUT)
    series: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        wait_healthy(url, server, timeout=60)
        latencies = Latencies()
        until = time.monotonic() + args.minutes * 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            tasks = [asyncio.create_task(churn_pods(session, url, args.rate, latencies, until, rng)),
                     asyncio.create_task(mixed(session, url, latencies, until, rng)),
                     asyncio.create_task(watches(session, url, latencies, until, rng))]
            window = 0
            print(f"soak: {args.minutes:g} min, window {args.window:g}s, {args.rate:g} pod creates+deletes/s, "
                  f"{args.nodes} simulated nodes; data in {base}", flush=True)
            while time.monotonic() < until:
                await asyncio.sleep(min(args.window, max(0.0, until - time.monotonic())))
                window += 1
                processes = {"server": server.pid, **children(server.pid), "agent": agent.pid}
                line = [f"[{window:3d}]"]
                for name, pid in processes.items():
                    try:
                        rss, fds, threads = proc_stats(pid)
                    except OSError:
                        rss, fds, threads = float("nan"), 0, 0
                    series[(f"{name} RSS", "MiB")].append(rss)
                    series[(f"{name} fds", "fds")].append(fds)
                    series[(f"{name} threads", "threads")].append(threads)
                    line.append(f"{name} {rss:.0f}MiB/{fds}fd/{threads}thr")
                tasks_now = await asyncio_tasks(session, url)
                series[("server asyncio tasks", "tasks")].append(tasks_now)
                db, wal = data / "state.db", data / "state.db-wal"
                db_mb = db.stat().st_size / 1e6 if db.exists() else float("nan")
                wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
                series[("sqlite file", "MB")].append(db_mb)
                series[("sqlite WAL", "MB")].append(wal_mb)
                line.append(f"tasks {tasks_now:.0f} db {db_mb:.1f}MB wal {wal_mb:.1f}MB")
                taken = latencies.take()
                for verb in ("create", "delete", "patch", "get", "list"):
                    series[(f"p99 {verb}", "ms")].append(p99(taken.get(verb, [])) * 1000)
                line.append("p99 " + " ".join(f"{v}={p99(taken.get(v, [])) * 1000:.0f}ms"
                                              for v in ("create", "delete", "patch", "get", "list")))
                line.append(f"requests {sum(len(v) for v in taken.values())} errors so far {latencies.errors}")
                print("  ".join(line), flush=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        print(f"\ntrends over {window} windows (the first is warm-up):")
        for (name, unit), values in series.items():
            print(trend(name, unit, values))
        settled = math.ceil(args.settled * 60 / args.window)
        if window > settled + 2:
            # The store keeps one to two compaction intervals of history (sqlite.py), so its file
            # grows until the second compaction (600 s) frees pages for reuse: judge a level-off here.
            print(f"\ntrends over windows {settled + 1}..{window} "
                  f"(after {args.settled:g} min: the history at its retention):")
            for (name, unit), values in series.items():
                print(trend(name, unit, values, skip=settled))
    finally:
        for process in (agent, server):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per sample")
    parser.add_argument("--rate", type=float, default=20.0, help="pod creates (and deletes) per second")
    parser.add_argument("--nodes", type=int, default=20, help="simulated nodes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settled", type=float, default=11.0,
                        help="minutes after which a second trend table is printed (two compaction intervals + 1)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="passed on to `pilothouse server` (repeat it; e.g. --server-arg=--event-ttl=5m)")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
