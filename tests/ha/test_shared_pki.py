"""Two secure API servers over one etcd share the cluster's CA and service-account key
(``--cluster-pki-from``, as ``kubeadm join --control-plane`` copies them): the kubeconfig one server
wrote works against the other with the real kubectl, a service-account token issued by one
authenticates at the other (TokenReview through the official client), each server serves its own
certificate from the one CA, and a data dir holding another cluster's CA is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from kubernetes import client

from pilothouse.apiserver.pkidir import ClusterPKI
from pilothouse.machinery import pki
from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

NO_COMPONENTS = ("--disable", "scheduler,controller-manager")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as cluster:
        yield cluster


@pytest.fixture
def pair(tmp_path: Path, etcd: EtcdCluster) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = start_server_process(tmp_path / "a", extra=("--datastore-endpoint", etcd.endpoint, *NO_COMPONENTS),
                             secure=True)
    try:
        b = start_server_process(tmp_path / "b", extra=("--datastore-endpoint", etcd.endpoint, *NO_COMPONENTS,
                                                        "--cluster-pki-from", str(a.data_dir / "pki")), secure=True)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def kubectl(kubeconfig: Path, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent / "home")}
    return subprocess.run([KUBECTL, "--server", server, *args], capture_output=True, text=True, env=env, timeout=60)


def served_certificate(server: ServerProcess) -> x509.Certificate:
    import ssl

    pem = ssl.get_server_certificate(("127.0.0.1", server.port))
    return x509.load_pem_x509_certificate(pem.encode())


def test_servers_share_ca_and_service_account_key(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    ca_a, ca_b = (s.data_dir / "pki" / "ca.crt" for s in pair)
    assert ca_a.read_bytes() == ca_b.read_bytes()
    assert (a.data_dir / "pki" / "sa.key").read_bytes() == (b.data_dir / "pki" / "sa.key").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_a.read_bytes())
    serving_a, serving_b = served_certificate(a), served_certificate(b)
    assert serving_a.serial_number != serving_b.serial_number  # each its own serving certificate...
    assert pki.issued_by(serving_a, ca) and pki.issued_by(serving_b, ca)  # ...from the one CA

    # A's kubeconfig (its CA, its admin certificate) against B, verified: no --insecure-skip-tls-verify.
    made = kubectl(a.kubeconfig, b.url, "create", "serviceaccount", "robot", "-n", "default")
    assert made.returncode == 0, made.stderr
    whoami = kubectl(a.kubeconfig, b.url, "auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert "system:masters" in json.loads(whoami.stdout)["status"]["userInfo"]["groups"]

    # A token A issues authenticates at B: kubectl with the token alone, and B's TokenReview.
    token = kubectl(a.kubeconfig, a.url, "create", "token", "robot", "-n", "default").stdout.strip()
    assert token
    bare = a.data_dir / "bare.conf"
    bare.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [
        {"name": "c", "cluster": {"server": b.url, "certificate-authority": str(ca_a)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    as_robot = kubectl(bare, b.url, "auth", "whoami", "-o", "json")
    assert as_robot.returncode == 0, as_robot.stderr
    assert json.loads(as_robot.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"

    configuration = client.Configuration()
    configuration.host = b.url
    configuration.ssl_ca_cert = str(ca_a)
    configuration.cert_file = str(_written(a, "client.crt", "client-certificate-data"))
    configuration.key_file = str(_written(a, "client.key", "client-key-data"))
    with client.ApiClient(configuration) as api:
        review = client.AuthenticationV1Api(api).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    assert review.status.authenticated is True
    assert review.status.user.username == "system:serviceaccount:default:robot"


def _written(server: ServerProcess, name: str, field: str) -> Path:
    """A file holding one base64 field of the server's kubeconfig user (the official client wants files)."""
    import base64

    import yaml

    user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
    path = server.data_dir / name
    path.write_bytes(base64.b64decode(user[field]))
    return path


def test_a_data_dir_of_another_cluster_is_refused(tmp_path: Path) -> None:
    first, other = ClusterPKI(tmp_path / "first" / "pki"), ClusterPKI(tmp_path / "other" / "pki")
    for made in (first, other):
        made.ensure("127.0.0.1", "10.96.0.1")
        (made.directory / "sa.key").write_bytes(b"not read before the CA check fails\n")
    result = subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(tmp_path / "other"),
                             "--port", str(free_port()), "--cluster-pki-from", str(first.directory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "belongs to another cluster" in result.stderr and "Traceback" not in result.stderr, result.stderr
    # Nothing of the other cluster was overwritten.
    assert (other.directory / "ca.crt").read_bytes() != (first.directory / "ca.crt").read_bytes()
