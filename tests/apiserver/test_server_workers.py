"""``pilothouse server --workers 2``: two request-serving processes over one SQLite file keep every
semantic of one (cli/workers.py, store/_sqlite_peers.py, docs/decisions/server-workers.md).

The kernel spreads connections over the workers (SO_REUSEPORT); each response names its worker
(``X-Pilothouse-Worker``), so the tests pick keep-alive connections on a chosen worker and write
through one while they read or watch through the other.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from signal import SIGKILL
from typing import Any

import pytest
import yaml

from tests.conftest import ServerProcess, start_server_process

NS = "/api/v1/namespaces/default"


class Conn:
    """One keep-alive HTTP connection, and the worker that accepted it."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, token: str = "") -> None:
        self.http = (http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=tls) if tls
                     else http.client.HTTPConnection("127.0.0.1", port, timeout=30))
        self.token = token
        self.worker = self.call("GET", "/version")[1]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.http.request(method, path, None if body is None else json.dumps(body), headers)
        response = self.http.getresponse()
        data = response.read()
        return response.status, response.getheader("X-Pilothouse-Worker") or "", json.loads(data) if data else None

    def close(self) -> None:
        self.http.close()


def connections(port: int, per_worker: int, workers: int = 2, attempts: int = 400,
                tls: ssl.SSLContext | None = None, token: str = "") -> dict[str, list[Conn]]:
    """``per_worker`` connections accepted by each worker (new connections until each has its share)."""
    found: dict[str, list[Conn]] = {str(i): [] for i in range(workers)}
    for _ in range(attempts):
        if all(len(conns) >= per_worker for conns in found.values()):
            return found
        conn = Conn(port, tls, token)
        if len(found[conn.worker]) < per_worker:
            found[conn.worker].append(conn)
        else:
            conn.close()
    raise AssertionError(f"the kernel did not spread {attempts} connections over {workers} workers: "
                         f"{ {w: len(c) for w, c in found.items()} }")


def configmap(name: str, value: str = "v") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}}


@pytest.fixture(scope="module")
def workers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="module")
def workers(workers_dir: Path) -> Iterator[ServerProcess]:
    policy = workers_dir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                      "rules": [{"level": "Metadata", "resources": [{"resources": ["configmaps"]}]}]}))
    proc = start_server_process(workers_dir / "data", extra=(
        "--workers", "2", "--disable", "scheduler,controller-manager",
        "--service-cluster-ip-range", "10.97.0.0/25",
        "--audit-log-path", str(workers_dir / "audit.log"), "--audit-policy-file", str(policy)))
    # The leader answers ready before its sibling listens: wait for a connection on worker 1 (a new
    # interpreter that imports, opens the store and bootstraps: seconds, more on a loaded machine).
    deadline = time.monotonic() + 120
    while True:
        try:
            for conns in connections(proc.port, 1).values():
                conns[0].close()
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    yield proc
    proc.stop()


def test_kubectl_apply_get_delete(workers: ServerProcess, tmp_path: Path) -> None:
    for i in range(6):  # each kubectl run opens new connections: both workers serve some
        name = f"kubectl-{i}"
        manifest = json.dumps(configmap(name, str(i)))
        assert "created" in workers.kubectl("apply", "-f", "-", input=manifest).stdout
        got = json.loads(workers.kubectl("get", "configmap", name, "-o", "json").stdout)
        assert got["data"] == {"k": str(i)}
        manifest = json.dumps(configmap(name, f"{i}-changed"))
        assert "configured" in workers.kubectl("apply", "-f", "-", input=manifest).stdout
        got = json.loads(workers.kubectl("get", "configmap", name, "-o", "json").stdout)
        assert got["data"] == {"k": f"{i}-changed"}
        assert "deleted" in workers.kubectl("delete", "configmap", name).stdout
        assert workers.kubectl("get", "configmap", name, check=False).returncode != 0


