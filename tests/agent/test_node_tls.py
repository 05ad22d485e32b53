"""The agent's port over TLS (issue 11): only the API server's client certificate, or a user whom a
SubjectAccessReview allows ``nodes/proxy``, gets logs/exec; ``kubectl logs``/``exec`` still work
through a ``--secure`` API server with RBAC, which dials the agent over HTTPS with its
``apiserver-kubelet-client`` certificate. The agent runs in-process over a fake runtime (no podman)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilothouse.apiserver.authchain import AuthOptions
from pilothouse.apiserver.serve import RunningServer, ServerConfig, start_server
from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient
from pilothouse.components.agent import servingtls
from pilothouse.components.agent.server import StreamingServer
from pilothouse.components.agent.streaming.lookup import RuntimeLabelLookup
from pilothouse.machinery import pki
from pilothouse.machinery.kubeconfig import build_kubeconfig
from tests.agent.test_streaming_proxy import FakeRuntime
from tests.conftest import ServerProcess, free_port, start_server_process, terminate

KUBECTL = "/usr/bin/kubectl"


class Cluster:
    def __init__(self, api: RunningServer, agent: StreamingServer, client: APIClient, tmp: Path) -> None:
        self.api, self.agent, self.client, self.tmp = api, agent, client, tmp

    async def kubectl(self, kubeconfig: Path, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(kubeconfig), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode or 0, out.decode(), err.decode()

    def client_context(self, cert_key: pki.CertKey | None) -> ssl.SSLContext:
        """A client that does not verify the agent (its certificate is self-signed), with ``cert_key``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if cert_key is not None:
            cert, key = self.tmp / "client.crt", self.tmp / "client.key"
            cert.write_bytes(cert_key.cert_pem)
            key.write_bytes(cert_key.key_pem)
            context.load_cert_chain(cert, key)
        return context

    async def agent_get(self, path: str, cert_key: pki.CertKey | None, token: str = "") -> tuple[int, str]:
        connector = aiohttp.TCPConnector(ssl=self.client_context(cert_key))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(connector=connector) as session, session.get(
                f"https://127.0.0.1:{self.agent.port}{path}", headers=headers) as response:
            return response.status, await response.text()


