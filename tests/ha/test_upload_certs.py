"""kubeadm-style ``--upload-certs``: the first secure server over an etcd stores its CA and
service-account key in Secret ``kube-system/kubeadm-certs``, sealed with the certificate key; a second
server over the same etcd joins with ``--certificate-key`` alone. The real kubectl with the first
server's kubeconfig is trusted by the second; the Secret holds no plaintext key; a wrong key stops
the second server with kubeadm's message."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config

from pilothouse.apiserver import uploadcerts
from tests.conftest import KUBECTL, free_port, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

NO_COMPONENTS = ("--disable", "scheduler,controller-manager")
KEY = "ab" * 32


def test_second_server_joins_with_the_certificate_key(tmp_path: Path) -> None:
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as etcd:
        first = start_server_process(tmp_path / "a", secure=True, extra=(
            "--datastore-endpoint", etcd.endpoint, *NO_COMPONENTS, "--upload-certs", "--certificate-key", KEY))
        try:
            core = client.CoreV1Api(config.new_client_from_config(config_file=str(first.kubeconfig)))
            secret = core.read_namespaced_secret("kubeadm-certs", "kube-system")
            assert sorted(secret.data) == ["ca.crt", "ca.key", "sa.key"]
            pki = first.data_dir / "pki"
            for name, value in secret.data.items():
                sealed = base64.b64decode(value)
                assert b"PRIVATE KEY" not in sealed and b"CERTIFICATE" not in sealed
                assert uploadcerts.decrypt(sealed, KEY) == (pki / name).read_bytes()

            # A wrong key: the second server does not start, with kubeadm's message.
            wrong = subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(tmp_path / "w"),
                                    "--port", str(free_port()), "--datastore-endpoint", etcd.endpoint,
                                    *NO_COMPONENTS, "--certificate-key", "cd" * 32],
                                   capture_output=True, text=True, timeout=60)
            assert wrong.returncode != 0
            assert "error decoding secret data with provided key: cipher: message authentication failed" \
                in wrong.stderr, wrong.stderr

            second = start_server_process(tmp_path / "b", ca=pki / "ca.crt", secure=True, extra=(
                "--datastore-endpoint", etcd.endpoint, *NO_COMPONENTS, "--certificate-key", KEY))
            try:
                for name in ("ca.crt", "ca.key", "sa.key"):
                    assert (second.data_dir / "pki" / name).read_bytes() == (pki / name).read_bytes()
                # The first server's kubeconfig (its CA, its admin certificate) is trusted by the second.
                env = {**os.environ, "KUBECONFIG": str(first.kubeconfig), "HOME": str(tmp_path / "home")}
                whoami = subprocess.run([KUBECTL, "--server", second.url, "auth", "whoami"], capture_output=True,
                                        text=True, env=env, timeout=60)
                assert whoami.returncode == 0 and "kubernetes-admin" in whoami.stdout, whoami.stderr
            finally:
                second.stop()
        finally:
            first.stop()
