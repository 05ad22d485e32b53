"""``pilothouse server --secure``: HTTPS with a cluster CA, x509 client certificates, kubeconfigs.

Against the real kubectl and the official ``kubernetes`` client over TLS, with the kubeconfigs the
server and ``pilothouse kubeconfig`` write.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from pilothouse.apiserver.pkidir import ClusterPKI, TLSOptions
from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import pki
from pilothouse.machinery.kubeconfig import build_kubeconfig
from tests.conftest import ServerProcess, free_port, start_server_process, terminate

NO_COMPONENTS = ("--disable", "scheduler,controller-manager")


def _https_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def start_secure_server(data_dir: Path, extra: tuple[str, ...] = (), ca: Path | None = None) -> ServerProcess:
    return start_server_process(data_dir, extra=extra, secure=True, ca=ca)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A secure server with its embedded scheduler and controller manager."""
    server = start_secure_server(tmp_path_factory.mktemp("secure"),
                                 ("--tls-san", "api.example.test", "--tls-san", "203.0.113.7"))
    yield server
    server.stop()


def _whoami(server: ServerProcess, kubeconfig: Path) -> dict[str, Any]:
    result = server.kubectl("auth", "whoami", "-o", "json", env={"KUBECONFIG": str(kubeconfig)})
    user: dict[str, Any] = json.loads(result.stdout)["status"]["userInfo"]
    return user


def _peer_certificate(port: int, ca: Path, server_hostname: str = "127.0.0.1") -> x509.Certificate:
    """The serving certificate, read through a verifying handshake for ``server_hostname``."""
    context = _https_context(ca)
    with socket.create_connection(("127.0.0.1", port)) as sock, \
            context.wrap_socket(sock, server_hostname=server_hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


# ---------------------------------------------------------------- serving


def test_serves_https_with_the_cluster_ca(secure: ServerProcess) -> None:
    ca = secure.data_dir / "pki" / "ca.crt"
    with urllib.request.urlopen(secure.url + "/version", context=_https_context(ca)) as response:
        assert json.loads(response.read())["minor"] == "32"
    # Plain HTTP on the secure port gets no API answer.
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{secure.port}/version", timeout=5).read()
    # Private keys are private.
    for key in ("ca.key", "apiserver.key", "apiserver-kubelet-client.key"):
        assert (secure.data_dir / "pki" / key).stat().st_mode & 0o077 == 0


def test_serving_certificate_names(secure: ServerProcess) -> None:
    ca = secure.data_dir / "pki" / "ca.crt"
    cert = _peer_certificate(secure.port, ca)
    dns, ips = pki.san_names(cert)
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            "localhost", socket.gethostname().lower()} <= dns
    # 10.96.0.1: the first address of the default service range, the `kubernetes` Service's.
    assert {"127.0.0.1", "10.96.0.1"} <= ips
    # --tls-san: more names and addresses, sorted into their kinds.
    assert "api.example.test" in dns and "203.0.113.7" in ips
    # A client that knows the server by its in-cluster name verifies the certificate.
    assert _peer_certificate(secure.port, ca, "kubernetes.default.svc").serial_number == cert.serial_number
    # The API server's client certificate towards agents, as kubeadm names it.
    kubelet_client = x509.load_pem_x509_certificate(
        (secure.data_dir / "pki" / "apiserver-kubelet-client.crt").read_bytes())
    assert pki.client_identity(kubelet_client) == ("kube-apiserver-kubelet-client", ("system:masters",))


# ---------------------------------------------------------------- kubeconfigs and clients


def test_kubectl_with_the_written_kubeconfig(secure: ServerProcess) -> None:
    written = yaml.safe_load(secure.kubeconfig.read_text())
    assert written["clusters"][0]["cluster"]["server"].startswith("https://")
    assert written["clusters"][0]["cluster"]["certificate-authority-data"]
    assert written["users"][0]["user"]["client-certificate-data"]
    secure.kubectl("get", "nodes")
    secure.kubectl("create", "namespace", "tls-kubectl")
    secure.kubectl("create", "configmap", "c1", "-n", "tls-kubectl", "--from-literal=a=b")
    assert "c1" in secure.kubectl("get", "configmaps", "-n", "tls-kubectl").stdout
    secure.kubectl("delete", "configmap", "c1", "-n", "tls-kubectl")
    user = _whoami(secure, secure.kubeconfig)
    assert user["username"] == "kubernetes-admin"
    assert user["groups"] == ["system:masters", "system:authenticated"]


