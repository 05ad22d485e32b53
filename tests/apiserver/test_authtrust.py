"""``kube-system/extension-apiserver-authentication`` as kube-apiserver publishes it, read with the official
``kubernetes`` client from a real server on the secure defaults; kept current when the client CA changes."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client, config

from pilothouse.apiserver.authtrust import RequestHeaderTrust, combine_bundles, configmap_data
from pilothouse.machinery import pki
from tests.conftest import ServerProcess, start_server_process


def core(server: ServerProcess) -> Any:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def published(server: ServerProcess) -> dict[str, str]:
    cm = core(server).read_namespaced_config_map("extension-apiserver-authentication", "kube-system")
    return dict(cm.data or {})


def subjects(bundle: str | bytes) -> list[str]:
    raw = bundle.encode() if isinstance(bundle, str) else bundle
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(raw)]


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out; last: {last!r}")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_published_and_kept_current_when_the_client_ca_changes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server_process(data_dir, secure=True)
    try:
        cluster_ca = (data_dir / "pki" / "ca.crt").read_bytes()
        data = wait_for(lambda: published(server))
        # No front proxy configured: only the client CA, exactly the cluster CA, as kube-apiserver.
        assert set(data) == {"client-ca-file"}
        assert subjects(data["client-ca-file"]) == subjects(cluster_ca) == ["CN=kubernetes"]
        assert x509.load_pem_x509_certificate(data["client-ca-file"].encode()) == \
            x509.load_pem_x509_certificate(cluster_ca)
    finally:
        server.stop()

    # --client-ca-file with a second CA beside the cluster's: both are published, in the file's order.
    other = pki.new_ca("other-clients", now())
    bundle = tmp_path / "client-ca.pem"
    bundle.write_bytes(cluster_ca + other.cert_pem)
    server = start_server_process(data_dir, extra=("--client-ca-file", str(bundle)), secure=True)
    try:
        wait_for(lambda: subjects(published(server).get("client-ca-file", "")) == ["CN=kubernetes", "CN=other-clients"])
        # The file changes while the server runs (a third CA added, the second rotated out): the
        # ConfigMap follows within seconds, and keeps what it already trusted (upstream combines).
        third = pki.new_ca("rotated-in", now())
        bundle.write_bytes(cluster_ca + third.cert_pem)
        names = wait_for(lambda: (n := subjects(published(server).get("client-ca-file", ""))) and len(n) == 3 and n)
        assert names == ["CN=kubernetes", "CN=other-clients", "CN=rotated-in"]
    finally:
        server.stop()


def test_combining_drops_duplicates_and_expired_and_adds_request_header_keys() -> None:
    moment = now()
    current = pki.new_ca("current", moment)
    expired = pki.new_ca("expired", moment - datetime.timedelta(days=30), datetime.timedelta(days=1))
    pem = current.cert.public_bytes(serialization.Encoding.PEM)
    assert subjects(combine_bundles(pem + expired.cert_pem, pem)) == ["CN=current"]

    proxy = pki.new_ca("front-proxy-ca", moment)
    existing = {"requestheader-allowed-names": '["aggregator"]', "requestheader-username-headers": '["X-Remote-User"]'}
    data = configmap_data(existing, current.cert_pem,
                          RequestHeaderTrust(proxy.cert_pem, allowed_names=("front-proxy-client",)))
    assert data["requestheader-allowed-names"] == '["aggregator","front-proxy-client"]'
    assert data["requestheader-username-headers"] == '["X-Remote-User"]'
    assert data["requestheader-group-headers"] == '["X-Remote-Group"]'
    assert data["requestheader-extra-headers-prefix"] == '["X-Remote-Extra-"]'
    assert subjects(data["requestheader-client-ca-file"]) == ["CN=front-proxy-ca"]
    assert subjects(data["client-ca-file"]) == ["CN=current"]


@pytest.mark.parametrize("header_ca", [b"", None])
def test_no_front_proxy_no_request_header_keys(header_ca: bytes | None) -> None:
    ca = pki.new_ca("c", now())
    trust = RequestHeaderTrust(header_ca) if header_ca is not None else None
    assert set(configmap_data({}, ca.cert_pem, trust)) == {"client-ca-file"}