async def _bind(client: APIClient, role: str, user: str) -> None:
    rbac = "rbac.authorization.k8s.io"
    await client.request("POST", f"/apis/{rbac}/v1/clusterrolebindings", body={
        "metadata": {"name": f"{user}-{role}".replace(":", "-")},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": rbac, "kind": "User", "name": user}]})


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    api = await start_server(ServerConfig(tmp_path / "server", port=0, secure=True,
                                          auth=AuthOptions(authorization_mode="RBAC")))
    assert api.pki is not None
    admin = load_kubeconfig(api.config.kubeconfig_path)
    node_conf = api.component_kubeconfig("kubelet", "system:node:n1", ["system:nodes"])
    client = APIClient(load_kubeconfig(node_conf), user_agent="test-agent")
    async with APIClient(admin) as setup:
        # The agent reviews requests to its port through the API server (kubelet's webhook authn/authz),
        # which RBAC lets it do through system:auth-delegator.
        await _bind(setup, "system:auth-delegator", "system:node:n1")
        runtime = FakeRuntime()
        cert, key = servingtls.self_signed_serving(tmp_path / "agent" / "pki", "n1", ["127.0.0.1"])
        reviews = servingtls.Reviews(client, "n1")
        agent = StreamingServer(runtime, RuntimeLabelLookup(runtime), address="127.0.0.1",  # type: ignore[arg-type]
                                port=0, ssl_context=servingtls.server_context(cert, key, api.pki.ca_bundle()),
                                middlewares=(servingtls.auth_middleware(reviews.authenticate, reviews.authorize),))
        await agent.start()
        await setup.request("POST", "/api/v1/nodes", body={"metadata": {"name": "n1"}})
        await setup.request("PATCH", "/api/v1/nodes/n1/status", content_type="application/merge-patch+json", body={
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}}}})
        # No controller manager in-process: the ServiceAccount admission needs the default account.
        await setup.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                            body={"metadata": {"name": "default"}})
        await setup.request("POST", "/api/v1/namespaces/default/pods", body={
            "metadata": {"name": "web"}, "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "i"}]}})
    yield Cluster(api, agent, client, tmp_path)
    await agent.stop()
    await client.close()
    await api.stop()


async def test_kubectl_logs_and_exec_work_through_the_api_server(cluster: Cluster) -> None:
    admin = cluster.api.config.kubeconfig_path
    code, out, err = await cluster.kubectl(admin, "logs", "web", "-c", "app")
    assert (code, out) == (0, "app-2 line1\n"), err
    # The fake runtime's exec echoes stdin (empty here) until it closes, answers 'bye' on stderr and
    # exits with the command's last word.
    code, out, err = await cluster.kubectl(admin, "exec", "-i", "web", "-c", "app", "--", "true", "0")
    assert code == 0 and "bye" in err, (out, err)
    code, out, err = await cluster.kubectl(admin, "exec", "-i", "web", "-c", "app", "--", "false", "3")
    assert code == 3, (out, err)


async def test_the_agent_port_refuses_clients_without_the_right_certificate(cluster: Cluster) -> None:
    path = "/containerLogs/default/web/app"
    assert await cluster.agent_get("/healthz", None) == (200, "ok")
    # No certificate and no token: kubelet's 401.
    assert await cluster.agent_get(path, None) == (401, "Unauthorized")
    # A certificate from another CA fails the handshake.
    now = datetime.datetime.now(datetime.UTC)
    stranger = pki.issue_client(pki.new_ca("other-ca", now), "kube-apiserver-kubelet-client", ["system:masters"], now)
    with pytest.raises(aiohttp.ClientError):
        await cluster.agent_get(path, stranger)
    # A cluster-CA user whom RBAC does not allow nodes/proxy: the SubjectAccessReview says no.
    assert cluster.api.pki is not None
    alice = cluster.api.pki.issue_client("alice", ["dev"])
    assert await cluster.agent_get(path, alice) == (
        403, "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)")
    # Granted nodes/proxy (system:kubelet-api-admin), the same certificate gets the logs.
    async with APIClient(load_kubeconfig(cluster.api.config.kubeconfig_path)) as admin:
        await _bind(admin, "system:kubelet-api-admin", "alice")
    assert await cluster.agent_get(path, alice) == (200, "app-2 line1\n")
    # The API server's own client certificate is allowed.
    directory = cluster.api.pki.directory
    apiserver = pki.load_cert_key((directory / "apiserver-kubelet-client.crt").read_bytes(),
                                  (directory / "apiserver-kubelet-client.key").read_bytes())
    assert await cluster.agent_get(path, apiserver) == (200, "app-2 line1\n")


async def test_a_bearer_token_is_reviewed_then_authorised(cluster: Cluster) -> None:
    path = "/containerLogs/default/web/app"
    async with APIClient(load_kubeconfig(cluster.api.config.kubeconfig_path)) as admin:
        answer = await admin.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token",
                                     body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                           "spec": {"expirationSeconds": 600}})
    token = answer["status"]["token"]
    assert await cluster.agent_get(path, None, "not-a-token") == (401, "Unauthorized")
    assert await cluster.agent_get(path, None, token) == (
        403, "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, subresource=proxy)")


# ---------------------------------------------------------------------- TLS bootstrap: CSR approve + sign


def _node_csr(name: str, common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]}})