def test_official_client_with_the_written_kubeconfig(secure: ServerProcess) -> None:
    api_client = k8s_config.new_client_from_config(config_file=str(secure.kubeconfig))
    try:
        core = k8s.CoreV1Api(api_client)
        names = {n.metadata.name for n in core.list_namespace().items}
        assert {"default", "kube-system"} <= names
        core.create_namespaced_config_map("default", k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="from-python"), data={"k": "v"}))
        assert core.read_namespaced_config_map("from-python", "default").data == {"k": "v"}
        core.delete_namespaced_config_map("from-python", "default")
        review = k8s.AuthenticationV1Api(api_client).create_self_subject_review(
            k8s.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"))
        assert review.status.user_info.username == "kubernetes-admin"
    finally:
        api_client.close()


def test_pilothouse_client_with_a_kubeconfig(secure: ServerProcess) -> None:
    async def read() -> str:
        async with APIClient(load_kubeconfig(secure.kubeconfig)) as client:
            namespace = await client.get(resource("", "v1", "namespaces"), "default")
            return str(namespace["metadata"]["name"])

    assert asyncio.run(read()) == "default"


def test_a_client_without_a_certificate_is_anonymous(secure: ServerProcess) -> None:
    # (kubectl with no credentials at all stops to prompt for a user name, so the official client asks.)
    configuration = k8s.Configuration(host=secure.url)
    configuration.ssl_ca_cert = str(secure.data_dir / "pki" / "ca.crt")
    with k8s.ApiClient(configuration) as api_client, pytest.raises(k8s.ApiException) as refused:
        k8s.AuthenticationV1Api(api_client).create_self_subject_review(
            k8s.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"))
    # Not system:admin (the plain-HTTP loopback identity): kube-apiserver's anonymous user, which the
    # default RBAC policy lets see only system:public-info-viewer's paths (basic-user is for the
    # authenticated), so even asking who it is is refused, as kube-apiserver refuses it.
    assert refused.value.status == 403
    assert ('User "system:anonymous" cannot create resource "selfsubjectreviews" in API group '
            '"authentication.k8s.io"') in json.loads(refused.value.body)["message"]


def test_a_certificate_from_another_ca_is_refused(secure: ServerProcess, tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    other_ca = pki.new_ca("impostor", now)
    forged = pki.issue_client(other_ca, "kubernetes-admin", ["system:masters"], now)
    ca = (secure.data_dir / "pki" / "ca.crt").read_bytes()
    forged_config = tmp_path / "forged.yaml"
    forged_config.write_text(yaml.safe_dump(build_kubeconfig(secure.url, ca_pem=ca, cert_pem=forged.cert_pem,
                                                             key_pem=forged.key_pem)))
    result = secure.kubectl("get", "namespaces", env={"KUBECONFIG": str(forged_config)}, check=False)
    # The handshake fails: no HTTP answer at all (under TLS 1.3 the client learns it on its first read,
    # as a reset, an EOF or the alert, whichever comes first).
    assert result.returncode != 0
    assert "Error from server" not in result.stderr
    assert "default" not in result.stdout
    # The same through Python's ssl: the handshake (or the first read, under TLS 1.3) fails.
    (tmp_path / "forged.crt").write_bytes(forged.cert_pem)
    (tmp_path / "forged.key").write_bytes(forged.key_pem)
    context = _https_context(secure.data_dir / "pki" / "ca.crt")
    context.load_cert_chain(tmp_path / "forged.crt", tmp_path / "forged.key")
    with pytest.raises((ssl.SSLError, OSError)):
        urllib.request.urlopen(secure.url + "/api/v1/namespaces", context=context, timeout=5).read()


def test_kubeconfig_command_issues_a_user_certificate(secure: ServerProcess, tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "pilothouse", "kubeconfig", "--user", "alice", "--group", "dev",
         "--data-dir", str(secure.data_dir)], capture_output=True, text=True, check=True, timeout=30).stdout
    alice = tmp_path / "alice.yaml"
    alice.write_text(printed)
    document = yaml.safe_load(printed)
    assert document["clusters"][0]["cluster"]["server"] == secure.url
    user = _whoami(secure, alice)
    assert user["username"] == "alice"
    assert user["groups"] == ["dev", "system:authenticated"]


# ---------------------------------------------------------------- embedded components


def test_component_kubeconfigs_name_their_components(secure: ServerProcess) -> None:
    assert _whoami(secure, secure.data_dir / "scheduler.conf")["username"] == "system:kube-scheduler"
    assert (_whoami(secure, secure.data_dir / "controller-manager.conf")["username"]
            == "system:kube-controller-manager")


def test_embedded_scheduler_and_controllers_work_over_https(secure: ServerProcess) -> None:
    api_client = k8s_config.new_client_from_config(config_file=str(secure.kubeconfig))
    try:
        core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        core.create_node(k8s.V1Node(
            metadata=k8s.V1ObjectMeta(name="tls-node", labels={"kubernetes.io/hostname": "tls-node"}),
            status=k8s.V1NodeStatus(capacity=capacity, allocatable=capacity, conditions=[
                k8s.V1NodeCondition(type="Ready", status="True", reason="KubeletReady")])))
        labels = {"app": "tls-web"}
        apps.create_namespaced_deployment("default", k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name="tls-web"),
            spec=k8s.V1DeploymentSpec(replicas=2, selector=k8s.V1LabelSelector(match_labels=labels),
                                      template=k8s.V1PodTemplateSpec(
                                          metadata=k8s.V1ObjectMeta(labels=labels),
                                          spec=k8s.V1PodSpec(containers=[
                                              k8s.V1Container(name="web", image="registry.local/web:1")])))))
        deadline = time.monotonic() + 40
        bound: list[str] = []
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod("default", label_selector="app=tls-web").items
            bound = [p.spec.node_name for p in pods if p.spec.node_name]
            if len(pods) == 2 and bound == ["tls-node", "tls-node"]:
                break
            time.sleep(0.3)
        assert bound == ["tls-node", "tls-node"]
    finally:
        api_client.close()


