"""The density run of issue 16: N simulated nodes, P pods per node, every target with PASS/FAIL.

Real processes talking through the API, as in production: ``pilothouse server`` (embedded store,
scheduler and controller manager with the node lifecycle controller) and ``pilothouse agent
--simulate`` processes whose nodes renew their Leases every 10 s and watch their pods as kubelets do
(``fieldSelector=spec.nodeName=<node>``, one watch per node). The benchmark creates Deployments at 0
replicas, scales them through ``/scale`` (what ``kubectl scale`` does) and follows every pod through
one watch, timing create → scheduled → Running. Meanwhile a bounded probe loop GETs and PUTs one
ConfigMap (the single-object API latency the SLO speaks of) and a sampler reads the server's RSS,
CPU and SQLite file sizes. Once every pod runs it LISTs all pods, whole and in pages of 500 (from a
child process, timed to each answer's last byte, the decode apart), and diffs the server's
``apiserver_request_total`` to count writes per pod by resource.

Before the first pod, ``--heartbeat-window`` seconds measure the nodes alone (Lease renewals, the
agents' Node GETs, idle watches): every process's cores and the requests a second. With the run's
CPU per pod, that gives the rate this machine allows at all, with every core busy: the ceiling the
run's figure is read against. During the run, the Leases' ages (``now - renewTime``, a LIST every
30 s) and the renewals' rate and server-side p99 show whether the heartbeat kept up: a Lease older
than 40 s is a node the node lifecycle controller marks NotReady.

The callers are who they are in Kubernetes (``--callers classified``, the default): the server runs
its defaults (HTTPS, API Priority and Fairness), the scheduler and controller manager under their
own identities, and each simulated node as its own kubelet, ``system:node:<name>`` in
``system:nodes`` (a static token per node); ``--callers per-agent`` puts all of an agent's nodes under
one identity in ``system:nodes`` (the sixteenth session's runs: one priority-and-fairness flow per
agent); ``--callers exempt`` is the plain-HTTP server where every caller is ``system:masters`` (the
runs before the sixteenth session).

    .venv/bin/python bench/density.py --nodes 500 --pods-per-node 30 --timeout 900     # 10%
    .venv/bin/python bench/density.py --nodes 5000 --pods-per-node 30 --timeout 1800   # the issue's

Every loop is bounded by ``--timeout``; on timeout the figures reached so far are printed, marked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import ProcessGroup, rss_bytes
from pilothouse.machinery.tokenfile import read_token_file
from tests.conftest import OPEN_FLAGS, free_port, wait_healthy
from tests.scale.workload import deployment

NAMESPACE = "density"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
PROBE = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
SERVER_BUCKET = "le"  # request_counts() keys the probe's server-side histogram buckets (SERVER_BUCKET, le)
TERMINATED = "terminated"  # ... and apiserver_terminated_watchers_total as (TERMINATED, resource)
LEASE_BUCKET = "lease-le"  # ... and the Lease PUTs' histogram buckets as (LEASE_BUCKET, le)
APF_DISPATCHED = "apf-dispatched"  # ... and priority and fairness' counters as (APF_*, priority level)
APF_REJECTED = "apf-rejected"
#: the keys above that are not a request's verb: left out wherever requests are summed
NOT_VERBS = (SERVER_BUCKET, LEASE_BUCKET, TERMINATED, APF_DISPATCHED, APF_REJECTED)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
#: the node lifecycle controller's grace period (nodeMonitorGracePeriod, 40 s): a Lease older than
#: this makes its node NotReady
LEASE_GRACE = 40.0
MERGE = {"Content-Type": "application/merge-patch+json"}
TICKS = os.sysconf("SC_CLK_TCK")
#: after registering, a node renews its Lease and first updates its status within a jitter of up
#: to 10 s plus one 10 s period (agent/node.py); the heartbeat is measured from then on
HEARTBEAT_SETTLE = 22.0
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION")


# ------------------------------------------------------------------ process figures (from /proc)

def process_tree(pid: int) -> list[int]:
    """pid and its descendants (the server may run helpers in child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def component_pids(server: int, agents: list[int]) -> dict[str, list[int]]:
    """The processes to charge CPU to: the server, the scheduler and controller manager it starts
    as children, the agents, and anything else the server started."""
    groups: dict[str, list[int]] = {"server": [server], "agents": []}
    for pid in process_tree(server)[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        name = "server" if b"--worker-index" in argv else next(  # server --workers: the API server's own
            (a.decode() for a in argv if a in (b"scheduler", b"controller-manager")), "server children")
        groups.setdefault(name, []).append(pid)
    for agent in agents:
        groups["agents"].extend(process_tree(agent))
    return groups


class CPUMeter:
    """CPU seconds per component over the run, processes restarted meanwhile included (the server's
    supervisor restarts a scheduler that lost its leader lease): every pid seen is charged from the
    figure it had when first seen (0 if born during the run) to the last one read."""

    def __init__(self, server: int, agents: list[int]) -> None:
        self.server, self.agents = server, agents
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.benchmark = time.process_time()

    def read(self, starting: bool = False) -> None:
        for name, pids in component_pids(self.server, self.agents).items():
            for pid in pids:
                spent = cpu_seconds(pid)
                self.first.setdefault(pid, spent if starting else 0.0)
                self.last[pid] = (name, spent)

    def spent(self) -> dict[str, float]:
        totals: dict[str, float] = {"benchmark": time.process_time() - self.benchmark}
        for pid, (name, spent) in self.last.items():
            totals[name] = totals.get(name, 0.0) + spent - self.first[pid]
        return totals


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [float(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The share of all cores busy between two machine_busy() readings."""
    return (after[0] - before[0]) / max(1.0, after[1] - before[1])


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class Samples:
    rss_peak: int = 0
    wal_peak: int = 0
    db_peak: int = 0


async def sample(server_pid: int, db: Path, samples: Samples, meter: CPUMeter, stop: asyncio.Event) -> None:
    while not stop.is_set():
        meter.read()
        samples.rss_peak = max(samples.rss_peak, rss_bytes(server_pid))
        samples.db_peak = max(samples.db_peak, file_size(db))
        samples.wal_peak = max(samples.wal_peak, file_size(db.with_name(db.name + "-wal")))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


# ------------------------------------------------------------------ the pods, as one watch shows them

@dataclass
class Stages:
    """Per pod: when the watch first showed it created, scheduled (nodeName set) and Running."""

    created: dict[str, float] = field(default_factory=dict)
    scheduled: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    watch_restarts: int = 0
    #: relists answered with an error Status or not at all, each retried after a backoff
    relist_errors: int = 0


def observe(stages: Stages, pod: dict[str, Any], now: float) -> None:
    name = pod["metadata"]["name"]
    stages.created.setdefault(name, now)
    stages.uids[name] = pod["metadata"]["uid"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        stages.scheduled.setdefault(name, now)
        stages.nodes[name] = node
    if (pod.get("status") or {}).get("phase") == "Running":
        stages.running.setdefault(name, now)


async def relist(session: aiohttp.ClientSession, url: str, stages: Stages) -> str:
    """The state after a watch failed (an ERROR event such as a 410, a broken connection): a paged LIST.
    (A watcher that falls behind is ended without an error: ``follow`` watches again from its last
    resourceVersion, as a reflector does.)

    An overloaded server answers some pages with an error Status (429, 504, 410 for an expired
    continue token) or not at all: each is counted and the list starts over after a backoff
    (0.5 s doubling to 10 s), as a reflector's relist does, rather than crashing the run."""
    backoff = 0.5
    while True:
        try:
            return await _list_pages(session, url, stages)
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as error:
            stages.relist_errors += 1
            print(f"relist failed ({type(error).__name__}: {str(error)[:120]}); again in {backoff:.1f} s",
                  file=sys.stderr, flush=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


async def _list_pages(session: aiohttp.ClientSession, url: str, stages: Stages) -> str:
    token, revision = "", ""
    for _ in range(10_000):
        params = {"limit": "1000", **({"continue": token} if token else {})}
        async with session.get(url + PODS, params=params) as response:
            body = orjson.loads(await response.read())
        if body.get("kind") == "Status":
            raise ValueError(f"{body.get('code')} {body.get('reason')}: {body.get('message')}")
        now = time.perf_counter()
        for pod in body["items"]:
            observe(stages, pod, now)
        revision = revision or body["metadata"]["resourceVersion"]
        token = body["metadata"].get("continue", "")
        if not token:
            break
    stages.changed.set()
    return revision


async def follow(session: aiohttp.ClientSession, url: str, stages: Stages, revision: str) -> None:
    params = {"watch": "true", "resourceVersion": revision, "allowWatchBookmarks": "false"}
    while True:
        try:
            async with session.get(url + PODS, params=params,
                                   timeout=aiohttp.ClientTimeout(total=None)) as response:
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    lines = buffer.split(b"\n")
                    buffer = lines.pop()
                    now = time.perf_counter()
                    for line in lines:
                        event = orjson.loads(line)
                        pod = event["object"]
                        if event["type"] == "ERROR":
                            raise aiohttp.ClientPayloadError(f"pod watch ended: {pod.get('message')}")
                        params["resourceVersion"] = pod["metadata"]["resourceVersion"]
                        if event["type"] != "DELETED":
                            observe(stages, pod, now)
                    stages.changed.set()
        except (aiohttp.ClientError, TimeoutError):
            stages.watch_restarts += 1
            params["resourceVersion"] = await relist(session, url, stages)


async def until(stages: Stages, done: Any, deadline: float) -> bool:
    while not done():
        stages.changed.clear()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(stages.changed.wait(), min(remaining, 5.0))
        except TimeoutError:
            pass
    return True


# ------------------------------------------------------------------ the single-object probe

@dataclass
class Probe:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def probe(session: aiohttp.ClientSession, url: str, result: Probe, stop: asyncio.Event,
                limit: int = 100_000) -> None:
    """GET then PUT one ConfigMap, about 10 pairs a second, until stopped (at most ``limit`` calls)."""
    configmap: dict[str, Any] = {"metadata": {"name": "probe"}, "data": {"n": "0"}}
    try:
        async with session.post(url + PROBE, json=configmap) as response:
            configmap = await response.json()
    except (aiohttp.ClientError, TimeoutError):
        result.errors += 1  # the server did not answer in 2 minutes; the loop below counts each call
    n = 0
    while not stop.is_set() and len(result.latencies) < limit:
        n += 1
        for method in ("GET", "PUT"):
            start = time.perf_counter()
            try:
                if method == "GET":
                    async with session.get(f"{url}{PROBE}/probe") as response:
                        configmap = await response.json()
                else:
                    configmap["data"] = {"n": str(n)}
                    async with session.put(f"{url}{PROBE}/probe", json=configmap) as response:
                        configmap = await response.json()
                ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            result.latencies.append(time.perf_counter() - start)
            result.errors += not ok
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


# ------------------------------------------------------------------ server metrics

async def request_counts(session: aiohttp.ClientSession, url: str, workers: int = 1,
                         wait: float = 600) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource]), over every worker of a
    ``server --workers``: each answers for itself, so new connections until each has been scraped.
    Empty when the server does not answer within ``wait`` (a timed-out run: the table must still print)."""
    texts: dict[str, str] = {}
    try:
        for _ in range(50 * workers):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh, \
                    fresh.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=wait)) as response:
                texts.setdefault(response.headers.get("X-Pilothouse-Worker", "0"), await response.text())
            if len(texts) >= workers:
                break
    except (aiohttp.ClientError, TimeoutError):
        print("request counts: the server did not answer", file=sys.stderr, flush=True)
        return Counter()
    counts: Counter[tuple[str, str]] = Counter()
    for family in (f for text in texts.values() for f in text_string_to_metric_families(text)):
        for metric in family.samples:
            labels = metric.labels
            if metric.name == "apiserver_request_duration_seconds_bucket" and labels.get("le") != "+Inf":
                if labels.get("resource") == "configmaps" and labels.get("verb") in ("GET", "PUT"):
                    # the server's own latency of the probe's calls (the SLI: server side, by histogram)
                    counts[SERVER_BUCKET, labels["le"]] += int(metric.value)
                elif labels.get("resource") == "leases" and labels.get("verb") == "PUT":
                    counts[LEASE_BUCKET, labels["le"]] += int(metric.value)  # the renewals' own
            if metric.name == "apiserver_terminated_watchers_total":
                counts[TERMINATED, labels.get("resource", "")] += int(metric.value)
            if metric.name == "apiserver_flowcontrol_dispatched_requests_total":
                counts[APF_DISPATCHED, labels.get("priority_level", "")] += int(metric.value)
            if metric.name == "apiserver_flowcontrol_rejected_requests_total":
                counts[APF_REJECTED, labels.get("priority_level", "")] += int(metric.value)
            if metric.name != "apiserver_request_total":
                continue
            resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            counts[labels.get("verb", ""), resource] += int(metric.value)
    return counts


def lease_puts_per_second(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], seconds: float) -> float:
    """Lease PUTs a second between two request counts."""
    return (after["PUT", "leases"] - before["PUT", "leases"]) / max(seconds, 1e-9)


def server_quantile(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], q: float,
                    histogram: str = SERVER_BUCKET) -> float:
    """The bucket bound the server's histogram puts the q-quantile of the probe's calls under
    (as Prometheus' histogram_quantile without interpolation): what the SLI is measured on.
    ``histogram=LEASE_BUCKET``: the same for the Lease renewals."""
    buckets = sorted((float(le), after[histogram, le] - before[histogram, le])
                     for kind, le in after if kind == histogram)
    total = buckets[-1][1] if buckets else 0
    return next((bound for bound, count in buckets if count >= q * total), float("inf")) if total else float("nan")


@dataclass
class LeaseAges:
    """The nodes' heartbeat as the node lifecycle controller sees it: ``now - renewTime`` of every
    Lease, sampled every ``period`` seconds during the run."""

    ages: list[float] = field(default_factory=list)
    samples: int = 0
    #: per sample, how many Leases were older than LEASE_GRACE; the largest such count
    late_peak: int = 0
    late_nodes: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


async def lease_ages(session: aiohttp.ClientSession, url: str, result: LeaseAges, stop: asyncio.Event,
                     period: float = 30.0) -> None:
    """One LIST of the Leases every ``period`` (5,000 small objects at full scale: a few ms of the
    server's time a minute), each Lease's age by the server's clock being the same host's."""
    while not stop.is_set():
        try:
            async with session.get(url + LEASES) as response:
                items = (await response.json())["items"] if response.status == 200 else []
                if response.status != 200:
                    result.failures.append(f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as error:
            result.failures.append(repr(error))
            items = []
        now = time.time()
        late = 0
        for lease in items:
            renewed = (lease.get("spec") or {}).get("renewTime")
            if not renewed:
                continue
            age = now - datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
            result.ages.append(age)
            if age > LEASE_GRACE:
                late += 1
                result.late_nodes.add(lease["metadata"]["name"])
        if items:
            result.samples += 1
            result.late_peak = max(result.late_peak, late)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)


async def loop_lag(result: list[float], stop: asyncio.Event, period: float = 0.05) -> None:
    """How late this process' own event loop wakes a 50 ms sleep: the share of a probe's latency
    that is the bench's loop (busy decoding the pod watch), not the server."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(period)
        result.append(time.perf_counter() - start - period)


@dataclass
class ListFigures:
    """The LISTs of all pods, timed to the last byte in a process of their own (list_probe)."""

    whole: float = float("nan")  # seconds to the whole list's last byte
    decoded: float = float("nan")  # then seconds to decode it (the client's share)
    items: int = 0
    pages: list[float] = field(default_factory=list)  # each page of 500 to its last byte
    page_decode: float = float("nan")  # mean seconds to decode a page
    cut: str = ""  # how the whole LIST ended when the server cut it short (its request deadline)


def list_probe(url: str, budget: float) -> ListFigures:
    """A LIST of every pod, then the same in pages of 500, with a blocking client in a fresh process:
    the time to each answer's last byte is the server's, not this benchmark's loop's, which is busy
    with its watch and probes (measured at 10%: 1.66 s for 15,000 pods from that loop, 0.17-0.21 s
    by curl at the same moment). Each body is decoded after its clock stops (the items counted, the
    continue token read), and the decode timed apart."""
    figures = ListFigures()
    deadline = time.perf_counter() + budget
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url + "/api/v1/pods", timeout=max(1.0, budget)) as response:
            body = response.read()
    except http.client.IncompleteRead as error:  # a saturated server's 60 s request deadline
        figures.cut = f"cut by the server after {len(error.partial) / 2**20:.0f} MB and " \
                      f"{time.perf_counter() - start:.1f} s"
    else:
        figures.whole = time.perf_counter() - start
        start = time.perf_counter()
        figures.items = len(orjson.loads(body)["items"])
        figures.decoded = time.perf_counter() - start
        del body
    token, decodes = "", []
    for _ in range(figures.items // 500 + 2 if figures.items else 1_000):
        if time.perf_counter() > deadline:
            break
        query = urllib.parse.urlencode({"limit": "500", **({"continue": token} if token else {})})
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/api/v1/pods?{query}", timeout=60) as response:
                body = response.read()
        except http.client.IncompleteRead:
            break  # the pages measured so far stand; the table says how many
        figures.pages.append(time.perf_counter() - start)
        start = time.perf_counter()
        token = orjson.loads(body)["metadata"].get("continue", "")
        decodes.append(time.perf_counter() - start)
        if not token:
            break
    figures.page_decode = statistics.fmean(decodes) if decodes else float("nan")
    return figures


async def list_figures(url: str, budget: float) -> ListFigures:
    """:func:`list_probe` in a child process (``--list-probe``), its figures back as JSON."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-P", __file__, "--list-probe", url, "--list-budget", str(budget),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        out, _ = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the LIST probe failed (exit {child.returncode})")
    return ListFigures(**orjson.loads(out))


# ------------------------------------------------------------------ the run

def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def mb(size: float) -> str:
    return f"{size / 2**20:.0f} MB"


@dataclass
class Heartbeat:
    """What the cluster costs with its nodes alive and no pod: every process's cores, the machine's
    busy share and the heartbeat requests a second, over ``seconds``."""

    seconds: float
    cores: dict[str, float]
    machine: float
    rates: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.cores.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in self.cores.items())
        rates = ", ".join(f"{name} {rate:.0f}/s" for name, rate in self.rates.items())
        return f"{self.total:.2f} core ({parts}); machine {self.machine:.0%} busy; {rates}"


async def heartbeat_alone(session: aiohttp.ClientSession, url: str, args: argparse.Namespace,
                          server: subprocess.Popen[bytes], agents: list[subprocess.Popen[bytes]]) -> Heartbeat:
    """The nodes' own load, measured before the first pod: the Lease renewals and the kubelets'
    Node GETs (``tryUpdateNodeStatus`` reads its Node every 10 s), the node lifecycle controller
    reading the Leases, the idle pod watches. A node's first renewal and first status update, which
    read what registration left (a GET of the Lease, a status PATCH), come within HEARTBEAT_SETTLE
    after the agents' pod watches have listed."""
    # The agents open their pod watches once their nodes are registered: a LIST each first (one per
    # node, or one per agent with --watch shared), not part of the steady heartbeat.
    lists = args.nodes if args.watch == "per-node" else args.agents
    waited = time.perf_counter() + 120.0
    while (await request_counts(session, url, args.server_workers))["LIST", "pods"] < lists \
            and time.perf_counter() < waited:
        await asyncio.sleep(2.0)
    await asyncio.sleep(HEARTBEAT_SETTLE)
    meter = CPUMeter(server.pid, [a.pid for a in agents])
    meter.read(starting=True)
    busy_before, counts_before = machine_busy(), await request_counts(session, url, args.server_workers)
    start = time.perf_counter()
    await asyncio.sleep(args.heartbeat_window)
    meter.read()
    busy_after, counts_after = machine_busy(), await request_counts(session, url, args.server_workers)
    seconds = time.perf_counter() - start
    cores = {name: spent / seconds for name, spent in meter.spent().items()}
    diff = counts_after - counts_before
    rates = {f"{verb} {resource}": n / seconds for (verb, resource), n in diff.most_common()
             if verb not in NOT_VERBS and n / seconds >= 1.0}
    machine = busy_share(busy_before, busy_after)
    return Heartbeat(seconds, cores, machine, rates)


def add_ceiling(table: Table, quiet: Heartbeat, cpu: dict[str, float], elapsed: float, running: int,
                renewals: float) -> None:
    """Where the rate comes from on this machine: every process's CPU per pod once the heartbeat's
    share of the run is taken off, and the rate that leaves with every core busy. The run itself
    cannot beat it; only cheaper pods or a cheaper heartbeat move it. The heartbeat's share is what it
    cost alone, scaled by the renewals the run actually served against the window's (``renewals``,
    a second): heartbeats that fell behind cost less, and charging them whole would leave the pods
    nothing. The ceiling is the heartbeat at its full rate, kept."""
    pods = max(running, 1)
    spent = sum(cpu.values())
    window_renewals = quiet.rates.get("PUT leases", 0.0)
    kept = min(renewals / window_renewals, 1.0) if window_renewals else 1.0
    per_pod = max(spent - quiet.total * kept * elapsed, 0.0) / pods
    table.add("CPU per pod, all processes", f"{spent / pods * 1000:.1f} ms; {per_pod * 1000:.1f} ms without the "
              f"heartbeat ({quiet.total:.2f} core x {kept:.0%} of its renewals served x {elapsed:.0f} s)")
    cores = float(os.cpu_count() or 1)
    spare = cores - quiet.total
    ceiling = max(spare, 0.0) / per_pod if per_pod else float("nan")
    table.add("rate the machine allows", f"{ceiling:.0f} pods/s ({spare:.2f} of {cores:.0f} cores left by the "
              f"heartbeat / {per_pod * 1000:.1f} ms a pod)", ">= 500 pods/s", ceiling >= 500)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append((name, value, target, "" if ok is None else ("PASS" if ok else "FAIL")))

    def print(self) -> None:
        widths = [max(len(row[i]) for row in self.rows) for i in range(4)]
        for row in self.rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def wait_nodes(session: aiohttp.ClientSession, url: str, count: int, deadline: float) -> int:
    """How many nodes are Ready, once all are or at the deadline."""
    ready = 0
    while time.perf_counter() < deadline:
        try:
            async with session.get(url + "/api/v1/nodes") as response:
                nodes = (await response.json())["items"]
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            await asyncio.sleep(2.0)  # a saturated server: do not pile more lists on it
            continue
        ready = sum(1 for n in nodes for c in (n.get("status") or {}).get("conditions") or []
                    if c["type"] == "Ready" and c["status"] == "True")
        if ready >= count:
            break
        await asyncio.sleep(2.0)
    return ready


async def scenario(args: argparse.Namespace, url: str, server: subprocess.Popen[bytes],
                   agents: list[subprocess.Popen[bytes]], db: Path) -> None:
    table = Table()
    total = args.nodes * args.pods_per_node
    deadline = time.perf_counter() + args.timeout
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        start = time.perf_counter()
        # a third of the run at most: then go on with the nodes that are Ready, and say so
        ready = await wait_nodes(session, url, args.nodes, start + args.timeout / 3)
        table.add("nodes Ready", f"{ready}/{args.nodes} in {time.perf_counter() - start:.1f} s", "all",
                  ready >= args.nodes)
        if not ready:
            table.print()
            return
        async with session.post(url + "/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}) as response:
            assert response.status == 201, await response.text()
        sizes = [args.pods_per_deployment] * (total // args.pods_per_deployment)
        if total % args.pods_per_deployment:
            sizes.append(total % args.pods_per_deployment)
        names = [f"density-{i}" for i in range(len(sizes))]
        for name in names:
            async with session.post(url + DEPLOYMENTS, json=deployment(name)) as response:
                assert response.status == 201, await response.text()
        quiet = await heartbeat_alone(session, url, args, server, agents) if args.heartbeat_window > 0 else None
        if quiet is not None:
            table.add(f"heartbeat alone, before any pod ({quiet.seconds:.0f} s)", quiet.describe())
        async with session.get(url + PODS, params={"limit": "1"}) as response:
            revision = (await response.json())["metadata"]["resourceVersion"]
        stages = Stages()
        watcher = asyncio.create_task(follow(session, url, stages, revision))
        samples, stop = Samples(), asyncio.Event()
        meter = CPUMeter(server.pid, [a.pid for a in agents])
        meter.read(starting=True)
        busy_before = machine_busy()
        sampler = asyncio.create_task(sample(server.pid, db, samples, meter, stop))
        probes, lags = Probe(), list[float]()
        prober = asyncio.create_task(probe(session, url, probes, stop))
        lagger = asyncio.create_task(loop_lag(lags, stop))
        heartbeats = LeaseAges()
        aging = asyncio.create_task(lease_ages(session, url, heartbeats, stop))
        counts_before = await request_counts(session, url, args.server_workers)

        start = time.perf_counter()
        for name, size in zip(names, sizes, strict=True):
            async with session.patch(f"{url}{DEPLOYMENTS}/{name}/scale", data=orjson.dumps(
                    {"spec": {"replicas": size}}), headers=MERGE) as response:
                assert response.status == 200, await response.text()
        finished = await until(stages, lambda: len(stages.running) >= total, deadline)
        elapsed = time.perf_counter() - start
        meter.read()
        cpu = meter.spent()
        busy_after = machine_busy()
        running = len(stages.running)
        if not finished:
            print(f"TIMEOUT after {elapsed:.0f} s: {running}/{total} pods Running; partial figures follow")
        # settle: writes that follow Running (none expected) land before the counters are read
        await asyncio.sleep(min(5.0, max(0.0, deadline - time.perf_counter())))
        # a run that timed out has a saturated server: its figures get a minute each, not ten
        post_wait = 600.0 if finished else 60.0
        counts_after = await request_counts(session, url, args.server_workers, post_wait)
        stop.set()
        await asyncio.gather(prober, sampler, lagger, aging, return_exceptions=True)

        table.add("pods Running", f"{running}/{total} in {elapsed:.1f} s", "all within 300 s",
                  finished and elapsed <= 300)
        table.add("end-to-end rate", f"{running / elapsed:.0f} pods/s", ">= 500 pods/s", running / elapsed >= 500)
        p99, worst = quantile(probes.latencies, 0.99), max(probes.latencies, default=float("nan"))
        table.add("API single-object p99 (GET/PUT ConfigMap)",
                  f"{p99 * 1000:.1f} ms over {len(probes.latencies)} calls, {probes.errors} errors", "< 100 ms",
                  p99 < 0.1 and not probes.errors)
        table.add("API single-object max", f"{worst * 1000:.0f} ms", "< 1 s (SLO)", worst < 1.0)
        server_p99 = server_quantile(counts_before, counts_after, 0.99)
        table.add("  same calls, server side (histogram)", f"p99 <= {server_p99 * 1000:.0f} ms", "< 100 ms",
                  server_p99 < 0.1)
        lease_p99 = server_quantile(counts_before, counts_after, 0.99, LEASE_BUCKET)
        renewals = lease_puts_per_second(counts_before, counts_after, elapsed)
        table.add("Lease renewals during the run",
                  f"{renewals:.0f}/s of {args.nodes / 10:.0f}/s due; server p99 <= {lease_p99 * 1000:.0f} ms")
        if heartbeats.ages:
            table.add("  Lease age (now - renewTime)", f"p99 {quantile(heartbeats.ages, 0.99):.1f} s, max "
                      f"{max(heartbeats.ages):.1f} s over {heartbeats.samples} samples; older than "
                      f"{LEASE_GRACE:.0f} s: {len(heartbeats.late_nodes)} nodes (at most {heartbeats.late_peak} "
                      "at once)", f"none > {LEASE_GRACE:.0f} s (NotReady)", not heartbeats.late_nodes)
        if heartbeats.failures:
            table.add("  Lease samples failed", f"{len(heartbeats.failures)}, the last: {heartbeats.failures[-1]}")
        table.add("  bench's own loop lag", f"p99 {quantile(lags, 0.99) * 1000:.0f} ms, "
                  f"max {max(lags, default=float('nan')) * 1000:.0f} ms", "(client share)", True)
        try:
            listed = await asyncio.wait_for(list_figures(url, min(300.0, post_wait)), post_wait + 60)
            if listed.cut:
                table.add("LIST all pods (to the last byte)", listed.cut, "< 5 s", False)
            else:
                table.add("LIST all pods (to the last byte)", f"{listed.whole:.2f} s ({listed.items} pods)", "< 5 s",
                          listed.whole < 5.0)
                table.add("  then decoding it (client's share)", f"{listed.decoded:.2f} s", "", None)
            if listed.pages:
                page_p99 = quantile(listed.pages, 0.99)
                table.add("paged LIST limit=500, per page", f"mean {statistics.fmean(listed.pages) * 1000:.1f} ms, "
                          f"p99 {page_p99 * 1000:.1f} ms ({len(listed.pages)} pages; decoding one "
                          f"{listed.page_decode * 1000:.1f} ms more)", "< 50 ms", page_p99 < 0.05)
            else:  # the whole LIST used up the time for both: say so rather than end without a table
                table.add("paged LIST limit=500, per page", "not measured (the whole LIST ran past its deadline)",
                          "< 50 ms", False)
        except (RuntimeError, TimeoutError) as error:
            table.add("LIST all pods (to the last byte)", f"failed: {error!r}", "< 5 s", False)
        samples.rss_peak = max(samples.rss_peak, rss_bytes(server.pid))
        table.add("server RSS peak", mb(samples.rss_peak), "< 1.5 GB", samples.rss_peak < 1.5 * 2**30)
        wal_now = file_size(db.with_name(db.name + "-wal"))
        table.add("SQLite file / WAL", f"db {mb(file_size(db))} (peak {mb(samples.db_peak)}), WAL {mb(wal_now)} "
                  f"(peak {mb(samples.wal_peak)})", "WAL peak < 512 MB", samples.wal_peak < 512 * 2**20)

        # where the time goes
        for process, spent in cpu.items():
            table.add(f"CPU s, {process}", f"{spent:.1f} s ({spent / elapsed:.2f} of a core over {elapsed:.0f} s)")
        diff = counts_after - counts_before
        writes = {key: n for key, n in diff.items() if key[0] in WRITE_VERBS}
        pods = max(running, 1)
        for (verb, resource), n in sorted(writes.items(), key=lambda item: -item[1]):
            per = f"{n / pods:.3f} per pod" if not resource.startswith("leases") else \
                f"{n / elapsed:.0f}/s (heartbeats)"
            table.add(f"writes {verb} {resource}", f"{n} ({per})")
        pod_writes = sum(n for (_, resource), n in writes.items()
                         if not resource.startswith(("leases", "configmaps", "nodes")))
        table.add("writes per pod, all but leases/nodes/probe", f"{pod_writes / pods:.2f}")
        # which priority level served what (with --callers classified: the nodes' heartbeats in
        # node-high, their pod traffic in system, the scheduler's and controllers' in workload-high)
        levels = sorted({level for (kind, level) in diff if kind in (APF_DISPATCHED, APF_REJECTED)},
                        key=lambda level: -diff[APF_DISPATCHED, level])
        table.add("priority levels: dispatched (rejected)", ", ".join(
            f"{level} {diff[APF_DISPATCHED, level]} ({diff[APF_REJECTED, level]})" for level in levels))
        reads = sum(n for key, n in diff.items() if key[0] not in (*WRITE_VERBS, *NOT_VERBS))
        table.add("reads (GET/LIST/WATCH) during the run", f"{reads}")
        # An informer of all pods that relists at this scale reads every pod again (the kubelets'
        # lists are by node, through an index); one that fell behind and was ended resumes instead.
        table.add("pod LISTs / pod watchers ended for falling behind",
                  f"{diff['LIST', 'pods']} / {diff[TERMINATED, 'pods']}")
        stage_times = {
            "create (scale → pod seen)": [stages.created[n] - start for n in stages.running],
            "schedule (seen → bound)": [stages.scheduled[n] - stages.created[n] for n in stages.running],
            "run (bound → Running)": [stages.running[n] - stages.scheduled[n] for n in stages.running],
        }
        slowest = max(stage_times, key=lambda s: statistics.fmean(stage_times[s]) if stage_times[s] else 0.0)
        for stage, values in stage_times.items():
            if values:
                table.add(f"stage {stage}", f"mean {statistics.fmean(values):.1f} s, "
                          f"p99 {quantile(values, 0.99):.1f} s, max {max(values):.1f} s"
                          + ("  <- slowest" if stage == slowest else ""))
        server_cpu = cpu["server"]
        machine = busy_share(busy_before, busy_after)
        table.add("server CPU-bound?", f"server {server_cpu / elapsed:.2f} of a core over the run; all "
                  f"{os.cpu_count()} cores {machine:.0%} busy; load {os.getloadavg()[1]:.1f}",
                  "bound when ~1.0 of a core with cores to spare")
        if quiet is not None:
            add_ceiling(table, quiet, cpu, elapsed, running, renewals)
        # none lost or doubled
        names_seen = len(stages.created)
        bound_nodes = set(stages.nodes.values())
        table.add("pods created / unique uids / nodes used",
                  f"{names_seen} / {len(set(stages.uids.values()))} / {len(bound_nodes)}")
        table.add("benchmark's pod watch cut and relisted", f"{stages.watch_restarts} times")
        table.add("relists failed and retried", f"{stages.relist_errors} times")
        watcher.cancel()
    table.print()


def watchdog(server: subprocess.Popen[bytes], limit_mb: float, stop: threading.Event) -> None:
    """Every 2 s: the server's RSS; a line every 30 s, so a run that stalls before its table still
    says how far it got. Above ``limit_mb`` the run ends (SIGTERM to this process: the process
    groups are killed on the way out), so a runaway server cannot take the shared machine down."""
    start = time.perf_counter()
    peak = 0.0
    while not stop.wait(2.0):
        rss = rss_bytes(server.pid) / 2**20
        peak = max(peak, rss)
        elapsed = time.perf_counter() - start
        if int(elapsed) % 30 < 2:
            print(f"[{elapsed:5.0f} s] server RSS {rss:.0f} MB (peak {peak:.0f}), load {os.getloadavg()[0]:.1f}",
                  flush=True)
        if limit_mb and rss > limit_mb:
            print(f"STOPPED: server RSS {rss:.0f} MB > --rss-limit {limit_mb:.0f} MB after {elapsed:.0f} s",
                  flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def server_flags(callers: str, secure_port: int, insecure_port: int, token_file: Path) -> list[str]:
    """``exempt``: plain HTTP on ``insecure_port``, where every caller is ``system:masters``, which
    priority and fairness exempts: heartbeats, pod traffic and the controllers' writes are served in
    the order they come. ``classified`` and ``per-agent``: the defaults (HTTPS on ``secure_port``, the
    embedded scheduler and controller manager under their own certificates, the controllers under
    their service accounts) and the nodes in ``system:nodes`` (:func:`agent_connection`), so each
    request lands in the level Kubernetes' suggested FlowSchemas give it (the Leases and Nodes in
    ``node-high``, the pods' status in ``system``, the controllers and the scheduler in
    ``workload-high``); the benchmark's own calls (probes, LISTs, scaling) go to the insecure port
    (``system:unsecured``, exempt, as clusterloader runs as an admin). AlwaysAllow: the caller is
    what is measured, not RBAC."""
    if callers == "exempt":
        return ["--port", str(insecure_port), *OPEN_FLAGS]
    return ["--port", str(secure_port), "--authorization-mode=AlwaysAllow", "--token-auth-file", str(token_file),
            "--insecure-port", str(insecure_port), "--insecure-bind-address", "127.0.0.1"]


def agent_node_names(nodes: int, agents: int) -> list[list[str]]:
    """Each agent's simulated nodes: ``--node-name sim<i> --simulate N`` names them ``sim<i>-0000``..."""
    share = -(-nodes // agents)
    return [[f"sim{i}-{j:04d}" for j in range(min(share, nodes - i * share))] for i in range(agents)]


def write_token_file(path: Path, names: list[list[str]]) -> None:
    """The server's ``--token-auth-file`` and the agents' ``--simulate-token-file`` in one: a token for
    each node's kubelet user (``system:node:<name>``, as a kubelet's own credential names it) and one
    for each agent process (``density-agent-<i>``, for what it does as itself)."""
    rows = [f'{secrets.token_urlsafe(24)},density-agent-{i},agent-{i},"system:nodes"' for i in range(len(names))]
    rows += [f'{secrets.token_urlsafe(24)},system:node:{name},node-{name},"system:nodes"'
             for agent in names for name in agent]
    path.write_text("\n".join(rows) + "\n")


def agent_connection(callers: str, data_dir: str, index: int, url: str, secure_port: int,
                     token_file: Path) -> list[str]:
    """The agent's flags to reach the server. ``classified``: the CA and a token for
    ``density-agent-<index>``, and each node's own token (``--simulate-token-file``): every node is
    ``system:node:<name>``, its own user and so its own flow. ``per-agent``: a client certificate for
    ``density-agent-<index>`` in ``system:nodes``, for all of the agent's nodes."""
    if callers == "exempt":
        return ["--server", url]
    kubeconfig = Path(data_dir) / f"agent{index}.conf"
    kubeconfig.write_bytes(subprocess.run(
        [sys.executable, "-P", "-m", "pilothouse", "kubeconfig", "--data-dir", data_dir, "--user",
         f"density-agent-{index}", "--group", "system:nodes", "--server", f"https://127.0.0.1:{secure_port}"],
        check=True, capture_output=True).stdout)
    if callers == "per-agent":
        return ["--kubeconfig", str(kubeconfig)]
    # No client certificate: the server tries x509 before tokens, as kube-apiserver's union does.
    config = yaml.safe_load(kubeconfig.read_bytes())
    token = next(r.token for r in read_token_file(token_file) if r.user == f"density-agent-{index}")
    config["users"][0]["user"] = {"token": token}
    kubeconfig.write_text(yaml.safe_dump(config))
    return ["--kubeconfig", str(kubeconfig), "--simulate-token-file", str(token_file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--pods-per-deployment", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=1, help="agent processes the nodes are split over")
    parser.add_argument("--watch", choices=["per-node", "shared"], default="per-node",
                        help="simulated nodes' pod watches: one per node (as kubelets) or one per agent")
    parser.add_argument("--log", default=os.devnull, help="where the server's and agents' output goes")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run, in seconds")
    parser.add_argument("--heartbeat-window", type=float, default=20.0,
                        help="seconds of the nodes' heartbeat measured alone before the pods (0: not measured)")
    parser.add_argument("--server-workers", type=int, default=1, help="the API server's --workers")
    parser.add_argument("--callers", choices=["classified", "per-agent", "exempt"], default="classified",
                        help="classified: the server's defaults (HTTPS, every caller its own identity, each node "
                             "its own kubelet user, so priority and fairness puts each where Kubernetes does); "
                             "per-agent: the same with one identity per agent process for all its nodes; exempt: "
                             "plain HTTP, everyone system:masters (the runs before the sixteenth session)")
    parser.add_argument("--rss-limit", type=float, default=6000.0,
                        help="MB: end the run when the server's RSS passes this (0: no limit)")
    parser.add_argument("--list-probe", metavar="URL", help=argparse.SUPPRESS)  # the child of list_figures
    parser.add_argument("--list-budget", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list_probe:
        print(orjson.dumps(list_probe(args.list_probe, args.list_budget).__dict__).decode())
        return
    port = free_port()
    print(f"density: {args.nodes} nodes x {args.pods_per_node} pods = {args.nodes * args.pods_per_node} pods, "
          f"{args.agents} agent process(es), watch {args.watch}; load {os.getloadavg()[0]:.1f}", flush=True)
    # Every process in its own group, killed however the run ends (SIGINT, SIGTERM, --timeout, an
    # error): an interrupted run used to leave a server of several GB behind.
    with tempfile.TemporaryDirectory() as data_dir, open(args.log, "ab") as log, ProcessGroup() as group:
        # -P (passed on by the server to the scheduler and controller manager): the pilothouse on
        # PYTHONPATH, the tree measured, comes first, not the working directory's (a checkout).
        secure_port = free_port()
        names = agent_node_names(args.nodes, args.agents)
        token_file = Path(data_dir) / "tokens.csv"
        write_token_file(token_file, names)
        server = group.start([sys.executable, "-P", "-m", "pilothouse", "server", "--data-dir", data_dir,
                              "--workers", str(args.server_workers),
                              *server_flags(args.callers, secure_port, port, token_file)], stdout=log)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        agents = [group.start([sys.executable, "-P", "-m", "pilothouse", "agent",
                               *agent_connection(args.callers, data_dir, i, url, secure_port, token_file),
                               "--simulate", str(len(names[i])),
                               "--simulate-watch", args.watch, "--node-name", f"sim{i}",
                               "--port", str(free_port()), "--root-dir", f"{data_dir}/agent{i}"], stdout=log)
                  for i in range(args.agents)]
        stop = threading.Event()
        threading.Thread(target=watchdog, args=(server, args.rss_limit, stop), daemon=True).start()
        try:
            asyncio.run(scenario(args, url, server, agents, Path(data_dir) / "state.db"))
        finally:
            stop.set()

if __name__ == "__main__":
    main()