def _create_many(conns: list[Conn], names: list[str]) -> list[tuple[str, int, str]]:
    """Create ``names`` over ``conns`` in parallel (one thread per connection): (name, rv, worker)."""
    share = [names[i::len(conns)] for i in range(len(conns))]

    def run(conn: Conn, mine: list[str]) -> list[tuple[str, int, str]]:
        out = []
        for name in mine:
            status, worker, body = conn.call("POST", f"{NS}/configmaps", configmap(name))
            assert status == 201, body
            out.append((name, int(body["metadata"]["resourceVersion"]), worker))
        return out

    with ThreadPoolExecutor(len(conns)) as pool:
        return [row for rows in pool.map(run, conns, share) for row in rows]


def test_concurrent_creates_get_unique_dense_revisions(workers: ServerProcess) -> None:
    by_worker = connections(workers.port, 8)
    conns = by_worker["0"] + by_worker["1"]
    created = _create_many(conns, [f"dense-{i}" for i in range(400)])
    revisions = sorted(rv for _, rv, _ in created)
    assert len(set(revisions)) == 400
    # Nothing else writes in this server (no components): the creates took consecutive revisions.
    assert revisions[-1] - revisions[0] == 399
    assert {w for _, _, w in created} == {"0", "1"}
    # Each worker lists all of them, whichever wrote them.
    for worker in ("0", "1"):
        status, _, body = by_worker[worker][0].call("GET", f"{NS}/configmaps?labelSelector=")
        assert status == 200
        assert {f"dense-{i}" for i in range(400)} <= {item["metadata"]["name"] for item in body["items"]}
    for conn in conns:
        conn.close()


def _watch(port: int, worker: str, path: str) -> tuple[Conn, http.client.HTTPResponse]:
    conn = connections(port, 1)[worker][0]
    conn.http.request("GET", path)
    response = conn.http.getresponse()
    assert response.status == 200
    assert response.getheader("X-Pilothouse-Worker") == worker
    return conn, response


@pytest.mark.parametrize(("watcher", "writer"), [("1", "0"), ("0", "1")])
def test_watch_on_one_worker_sees_every_write_through_the_other(workers: ServerProcess, watcher: str,
                                                                writer: str) -> None:
    label = f"watch-{watcher}"
    start = connections(workers.port, 1)[writer][0]
    _, _, listing = start.call("GET", f"{NS}/configmaps?limit=1")
    conn, stream = _watch(workers.port, watcher, f"{NS}/configmaps?watch=true&labelSelector=w%3D{label}"
                                                  f"&resourceVersion={listing['metadata']['resourceVersion']}")
    writers = connections(workers.port, 4)[writer]
    expected: list[tuple[str, str, int]] = []

    def write(w: Conn, index: int) -> list[tuple[str, str, int]]:
        out = []
        for i in range(index, 120, len(writers)):
            obj = configmap(f"{label}-{i}")
            obj["metadata"]["labels"] = {"w": label}
            status, worker, body = w.call("POST", f"{NS}/configmaps", obj)
            assert (status, worker) == (201, writer)
            out.append(("ADDED", obj["metadata"]["name"], int(body["metadata"]["resourceVersion"])))
            if i % 3 == 0:
                status, _, body = w.call("DELETE", f"{NS}/configmaps/{obj['metadata']['name']}")
                assert status == 200
                out.append(("DELETED", obj["metadata"]["name"], int(body["metadata"]["resourceVersion"])))
        return out

    with ThreadPoolExecutor(len(writers)) as pool:
        for rows in pool.map(write, writers, range(len(writers))):
            expected += rows
    expected.sort(key=lambda row: row[2])
    seen: list[tuple[str, str, int]] = []
    while len(seen) < len(expected):
        line = stream.readline()
        assert line, f"watch ended after {len(seen)} of {len(expected)} events"
        event = json.loads(line)
        meta = event["object"]["metadata"]
        seen.append((event["type"], meta["name"], int(meta["resourceVersion"])))
    assert seen == expected  # every write, in revision order, none missing or repeated
    conn.close()
    for w in writers:
        w.close()


