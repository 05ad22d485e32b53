"""Client certificate rotation of a joined agent (kubelet's ``--rotate-certificates``): with the server's
signer issuing 30-second certificates (``--cluster-signing-duration``, kube-controller-manager's flag),
the agent asks for a new certificate with its own node identity before the old one expires, the
approving controller auto-approves it (``selfnodeclient``), and the same agent process goes on
renewing its Lease past the first certificate's expiry: no restart."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import ServerProcess, start_server_process, terminate
from tests.join.test_join import agent_args, token_create, wait_ready

LIFE = 30


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("rotation"), secure=True,
                                  extra=("--cluster-signing-duration", f"{LIFE}s"))
    yield server
    server.stop()


def current_certificate(root: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / "pki" / "kubelet-client-current.pem").read_bytes())


def node_csrs(server: ServerProcess, node: str) -> list[dict[str, object]]:
    """The issued CSRs the node made with its own identity (rotations, not the bootstrap)."""
    items = json.loads(server.kubectl("get", "csr", "-o", "json").stdout)["items"]
    return [csr for csr in items if csr["spec"].get("username") == f"system:node:{node}"
            and (csr.get("status") or {}).get("certificate")]


def lease_renewed(server: ServerProcess, node: str) -> datetime.datetime:
    lease = json.loads(server.kubectl("get", "lease", "-n", "kube-node-lease", node, "-o", "json").stdout)
    return datetime.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))


def test_agent_rotates_its_client_certificate_without_a_restart(short_lived: ServerProcess, tmp_path: Path) -> None:
    name, root = "rotating", tmp_path / "rotating"
    token = token_create(short_lived)
    log_path = tmp_path / "agent.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "pilothouse", *agent_args(short_lived, token, name, root)],
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(short_lived, name, agent, log_path)
            first = current_certificate(root)
            life = first.not_valid_after_utc - first.not_valid_before_utc
            assert life <= datetime.timedelta(seconds=LIFE + 5), life  # the signer honoured the flag
            assert first.subject.rfc4514_string() == f"CN=system:node:{name},O=system:nodes"

            # Two rotations: the second is asked for with the first rotated certificate.
            serials = {first.serial_number}
            deadline = time.monotonic() + 3 * LIFE
            while len(serials) < 3 and time.monotonic() < deadline:
                assert agent.poll() is None, log_path.read_text()
                serials.add(current_certificate(root).serial_number)
                time.sleep(1)
            assert len(serials) >= 3, log_path.read_text()
            rotated = node_csrs(short_lived, name)
            assert len(rotated) >= 2, rotated
            for csr in rotated:
                conditions = {c["type"]: c for c in csr["status"]["conditions"]}  # type: ignore[index]
                assert conditions["Approved"]["reason"] == "AutoApproved"
                issued = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))  # type: ignore[index]
                assert issued.subject == first.subject
            # Each new certificate came before its predecessor ran out (70-90% of its life).
            assert current_certificate(root).not_valid_before_utc < first.not_valid_after_utc + life

            # Still the same process, still heartbeating after the first certificate expired.
            expired = first.not_valid_after_utc
            deadline = time.monotonic() + 30
            while lease_renewed(short_lived, name) <= expired and time.monotonic() < deadline:
                time.sleep(1)
            assert lease_renewed(short_lived, name) > expired, log_path.read_text()
            assert agent.poll() is None, log_path.read_text()
            ready = short_lived.kubectl("get", "node", name, "-o",
                                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout
            assert ready == "True"
        finally:
            terminate(agent)