@pytest.fixture(scope="module")
def secure_rbac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("bootstrap"), extra=("--authorization-mode", "RBAC"),
                                  secure=True)
    # No grant to the controller manager: its CSR controllers run as certificate-controller
    # (--use-service-account-credentials), which the bootstrap policy binds.
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    server.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
        "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef",
                       "usage-bootstrap-authentication": "true",
                       "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
    # What kubeadm binds for TLS bootstrapping: bootstrappers may create CSRs and have node client ones approved.
    server.kubectl("create", "clusterrolebinding", "kubelet-bootstrap", "--clusterrole=system:node-bootstrapper",
                   "--group=system:bootstrappers")
    server.kubectl("create", "clusterrolebinding", "node-autoapprove-bootstrap",
                   "--clusterrole=system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                   "--group=system:bootstrappers")
    yield server
    server.stop()


def _bootstrap_kubeconfig(server: ServerProcess) -> Path:
    """The bootstrap kubeconfig: the CA and the token, no client certificate."""
    bootstrap = build_kubeconfig(server.url, user="kubelet-bootstrap",
                                 ca_pem=(server.data_dir / "pki" / "ca.crt").read_bytes())
    bootstrap["users"][0]["user"] = {"token": "abcdef.0123456789abcdef"}
    path = server.data_dir / "bootstrap-kubelet.conf"
    path.write_text(json.dumps(bootstrap))
    return path


def test_a_bootstrap_token_csr_is_approved_and_signed(secure_rbac: ServerProcess) -> None:
    server = secure_rbac
    path = _bootstrap_kubeconfig(server)
    server.kubectl("create", "-f", "-", input=_node_csr("node-csr-boot", "system:node:boot"),
                   env={"KUBECONFIG": str(path)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        csr = json.loads(server.kubectl("get", "csr", "node-csr-boot", "-o", "json").stdout)
        if (csr.get("status") or {}).get("certificate"):
            break
        time.sleep(0.5)
    listed = server.kubectl("get", "csr", "node-csr-boot").stdout
    assert "Approved,Issued" in listed and "system:bootstrap:abcdef" in listed, listed
    assert [c["reason"] for c in csr["status"]["conditions"]] == ["AutoApproved"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    ca = x509.load_pem_x509_certificate((server.data_dir / "pki" / "ca.crt").read_bytes())
    assert pki.issued_by(cert, ca)
    assert pki.client_identity(cert) == ("system:node:boot", ("system:nodes",))


def test_a_csr_from_someone_without_the_nodeclient_grant_stays_pending(secure_rbac: ServerProcess) -> None:
    server = secure_rbac
    server.kubectl("create", "clusterrole", "csr-creator", "--verb=create,get",
                   "--resource=certificatesigningrequests.certificates.k8s.io")
    server.kubectl("create", "clusterrolebinding", "carol-csr", "--clusterrole=csr-creator", "--user=carol")
    carol = server.data_dir / "carol.conf"
    carol.write_bytes(subprocess.run([sys.executable, "-m", "pilothouse", "kubeconfig", "--data-dir",
                                      str(server.data_dir), "--user", "carol"], check=True, capture_output=True).stdout)
    server.kubectl("create", "-f", "-", input=_node_csr("node-csr-carol", "system:node:carol"),
                   env={"KUBECONFIG": str(carol)})
    # A request the approver may approve goes through within seconds (the test above); this one does not.
    server.kubectl("create", "-f", "-", input=_node_csr("node-csr-late", "system:node:late"),
                   env={"KUBECONFIG": str(carol)})
    time.sleep(5)
    for name in ("node-csr-carol", "node-csr-late"):
        csr = json.loads(server.kubectl("get", "csr", name, "-o", "json").stdout)
        assert not (csr.get("status") or {}).get("conditions"), csr
        assert "Pending" in server.kubectl("get", "csr", name).stdout


def test_an_agent_with_only_a_bootstrap_kubeconfig_gets_its_certificate_and_registers(
        secure_rbac: ServerProcess, tmp_path: Path) -> None:
    server = secure_rbac
    # Without the Node authorizer (not this test's subject), RBAC grants nodes what they need.
    server.kubectl("create", "clusterrolebinding", "nodes-as-nodes", "--clusterrole=system:node",
                   "--group=system:nodes", check=False)
    root = tmp_path / "agent"
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "agent", "--bootstrap-kubeconfig", str(_bootstrap_kubeconfig(server)),
         "--node-name", "boot-agent", "--runtime", "simulated", "--port", str(free_port()), "--root-dir", str(root)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 60, ""
        while time.monotonic() < deadline and ready != "True":
            ready = server.kubectl("get", "node", "boot-agent", "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False).stdout
            time.sleep(0.5)
        assert ready == "True", (tmp_path / "agent.log").read_text()
    finally:
        terminate(agent)
        log.close()
    current = root / "pki" / "kubelet-client-current.pem"
    cert = x509.load_pem_x509_certificate(current.read_bytes())
    assert pki.client_identity(cert) == ("system:node:boot-agent", ("system:nodes",))
    assert load_kubeconfig(root / "kubelet.conf").server == server.url
    csrs = server.kubectl("get", "csr").stdout
    assert any("system:bootstrap:abcdef" in line and "Approved,Issued" in line and "client-kubelet" in line
               for line in csrs.splitlines() if "node-csr-boot" not in line), csrs