def test_agent_registers_over_https_as_its_node(secure: ServerProcess, tmp_path: Path) -> None:
    kubelet_conf = tmp_path / "kubelet.conf"
    kubelet_conf.write_text(subprocess.run(
        [sys.executable, "-m", "pilothouse", "kubeconfig", "--user", "system:node:tls-agent", "--group",
         "system:nodes", "--data-dir", str(secure.data_dir)], capture_output=True, text=True, check=True,
        timeout=30).stdout)
    assert _whoami(secure, kubelet_conf)["groups"] == ["system:nodes", "system:authenticated"]
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "agent", "--kubeconfig", str(kubelet_conf), "--node-name", "tls-agent",
         "--runtime", "simulated", "--port", str(free_port()), "--root-dir", str(tmp_path / "agent")],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        ready = ""
        while time.monotonic() < deadline and ready != "True":
            result = secure.kubectl("get", "node", "tls-agent", "-o",
                                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            ready = result.stdout.strip()
            time.sleep(0.3)
        assert ready == "True", (tmp_path / "agent.log").read_text()
    finally:
        terminate(agent)
        log.close()


# ---------------------------------------------------------------- renewal


def test_renewal_decision_with_an_injected_clock(tmp_path: Path) -> None:
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    clock = [now]
    cluster_pki = ClusterPKI(tmp_path / "pki", TLSOptions(), clock=lambda: clock[0])
    cluster_pki.ensure("127.0.0.1", "10.96.0.1")
    first = x509.load_pem_x509_certificate((tmp_path / "pki" / "apiserver.crt").read_bytes())
    assert first.not_valid_after_utc == now + pki.LEAF_VALIDITY
    clock[0] = now + datetime.timedelta(days=200)  # 165 of 365 days left: more than a third
    assert not cluster_pki.refresh()
    clock[0] = now + datetime.timedelta(days=250)  # 115 days left: less than a third
    assert cluster_pki.refresh()
    second = x509.load_pem_x509_certificate((tmp_path / "pki" / "apiserver.crt").read_bytes())
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc == clock[0] + pki.LEAF_VALIDITY
    assert pki.san_names(second) == pki.san_names(first)
    # The CA stays: clients keep trusting the renewed certificate.
    second.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes()))
    # A restart with the same clock keeps the fresh certificate.
    ClusterPKI(tmp_path / "pki", TLSOptions(), clock=lambda: clock[0]).ensure("127.0.0.1", "10.96.0.1")
    again = x509.load_pem_x509_certificate((tmp_path / "pki" / "apiserver.crt").read_bytes())
    assert again.serial_number == second.serial_number
    # A CA copied in from another server (HA, as kubeadm's control-plane join): its leaves are re-issued.
    shared = pki.new_ca("kubernetes", clock[0])
    (tmp_path / "pki" / "ca.crt").write_bytes(shared.cert_pem)
    (tmp_path / "pki" / "ca.key").write_bytes(shared.key_pem)
    ClusterPKI(tmp_path / "pki", TLSOptions(), clock=lambda: clock[0]).ensure("127.0.0.1", "10.96.0.1")
    for leaf in ("apiserver.crt", "apiserver-kubelet-client.crt"):
        assert pki.issued_by(x509.load_pem_x509_certificate((tmp_path / "pki" / leaf).read_bytes()), shared.cert)


