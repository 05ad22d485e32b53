"""Joining with a token (issue 12): ``pilothouse token create`` against a real ``--secure`` server, then
``pilothouse agent --server https://... --token T`` verifies the CA against the token's hash, gets its
node certificate through the CSR bootstrap and registers Ready; a wrong token, a wrong CA hash and a
deleted token are refused with a clear message and exit 1, before any Node or CSR exists. Over plain
HTTP the join works with the token checked. The agents run the simulated runtime (no containers)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from pilothouse.machinery import bootstraptoken, pki
from tests.conftest import ServerProcess, free_port, start_server_process, terminate


def pilothouse(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilothouse", *args], capture_output=True, text=True,
                          timeout=timeout)


def token_create(server: ServerProcess, *args: str) -> str:
    result = pilothouse("token", "create", "--data-dir", str(server.data_dir), *args)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr  # the bootstrap signer signed it
    return result.stdout.strip()


def agent_args(server: ServerProcess, token: str, name: str, root: Path, *extra: str) -> list[str]:
    return ["agent", "--server", server.url, "--token", token, "--node-name", name, "--runtime", "simulated",
            "--port", str(free_port()), "--root-dir", str(root), *extra]


def wait_ready(server: ServerProcess, name: str, agent: subprocess.Popen[bytes], log: Path) -> None:
    deadline, ready = time.monotonic() + 60, ""
    while time.monotonic() < deadline and ready != "True":
        assert agent.poll() is None, log.read_text()
        ready = server.kubectl("get", "node", name, "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False).stdout
        time.sleep(0.5)
    assert ready == "True", log.read_text()


def join(server: ServerProcess, token: str, name: str, tmp_path: Path) -> None:
    """Run an agent joining with ``token`` until its Node is Ready, then stop it."""
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "pilothouse",
                                  *agent_args(server, token, name, tmp_path / name)],
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(server, name, agent, log_path)
        finally:
            terminate(agent)


def refused(server: ServerProcess, token: str, name: str, root: Path) -> str:
    result = pilothouse(*agent_args(server, token, name, root, "--discovery-timeout", "3"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert server.kubectl("get", "node", name, check=False).returncode != 0, "a refused agent registered"
    return result.stderr


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("join-secure"), secure=True)
    yield server
    server.stop()


def test_token_create_prints_a_join_token_pinning_the_cluster_ca(secure: ServerProcess) -> None:
    joined = bootstraptoken.JoinToken.parse(token_create(secure, "--ttl", "2h", "--description", "test"))
    ca_pem = (secure.data_dir / "pki" / "ca.crt").read_bytes()
    assert joined.ca_hash == bootstraptoken.ca_cert_hash(ca_pem)
    # Independently of our helper: kubeadm's pin is the SHA-256 of the CA's DER SubjectPublicKeyInfo.
    openssl = subprocess.run(
        "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex",
        shell=True, input=ca_pem, capture_output=True, check=True)
    assert joined.ca_hash.removeprefix("sha256:") == openssl.stdout.decode().split()[-1]

    secret = json.loads(secure.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{joined.token_id}",
                                       "-o", "json").stdout)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert bootstraptoken.secret_data(secret, "token-secret") == joined.secret
    assert bootstraptoken.secret_data(secret, "usage-bootstrap-authentication") == "true"
    assert bootstraptoken.secret_data(secret, "auth-extra-groups") == \
        "system:bootstrappers:kubeadm:default-node-token"
    # kubectl authenticates with the bare bootstrap token as system:bootstrap:<id>.
    whoami = secure.kubectl("auth", "whoami", "-o", "json", f"--token={joined.bootstrap_token}",
                            env={"KUBECONFIG": str(_without_user(secure))})
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:bootstrap:{joined.token_id}"
    assert "system:bootstrappers:kubeadm:default-node-token" in user["groups"]
    listed = pilothouse("token", "list", "--data-dir", str(secure.data_dir)).stdout
    assert any(line.startswith(f"{joined.token_id}.<secret>") and "test" in line and "authentication,signing"
               in line for line in listed.splitlines()), listed


def anonymous_get(server: ServerProcess, path: str) -> int:
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(server.url + path, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _without_user(server: ServerProcess) -> Path:
    """The server and its CA, no credentials of its own (kubectl --token supplies them)."""
    path = server.data_dir / "anonymous.conf"
    ca = server.data_dir / "pki" / "ca.crt"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server.url, "certificate-authority": str(ca)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    return path


def test_an_agent_joins_with_the_token_and_registers_ready(secure: ServerProcess, tmp_path: Path) -> None:
    token = token_create(secure)
    token_id = bootstraptoken.JoinToken.parse(token).token_id
    join(secure, token, "joined-1", tmp_path)
    # Its node credentials came from a CSR the token made, approved and signed by the controller manager.
    current = tmp_path / "joined-1" / "pki" / "kubelet-client-current.pem"
    cert = x509.load_pem_x509_certificate(current.read_bytes())
    assert pki.client_identity(cert) == ("system:node:joined-1", ("system:nodes",))
    assert pki.issued_by(cert, x509.load_pem_x509_certificate((secure.data_dir / "pki" / "ca.crt").read_bytes()))
    csrs = secure.kubectl("get", "csr").stdout
    assert any(f"system:bootstrap:{token_id}" in line and "Approved,Issued" in line for line in csrs.splitlines()), \
        csrs

    # Restarted after its token is gone, the agent runs on the credentials it obtained (kubelet's rule:
    # a valid kubeconfig skips the bootstrap), where a token check would refuse it within a second.
    assert pilothouse("token", "delete", "--data-dir", str(secure.data_dir), token_id).returncode == 0
    with open(tmp_path / "restart.log", "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "pilothouse", *agent_args(
            secure, token, "joined-1", tmp_path / "joined-1", "--discovery-timeout", "1")],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(5)
            assert agent.poll() is None, (tmp_path / "restart.log").read_text()
        finally:
            terminate(agent)


def test_a_wrong_token_a_wrong_ca_hash_and_a_deleted_token_are_refused(secure: ServerProcess,
                                                                       tmp_path: Path) -> None:
    good = bootstraptoken.JoinToken.parse(token_create(secure))
    wrong_secret = bootstraptoken.JoinToken(good.token_id, "0" * 16, good.ca_hash)
    message = refused(secure, str(wrong_secret), "wrong-secret", tmp_path / "a")
    assert "the token is wrong" in message and good.token_id in message, message

    wrong_hash = bootstraptoken.JoinToken(good.token_id, good.secret, "sha256:" + "ab" * 32)
    message = refused(secure, str(wrong_hash), "wrong-hash", tmp_path / "b")
    assert "does not match the token's CA hash" in message and good.ca_hash in message, message

    message = refused(secure, good.bootstrap_token, "no-hash", tmp_path / "c")
    assert "needs a token that pins the CA" in message, message

    deleted = pilothouse("token", "delete", "--data-dir", str(secure.data_dir), good.token_id)
    assert deleted.returncode == 0, deleted.stderr
    message = refused(secure, str(good), "deleted", tmp_path / "d")
    assert "unknown to the server" in message, message
    # Nothing was asked of the server by the refused agents.
    assert "wrong-" not in secure.kubectl("get", "csr", "-o", "name").stdout


def test_joining_a_plain_http_server_checks_the_token(tmp_path: Path) -> None:
    server = start_server_process(tmp_path / "plain")
    try:
        token = token_create(server)
        assert bootstraptoken.TOKEN_RE.match(token), f"no CA to pin over plain HTTP: {token}"
        message = refused(server, token[:7] + "0" * 16, "plain-wrong", tmp_path / "wrong")
        assert "the token is wrong" in message, message
        join(server, token, "plain-joined", tmp_path)
    finally:
        server.stop()


def test_an_expired_token_loses_its_signature_and_is_deleted(secure: ServerProcess) -> None:
    token_id = bootstraptoken.JoinToken.parse(token_create(secure, "--ttl", "3s")).token_id
    signature = f"jws-kubeconfig-{token_id}"

    def cluster_info() -> dict[str, str]:
        return dict(json.loads(secure.kubectl("get", "configmap", "-n", "kube-public", "cluster-info", "-o",
                                              "json").stdout).get("data") or {})

    assert signature in cluster_info()
    deadline = time.monotonic() + 20
    while signature in cluster_info() or secure.kubectl(
            "get", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the expired token is still signed or stored"
        time.sleep(0.5)


def test_joining_under_node_and_rbac_authorization(tmp_path: Path) -> None:
    """What ``token create`` grants (anonymous cluster-info, CSR creation and auto-approval for its group)
    is enough for a join under the default ``--authorization-mode Node,RBAC``, with every controller on
    its own service account's credentials (the bootstrap signer and the CSR controllers included)."""
    server = start_server_process(tmp_path / "rbac", secure=True)
    try:
        token = token_create(server)
        # The anonymous read of cluster-info is all a stranger gets.
        assert anonymous_get(server, "/api/v1/namespaces/kube-public/configmaps/cluster-info") == 200
        assert anonymous_get(server, "/api/v1/namespaces/kube-public/configmaps") == 403
        join(server, token, "rbac-joined", tmp_path)
    finally:
        server.stop()