def test_conflicting_updates_get_409_across_workers(workers: ServerProcess) -> None:
    by_worker = connections(workers.port, 1)
    w0, w1 = by_worker["0"][0], by_worker["1"][0]
    status, _, created = w0.call("POST", f"{NS}/configmaps", configmap("conflict"))
    assert status == 201
    stale = created["metadata"]["resourceVersion"]
    fresh = configmap("conflict", "through-1")
    fresh["metadata"]["resourceVersion"] = stale
    status, _, updated = w1.call("PUT", f"{NS}/configmaps/conflict", fresh)
    assert status == 200
    late = configmap("conflict", "through-0")
    late["metadata"]["resourceVersion"] = stale
    status, _, body = w0.call("PUT", f"{NS}/configmaps/conflict", late)
    assert status == 409 and body["reason"] == "Conflict"
    # Racing updates from one resourceVersion, through both workers: exactly one wins each round.
    current = updated["metadata"]["resourceVersion"]
    for round_ in range(10):
        bodies = []
        for value in ("a", "b"):
            obj = configmap("conflict", f"{value}{round_}")
            obj["metadata"]["resourceVersion"] = current
            bodies.append(obj)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda c, b: c.call("PUT", f"{NS}/configmaps/conflict", b), (w0, w1), bodies))
        assert sorted(status for status, _, _ in results) == [200, 409]
        current = next(body for status, _, body in results if status == 200)["metadata"]["resourceVersion"]


def test_no_cluster_ip_or_node_port_handed_out_twice(workers: ServerProcess) -> None:
    by_worker = connections(workers.port, 6)
    conns = by_worker["0"] + by_worker["1"]

    def create(conn: Conn, index: int) -> list[dict[str, Any]]:
        out = []
        for i in range(index, 90, len(conns)):
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                       "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "name": "b"}]}}
            service["spec"]["ports"][0]["name"] = "a"
            status, _, body = conn.call("POST", f"{NS}/services", service)
            assert status == 201, body
            out.append(body["spec"])
        return out

    with ThreadPoolExecutor(len(conns)) as pool:
        specs = [spec for specs in pool.map(create, conns, range(len(conns))) for spec in specs]
    ips = [spec["clusterIP"] for spec in specs]
    ports = [port["nodePort"] for spec in specs for port in spec["ports"]]
    # 90 of the /25's 125 free addresses: without one allocator over both workers, two would collide.
    assert len(set(ips)) == len(ips) == 90
    assert len(set(ports)) == len(ports) == 180


def _worker_pid(leader: int, index: int) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == leader and b"--worker-index" in args \
                and args[args.index(b"--worker-index") + 1] == str(index).encode():
            return int(entry.name)
    raise AssertionError(f"no worker {index} under {leader}")


def test_killing_a_worker_loses_no_acknowledged_write(workers: ServerProcess) -> None:
    victim = _worker_pid(workers.process.pid, 1)
    conns = connections(workers.port, 4)
    acknowledged: list[str] = []
    failed = 0

    def write(first: Conn, index: int) -> None:
        nonlocal failed
        conn: Conn | None = first
        for i in range(index, 160, 8):
            name = f"kill-{i}"
            if i == 40:
                os.kill(victim, SIGKILL)
            try:
                if conn is None:  # a new connection: the kernel gives it to a live worker
                    conn = Conn(workers.port)
                status, _, body = conn.call("POST", f"{NS}/configmaps", configmap(name))
            except (OSError, http.client.HTTPException):
                failed += 1  # not acknowledged: it may or may not have been written
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            assert status == 201, body
            acknowledged.append(name)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, conns["0"] + conns["1"], range(8)))
    assert failed > 0  # the victim's connections did break
    # The leader and the restarted worker both hold every acknowledged write.
    deadline = time.monotonic() + 120
    while True:
        try:
            fresh = connections(workers.port, 1)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the supervisor did not restart worker 1"
            time.sleep(0.5)
    assert _worker_pid(workers.process.pid, 1) != victim
    for conns_of_worker in fresh.values():
        status, _, body = conns_of_worker[0].call("GET", f"{NS}/configmaps")
        assert status == 200
        assert set(acknowledged) <= {item["metadata"]["name"] for item in body["items"]}