def test_serving_certificate_renewed_without_dropping_connections(tmp_path: Path) -> None:
    server = start_secure_server(tmp_path / "short", (*NO_COMPONENTS, "--tls-serving-cert-validity", "6",
                                                      "--tls-renewal-check-interval", "0.5"))
    try:
        ca = server.data_dir / "pki" / "ca.crt"
        first = _peer_certificate(server.port, ca)
        assert first.not_valid_after_utc - first.not_valid_before_utc < datetime.timedelta(seconds=10)
        kept = http.client.HTTPSConnection("127.0.0.1", server.port, context=_https_context(ca), timeout=5)
        kept.request("GET", "/readyz")
        assert kept.getresponse().read() == b"ok"
        renewed = first
        deadline = time.monotonic() + 15
        while renewed.serial_number == first.serial_number and time.monotonic() < deadline:
            time.sleep(0.5)
            renewed = _peer_certificate(server.port, ca)
        assert renewed.serial_number != first.serial_number
        assert renewed.not_valid_after_utc > first.not_valid_after_utc
        # The connection opened before the renewal still serves, on its original certificate.
        kept.request("GET", "/readyz")
        assert kept.getresponse().read() == b"ok"
        assert kept.sock is not None
        assert x509.load_der_x509_certificate(kept.sock.getpeercert(binary_form=True)).serial_number \
            == first.serial_number
        kept.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- bring your own


def test_bring_your_own_certificates(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    serving_ca, client_ca = pki.new_ca("corp-serving", now), pki.new_ca("corp-clients", now)
    serving = pki.issue_serving(serving_ca, "api.corp", ["api.corp"], ["127.0.0.1"], now)
    files = {"serving.crt": serving.cert_pem + serving_ca.cert_pem, "serving.key": serving.key_pem,
             "serving-ca.crt": serving_ca.cert_pem, "clients.crt": client_ca.cert_pem}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    server = start_secure_server(tmp_path / "byo", (
        *NO_COMPONENTS, "--tls-renewal-check-interval", "0.3", "--tls-cert-file", str(tmp_path / "serving.crt"),
        "--tls-private-key-file", str(tmp_path / "serving.key"), "--client-ca-file", str(tmp_path / "clients.crt")),
        ca=tmp_path / "serving-ca.crt")
    try:
        assert _peer_certificate(server.port, tmp_path / "serving-ca.crt").serial_number \
            == serving.cert.serial_number
        bob = pki.issue_client(client_ca, "bob", ["corp"], now)
        bob_config = tmp_path / "bob.yaml"
        bob_config.write_text(yaml.safe_dump(build_kubeconfig(
            server.url, ca_pem=serving_ca.cert_pem, cert_pem=bob.cert_pem, key_pem=bob.key_pem)))
        user = _whoami(server, bob_config)
        assert user["username"] == "bob" and user["groups"] == ["corp", "system:authenticated"]
        # A brought certificate replaced on disk (cert-manager, an operator's renewal) is served from then on.
        replacement = pki.issue_serving(serving_ca, "api.corp", ["api.corp"], ["127.0.0.1"], now)
        (tmp_path / "serving.key").write_bytes(replacement.key_pem)
        (tmp_path / "serving.crt").write_bytes(replacement.cert_pem + serving_ca.cert_pem)
        deadline = time.monotonic() + 10
        served = serving.cert
        while served.serial_number != replacement.cert.serial_number and time.monotonic() < deadline:
            time.sleep(0.2)
            served = _peer_certificate(server.port, tmp_path / "serving-ca.crt")
        assert served.serial_number == replacement.cert.serial_number
    finally:
        server.stop()
