"""TLS from the store (and from a real ``pilothouse server``) to etcd with client-certificate auth.

kube-apiserver talks to a production etcd over mutual TLS (``--etcd-cafile/--etcd-certfile/
--etcd-keyfile``); pilothouse accepts the same flags. These tests run a real etcd demanding client
certificates (``--client-cert-auth``) with a PKI generated per module (tests/store/tls_certs.py) and
check both sides: the right credentials give a working store and API server, wrong ones fail fast
with a StoreError that names the certificate problem instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import ConflictError, StoreError, UnavailableError
from tests.conftest import start_server_process
from tests.store.etcd_server import EtcdCluster, EtcdTLS, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

tls_certs = pytest.importorskip("tests.store.tls_certs", reason="needs the cryptography package (test extra)")

P = "/registry/configmaps/tls/"


class PKI:
    def __init__(self, directory: Path) -> None:
        self.files = tls_certs.make_tls_files(directory / "pki")
        self.wrong_ca, _ = tls_certs.make_ca(directory / "other", "wrong-ca")
        # A client certificate that is well-formed but signed by a CA etcd does not trust.
        self.foreign = tls_certs.make_tls_files(directory / "foreign")

    @property
    def ca(self) -> str:
        return str(self.files.ca_cert)

    @property
    def cert(self) -> str:
        return str(self.files.client_cert)

    @property
    def key(self) -> str:
        return str(self.files.client_key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def etcd(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    # One member for the module: every test uses its own keys, none asserts absolute revisions.
    f = pki.files
    tls = EtcdTLS(ca_file=str(f.ca_cert), cert_file=str(f.server_cert), key_file=str(f.server_key),
                  client_cert_file=str(f.client_cert), client_key_file=str(f.client_key))
    cluster = EtcdCluster(1, base_dir=tmp_path_factory.mktemp("etcd"), tls=tls).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def store(etcd: EtcdCluster, pki: PKI) -> AsyncIterator[EtcdStore]:
    s = EtcdStore(etcd.endpoint, compact_interval=None, ca_file=pki.ca, cert_file=pki.cert, key_file=pki.key)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def test_harness_serves_https_only(etcd: EtcdCluster) -> None:
    assert etcd.endpoint.startswith("etcd+https://127.0.0.1:")
    assert etcd.members[0].client_url.startswith("https://")


async def test_store_basics_over_mutual_tls(store: EtcdStore) -> None:
    # Watch from an explicit revision (0 would mean "snapshot when the stream opens", racing the writes).
    start = (await store.create("/registry/tls-sentinel", b"")).mod_revision
    w = store.watch(P, start)
    created = await store.create(P + "a", b"1")
    assert await store.get(P + "a") == created
    updated = await store.update(P + "a", b"2", expected_mod_revision=created.mod_revision)
    assert updated.value == b"2" and updated.mod_revision > created.mod_revision
    with pytest.raises(ConflictError):
        await store.update(P + "a", b"3", expected_mod_revision=created.mod_revision)
    await store.create(P + "b", b"x")
    listed = await store.list(P)
    assert [kv.key for kv in listed.items] == [P + "a", P + "b"] and await store.count(P) == 2
    # The watch stream is a separate long-lived HTTPS request: it must carry the client cert too.
    events = [await asyncio.wait_for(anext(w), 5) for _ in range(3)]
    assert [(e.kv.key, e.kv.value, e.is_create) for e in events] == [
        (P + "a", b"1", True), (P + "a", b"2", False), (P + "b", b"x", True)]
    deleted = await store.delete(P + "b")
    assert deleted.key == P + "b" and await store.get(P + "b") is None


def _bad_options(pki: PKI, case: str) -> dict[str, Any]:
    if case == "no-client-cert":
        return {"ca_file": pki.ca}
    if case == "untrusted-client-cert":
        return {"ca_file": pki.ca, "cert_file": str(pki.foreign.client_cert),
                "key_file": str(pki.foreign.client_key)}
    if case == "wrong-ca":
        return {"ca_file": str(pki.wrong_ca), "cert_file": pki.cert, "key_file": pki.key}
    assert case == "system-roots"  # no CA given: the system trust store does not know our CA
    return {"cert_file": pki.cert, "key_file": pki.key}


@pytest.mark.parametrize("case", ["no-client-cert", "untrusted-client-cert", "wrong-ca", "system-roots"])
async def test_bad_tls_credentials_fail_fast_with_unavailable(etcd: EtcdCluster, pki: PKI, case: str) -> None:
    s = EtcdStore(etcd.endpoint, compact_interval=None, request_timeout=1.5, **_bad_options(pki, case))
    await s.start()
    try:
        for op in ("get", "create", "list", "watch"):
            t0 = time.monotonic()
            with pytest.raises(UnavailableError) as info:
                if op == "get":
                    await s.get(P + "a")
                elif op == "create":
                    await s.create(P + "bad-" + case, b"x")
                elif op == "list":
                    await s.list(P)
                else:
                    await asyncio.wait_for(anext(s.watch(P, 0)), 10)
            assert time.monotonic() - t0 < 5, f"{op} took {time.monotonic() - t0:.1f}s"
            if case in ("wrong-ca", "system-roots") and op != "watch":
                # Our own verification of etcd's certificate fails at connect time, so the message is
                # deterministic. etcd's rejection of *our* certificate is not: under TLS 1.3 it arrives
                # after the handshake, as a certificate alert or a bare connection reset, whichever
                # the socket reports first.
                assert "certificate verify failed" in str(info.value), str(info.value)
    finally:
        await s.close()


async def test_plain_http_to_a_tls_port_is_a_store_error(etcd: EtcdCluster) -> None:
    s = EtcdStore(etcd.endpoint.replace("etcd+https://", "etcd://"), compact_interval=None, request_timeout=1.5)
    await s.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError):
            await s.get(P + "a")
        assert time.monotonic() - t0 < 5
    finally:
        await s.close()


def test_key_without_certificate_is_rejected(pki: PKI) -> None:
    with pytest.raises(ValueError, match="key"):
        EtcdStore("etcd+https://127.0.0.1:1", ca_file=pki.ca, key_file=pki.key)


def _tls_flags(pki: PKI) -> tuple[str, ...]:
    return ("--etcd-cafile", pki.ca, "--etcd-certfile", pki.cert, "--etcd-keyfile", pki.key)


def test_api_server_over_tls_etcd_serves_kubectl(etcd: EtcdCluster, pki: PKI,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    port = etcd.members[0].client_port
    a = start_server_process(tmp_path_factory.mktemp("api-a"), extra=(
        "--datastore-endpoint", f"etcd+https://127.0.0.1:{port}", *_tls_flags(pki)))
    try:
        a.kubectl("create", "configmap", "x", "--from-literal=a=b")
        out = a.kubectl("get", "configmap", "x", "-o", "jsonpath={.data.a}").stdout
        assert out == "b"
        # kube-apiserver's flag spelling, as a second API server on the same etcd: it sees a's write.
        b = start_server_process(tmp_path_factory.mktemp("api-b"), extra=(
            "--etcd-servers", f"https://127.0.0.1:{port}", *_tls_flags(pki)))
        try:
            assert b.kubectl("get", "configmap", "x", "-o", "jsonpath={.data.a}").stdout == "b"
            b.kubectl("create", "configmap", "y", "--from-literal=c=d")
            assert a.kubectl("get", "configmap", "y", "-o", "jsonpath={.data.c}").stdout == "d"
        finally:
            b.stop()
    finally:
        a.stop()


def test_api_server_without_client_cert_exits(etcd: EtcdCluster, pki: PKI,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("api-bad")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="exited"):
        start_server_process(data_dir, extra=(
            "--datastore-endpoint", f"etcd+https://127.0.0.1:{etcd.members[0].client_port}",
            "--etcd-cafile", pki.ca))
    assert time.monotonic() - t0 < 20
    # The cause is logged as a storage-unavailable error (its wording is racy, see above).
    assert "storage backend is unavailable" in (data_dir / "server.log").read_text()
