"""The web dashboard with many simulated nodes and pods: first paint and update latency in Chromium.

Real processes: ``pilothouse server`` (plain HTTP, AlwaysAllow, so the numbers are the page's and the
watch's, not TLS's) and ``pilothouse agent --simulate N``; pods are created bound to the nodes
(``spec.nodeName``, round robin) so that the scheduler's pace does not enter the figures, and the
simulated nodes mark them Running. Then Debian's chromium (Playwright, headless) opens ``/ui/`` and
the benchmark reports:

- first paint: navigation start → every pod's chip on the map (and the page's own first-paint mark);
- update latency: a pod created through the API (its POST acknowledged) → its chip on the map, one at
  a time; then a burst of pods created at once → the last chip shown;
- the longest main-thread task (PerformanceObserver ``longtask``) during load and during the burst,
  which says whether the browser froze;
- the API server's extra CPU per Prometheus scrape of ``/metrics`` with the cluster at full size: the
  server's CPU seconds (``/proc/PID/stat``) over ``--scrapes`` scrapes, minus what it spends idle over
  the same wall time (measured just before, with nothing but the agent's Leases running).

    .venv/bin/python bench/dashboard.py [--nodes 500] [--pods 2000] [--updates 20] [--burst 500] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_scale import wait_nodes
from tests.conftest import OPEN_FLAGS, free_port, terminate, wait_healthy

CHROMIUM = "/usr/bin/chromium"
PODS = "/api/v1/namespaces/default/pods"
CHIPS = "document.querySelectorAll('#map .pod').length"
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
  .observe({ entryTypes: ["longtask"] });
"""


def pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "dashboard"}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]}}


async def create_pods(url: str, names: list[str], nodes: int, concurrency: int = 32) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(index: int, name: str) -> None:
            async with semaphore:
                for _ in range(50):  # the default ServiceAccount may not exist yet
                    async with session.post(url + PODS, json=pod(name, f"sim-{index % nodes:04d}")) as response:
                        if response.status in (201, 409):
                            return
                    await asyncio.sleep(0.2)
                raise RuntimeError(f"could not create pod {name}")
        await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))