def test_secure_defaults_across_workers(tmp_path: Path) -> None:
    """HTTPS with Node,RBAC (the defaults): the admin's client certificate and a ServiceAccount token
    minted through one worker authenticate on the other (one PKI, one signing key)."""
    data_dir = tmp_path / "secure"
    proc = start_server_process(data_dir, extra=("--workers", "2", "--disable", "scheduler,controller-manager"),
                                secure=True)
    try:
        user = yaml.safe_load(proc.kubeconfig.read_text())["users"][0]["user"]
        for name in ("client-certificate-data", "client-key-data"):
            (tmp_path / name).write_bytes(base64.b64decode(user[name]))
        tls = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
        tls.load_cert_chain(tmp_path / "client-certificate-data", tmp_path / "client-key-data")
        deadline = time.monotonic() + 120
        while True:
            try:
                admin = connections(proc.port, 1, tls=tls)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "worker 1 did not start"
                time.sleep(0.5)
        status, _, _ = admin["0"][0].call("POST", f"{NS}/serviceaccounts",
                                          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "w"}})
        assert status == 201
        status, _, body = admin["0"][0].call("POST", f"{NS}/serviceaccounts/w/token",
                                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                              "spec": {"expirationSeconds": 3600}})
        assert status == 201, body
        token = body["status"]["token"]
        as_sa = connections(proc.port, 1, tls=ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt")),
                            token=token)
        for worker in ("0", "1"):
            status, _, review = as_sa[worker][0].call(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            assert status == 201, review
            assert review["status"]["userInfo"]["username"] == "system:serviceaccount:default:w"
            # RBAC on each worker: the account has no grant to list Secrets.
            status, _, _ = as_sa[worker][0].call("GET", f"{NS}/secrets")
            assert status == 403
    finally:
        proc.stop()


def test_a_write_through_one_worker_is_read_at_once_through_the_other(workers: ServerProcess) -> None:
    by_worker = connections(workers.port, 1)
    for i in range(40):
        writer, reader = (by_worker["0"][0], by_worker["1"][0]) if i % 2 else (by_worker["1"][0], by_worker["0"][0])
        status, _, created = writer.call("POST", f"{NS}/configmaps", configmap(f"ryw-{i}"))
        assert status == 201
        status, _, got = reader.call("GET", f"{NS}/configmaps/ryw-{i}")
        assert status == 200 and got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        # A list through the other worker is at least as new as the write.
        status, _, listing = reader.call("GET", f"{NS}/configmaps?limit=1")
        assert int(listing["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])


def test_each_worker_writes_its_own_audit_log(workers: ServerProcess, workers_dir: Path) -> None:
    """Worker 1 audits into ``audit.log.worker-1`` beside the leader's ``audit.log`` (one writer per file)."""
    by_worker = connections(workers.port, 1)
    created = {}
    for worker, conns in by_worker.items():
        name = f"audited-{worker}"
        status, answered_by, _ = conns[0].call("POST", f"{NS}/configmaps", configmap(name))
        assert (status, answered_by) == (201, worker)
        created[worker] = name
        conns[0].close()
    logs = {"0": workers_dir / "audit.log", "1": workers_dir / "audit.log.worker-1"}
    deadline = time.monotonic() + 30
    while True:
        seen = {worker: _audited_names(path) for worker, path in logs.items()}
        if all(created[w] in seen[w] for w in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for worker, name in created.items():
        assert name in seen[worker], f"worker {worker}'s create of {name} is not in {logs[worker].name}"
        other = "1" if worker == "0" else "0"
        assert name not in seen[other], f"{name} was audited by both workers"


def _audited_names(path: Path) -> set[str]:
    """Names of the configmaps created in ``path``'s ResponseComplete events."""
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef", {})
        if event.get("verb") == "create" and event.get("stage") == "ResponseComplete" and ref.get("name"):
            names.add(ref["name"])
    return names