async def watch_until(url: str, names: set[str]) -> float:
    """perf_counter() when a pod watch has shown every pod of ``names``."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url + PODS) as response:
            version = (await response.json())["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": version}
        async with session.get(url + PODS, params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                event = json.loads(line)
                names.discard(event["object"]["metadata"]["name"])
                if not names:
                    return time.perf_counter()
    raise RuntimeError("the watch ended early")


async def plain_list(url: str) -> float:
    """Seconds a plain client takes to list every pod in pages of 500 (the page's own pace)."""
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        token = ""
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            async with session.get(url + "/api/v1/pods", params=params) as response:
                token = (await response.json())["metadata"].get("continue", "")
            if not token:
                return time.perf_counter() - start


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_cpu(url: str, pid: int, scrapes: int, idle_seconds: float = 10.0) -> tuple[float, float, float, int]:
    """(extra server CPU seconds per /metrics scrape, wall seconds per scrape, the server's idle CPU rate in
    cores, bytes per scrape).

    Idle first: the server's CPU rate with nothing asked of it but the simulated nodes' Lease renewals;
    then ``scrapes`` sequential GETs of /metrics, and the idle rate times their wall time subtracted.
    """
    before, start = process_cpu(pid), time.perf_counter()
    time.sleep(idle_seconds)
    idle_rate = (process_cpu(pid) - before) / (time.perf_counter() - start)

    async def scrape_all() -> int:
        size = 0
        async with aiohttp.ClientSession() as session:
            for _ in range(scrapes):
                async with session.get(url + "/metrics") as response:
                    response.raise_for_status()
                    size = len(await response.read())
        return size

    before, start = process_cpu(pid), time.perf_counter()
    size = asyncio.run(scrape_all())
    wall = time.perf_counter() - start
    extra = process_cpu(pid) - before - idle_rate * wall
    return extra / scrapes, wall / scrapes, idle_rate, size


def create(url: str, names: list[str], nodes: int) -> None:
    """create_pods from a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create_pods(url, names, nodes)).result()


def run_browser(url: str, args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"] if os.geteuid() == 0 else [])
        page = browser.new_context(bypass_csp=True, viewport={"width": 1600, "height": 1000}).new_page()
        page.add_init_script(LONG_TASKS)
        start = time.perf_counter()
        page.goto(url + "/ui/")
        page.wait_for_function(f"{CHIPS} >= {args.pods}", timeout=600_000, polling="raf")
        loaded = time.perf_counter() - start
        first_paint = page.evaluate("window.pilothouseDashboard.firstPaint")
        long_load = page.evaluate("Math.max(0, ...window.__longTasks)")
        print(f"first paint: {loaded:.2f}s from navigation to {args.pods} pods on {args.nodes} nodes "
              f"(first chips at {first_paint / 1000:.2f}s); longest task while loading {long_load:.0f}ms")

        latencies = []
        for i in range(args.updates):
            name = f"probe-{i}"
            create(url, [name], args.nodes)
            acked = time.perf_counter()
            page.wait_for_function(f"!!document.querySelector(\"#map .pod[data-key='default/{name}']\")",
                                   polling="raf", timeout=30_000)
            latencies.append(time.perf_counter() - acked)
        if latencies:
            print(f"update latency (POST acknowledged → chip shown), {len(latencies)} pods: "
                  f"median {statistics.median(latencies) * 1000:.0f}ms, max {max(latencies) * 1000:.0f}ms")

        page.evaluate("window.__longTasks = []")
        total = args.pods + args.updates + args.burst
        names = [f"burst-{i}" for i in range(args.burst)]
        # A plain watch beside the page: when the server delivered the last burst pod, to tell the
        # server's share of the delay from the page's.
        with ThreadPoolExecutor(1) as pool:
            watched = pool.submit(asyncio.run, watch_until(url, set(names)))
            time.sleep(0.5)  # the watch is open
            start = time.perf_counter()
            create(url, names, args.nodes)
            created = time.perf_counter() - start
            page.wait_for_function(f"{CHIPS} >= {total}", timeout=600_000, polling="raf")
            shown = time.perf_counter() - start
            delivered = watched.result() - start
        long_burst = page.evaluate("Math.max(0, ...window.__longTasks)")
        print(f"burst: {args.burst} pods created in {created:.2f}s; a plain watch had them all "
              f"{delivered - created:+.2f}s after the last create, the page {shown - created:+.2f}s; "
              f"longest task during the burst {long_burst:.0f}ms")
        page.screenshot(path=args.screenshot, full_page=False)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--screenshot", default="dashboard-bench.png")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                                   "--port", str(port), *OPEN_FLAGS], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        agent = None
        try:
            wait_healthy(url, server)
            agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", url, "--simulate",
                                      str(args.nodes), "--node-name", "sim", "--root-dir", f"{data_dir}/agent"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Every 5 s: a list of 5,000 nodes twice a second took the CPU the server needed to register them.
            asyncio.run(wait_nodes(url, args.nodes, args.timeout, interval=5.0))
            start = time.perf_counter()
            asyncio.run(create_pods(url, [f"pod-{i}" for i in range(args.pods)], args.nodes))
            print(f"{args.nodes} simulated nodes Ready; {args.pods} pods created in {time.perf_counter() - start:.1f}s")
            print(f"a plain client lists them in pages of 500 in {asyncio.run(plain_list(url)):.2f}s")
            if args.scrapes:
                cpu, wall, idle, size = scrape_cpu(url, server.pid, args.scrapes)
                print(f"/metrics scrape: {cpu * 1000:.1f}ms extra server CPU per scrape over {args.scrapes} "
                      f"scrapes ({wall * 1000:.0f}ms wall each, {size / 1024:.0f} KiB; the server's CPU "
                      f"before them, Leases only: {idle:.2f} of a core)")
            run_browser(url, args)
        finally:
            # SIGKILL after 30 s: an agent of 5,000 nodes can take longer to stop on a loaded machine, and
            # the server must be stopped all the same (it takes its scheduler and controllers along).
            terminate(agent, 30)
            terminate(server, 30)


if __name__ == "__main__":
    main()
