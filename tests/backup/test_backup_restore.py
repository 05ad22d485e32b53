"""``pilothouse backup`` / ``restore`` and the data dir's format version, against real servers.

The SQLite round trip runs on the defaults (HTTPS, Node,RBAC): a backup taken while a writer is
writing holds every write acknowledged before it started; the restored server, on the same port,
serves every object with its resourceVersion to the real kubectl holding the old kubeconfig (same
CA), answers a watch from a resourceVersion seen before the restore with 410 Gone, and writes on
with newer resourceVersions. The etcd round trip snapshots a real etcd through the v3 gateway and
restores it with etcd's own tool into a new member.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from pilothouse.apiserver.datadir import FORMAT_VERSION
from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary


def pilothouse(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pilothouse", *args], capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pilothouse {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                            timeout=60, env={"HOME": str(kubeconfig.parent / "home"), "PATH": "/usr/bin:/bin"})
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


class Writer(threading.Thread):
    """Creates ConfigMaps one after another; records each acknowledged one with its resourceVersion
    and the moment the acknowledgement arrived."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(daemon=True)
        self.api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self.acked: list[tuple[str, str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"w-{i}"
            created = self.api.create_namespaced_config_map("default", {"metadata": {"name": name},
                                                                        "data": {"i": str(i)}})
            self.acked.append((name, created.metadata.resource_version, time.monotonic()))
            i += 1


def configmaps(kubeconfig: Path) -> dict[str, str]:
    listed = json.loads(kubectl(kubeconfig, "get", "configmaps", "-n", "default", "-o", "json").stdout)
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in listed["items"]}


def watch_from(kubeconfig: Path, resource_version: str) -> dict[str, Any]:
    """The first event of a watch on configmaps from ``resource_version``."""
    raw = kubectl(kubeconfig, "get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=3"
                  f"&resourceVersion={resource_version}").stdout
    event: dict[str, Any] = json.loads(raw.splitlines()[0])
    return event


def test_backup_while_writing_then_restore(tmp_path: Path) -> None:
    old = start_server_process(tmp_path / "old", secure=True, extra=("--disable", "scheduler,controller-manager"))
    archive = tmp_path / "backup.tar.gz"
    kubeconfig = tmp_path / "admin.kubeconfig"  # a client's copy: it must keep working after the restore
    try:
        shutil.copy(old.kubeconfig, kubeconfig)
        writer = Writer(kubeconfig)
        writer.start()
        while len(writer.acked) < 20:
            time.sleep(0.05)
        backup_started = time.monotonic()
        made = pilothouse("backup", "--data-dir", str(old.data_dir), "-o", str(archive))
        count_at_backup = len(writer.acked)
        while len(writer.acked) < count_at_backup + 20:  # the old server runs on past the backup
            time.sleep(0.05)
        writer.stop.set()
        writer.join(10)
        assert "backup of sqlite revision" in made.stdout
        last_seen = writer.acked[-1][1]
    finally:
        old.stop()

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names[0] == "manifest.json" and {"state.db", "pki/ca.crt", "pki/ca.key", "pki/sa.key"} <= set(names)
    assert manifest["store"] == "sqlite" and manifest["dataDirFormat"] == FORMAT_VERSION
    assert int(manifest["revision"]) < int(last_seen)

    restored = tmp_path / "restored"
    result = pilothouse("restore", str(archive), "--data-dir", str(restored))
    assert "restored" in result.stdout
    refused = pilothouse("restore", str(archive), "--data-dir", str(restored), check=False)
    assert refused.returncode != 0 and "not empty" in refused.stderr

    new = start_server_process(restored, port=old.port, secure=True,
                               extra=("--disable", "scheduler,controller-manager"))
    try:
        present = configmaps(kubeconfig)
        before = [(name, rv) for name, rv, at in writer.acked if at < backup_started]
        assert len(before) >= 20
        for name, rv in before:  # every write acknowledged before the backup began, unchanged
            assert present.get(name) == rv, name
        assert all(present.get(name) in (None, rv) for name, rv, _ in writer.acked)
        assert len(present) < len(writer.acked)  # and the writes after it are not there

        # A client that saw the old server's newest revision must re-list, not silently miss events.
        event = watch_from(kubeconfig, last_seen)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410, event
        kubectl(kubeconfig, "create", "configmap", "after-restore")
        assert int(configmaps(kubeconfig)["after-restore"]) > int(last_seen)
        # The official client, with the old kubeconfig, as well.
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        assert api.read_namespaced_config_map("w-0", "default").metadata.resource_version == writer.acked[0][1]
    finally:
        new.stop()


def test_newer_data_dir_refused_older_migrated(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "format-version").write_text(f"{FORMAT_VERSION + 1}\n")
    refused = subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                              "--port", str(free_port()), "--secure=false"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert f"format version {FORMAT_VERSION + 1}, newer than this pilothouse understands" in refused.stderr
    assert not (data_dir / "state.db").exists()  # refused before anything was opened

    (data_dir / "format-version").write_text("garbage\n")
    garbled = subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                              "--port", str(free_port()), "--secure=false"],
                             capture_output=True, text=True, timeout=60)
    assert garbled.returncode != 0 and "not a format version" in garbled.stderr

    # A data dir written before the version file existed: the server adopts it, objects intact.
    (data_dir / "format-version").unlink()
    server = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    try:
        server.kubectl("create", "configmap", "kept")
    finally:
        server.stop()
    (data_dir / "format-version").unlink()
    server = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    try:
        assert (data_dir / "format-version").read_text() == f"{FORMAT_VERSION}\n"
        assert "kept" in server.kubectl("get", "configmaps").stdout
    finally:
        server.stop()


def test_archive_of_newer_format_refused(tmp_path: Path) -> None:
    from pilothouse.cli.backupfile import Manifest, write_archive

    snapshot = tmp_path / "state.db"
    snapshot.write_bytes(b"")
    archive = tmp_path / "future.tar.gz"
    write_archive(archive, Manifest(store="sqlite", revision=5, data_dir_format=FORMAT_VERSION + 1,
                                    release="9.9.9"), snapshot, tmp_path / "no-such-dir")
    refused = pilothouse("restore", str(archive), "--data-dir", str(tmp_path / "d"), check=False)
    assert refused.returncode != 0 and "newer than this pilothouse understands" in refused.stderr
    assert not (tmp_path / "d" / "state.db").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    junk = pilothouse("restore", str(tmp_path / "junk.tar.gz"), "--data-dir", str(tmp_path / "d"), check=False)
    assert junk.returncode != 0 and "is not a pilothouse backup" in junk.stderr


@pytest.mark.skipif(etcd_binary() is None or not (shutil.which("etcdctl") or shutil.which("etcdutl")),
                    reason="needs etcd and etcdctl (apt-get install etcd-server etcd-client)")
def test_etcd_snapshot_and_restore(tmp_path: Path) -> None:
    etcd = EtcdCluster(1, base_dir=tmp_path / "etcd").start()
    archive = tmp_path / "etcd-backup.tar.gz"
    server: ServerProcess | None = None
    old_port = 0
    try:
        server = start_server_process(tmp_path / "old", secure=True, extra=(
            "--datastore-endpoint", etcd.endpoint, "--disable", "scheduler,controller-manager"))
        old_port = server.port
        shutil.copy(server.kubeconfig, tmp_path / "admin.kubeconfig")
        server.kubectl("create", "configmap", "in-etcd", "--from-literal=k=v")
        rv = json.loads(server.kubectl("get", "configmap", "in-etcd", "-o", "json").stdout)["metadata"][
            "resourceVersion"]
        made = pilothouse("backup", "--data-dir", str(server.data_dir), "-o", str(archive),
                          "--datastore-endpoint", etcd.endpoint)
        assert "backup of etcd revision" in made.stdout
    finally:
        if server is not None:
            server.stop()
        etcd.stop()

    fresh = EtcdCluster(1, base_dir=tmp_path / "etcd2")
    member = fresh.members[0]
    restored = tmp_path / "restored"
    done = pilothouse("restore", str(archive), "--data-dir", str(restored), "--etcd-data-dir", str(member.data_dir),
               "--", "--name", member.name, "--initial-cluster", f"{member.name}={member.peer_url}",
               "--initial-advertise-peer-urls", member.peer_url, "--initial-cluster-token", fresh.token)
    assert (restored / "pki" / "ca.crt").exists()
    if shutil.which("etcdutl") is None:  # etcd 3.4's etcdctl cannot move the revision: the restore says so
        assert "re-list" in done.stderr
    fresh.start()
    try:
        server = start_server_process(restored, port=old_port, secure=True, extra=(
            "--datastore-endpoint", fresh.endpoint, "--disable", "scheduler,controller-manager"))
        try:
            got = json.loads(kubectl(tmp_path / "admin.kubeconfig", "get", "configmap", "in-etcd", "-o",
                                     "json").stdout)
            assert got["metadata"]["resourceVersion"] == rv and got["data"] == {"k": "v"}
        finally:
            server.stop()
    finally:
        fresh.stop()


def test_official_client_sees_gone(tmp_path: Path) -> None:
    """The 410 as the official client's watch raises it, on a plain-HTTP server (a quick restore)."""
    old = start_server_process(tmp_path / "old", extra=("--disable", "scheduler,controller-manager"))
    try:
        old.kubectl("create", "configmap", "one")
        seen = json.loads(old.kubectl("get", "configmap", "one", "-o", "json").stdout)["metadata"]["resourceVersion"]
        pilothouse("backup", "--data-dir", str(old.data_dir), "-o", str(tmp_path / "b.tar.gz"))
    finally:
        old.stop()
    pilothouse("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "new"))
    new = start_server_process(tmp_path / "new", extra=("--disable", "scheduler,controller-manager"))
    try:
        from kubernetes import watch

        api = client.CoreV1Api(config.new_client_from_config(config_file=str(new.kubeconfig)))
        with pytest.raises(ApiException) as gone:
            for _ in watch.Watch().stream(api.list_namespaced_config_map, "default", resource_version=seen,
                                          timeout_seconds=3):
                pass
        assert gone.value.status == 410
    finally:
        new.stop()


def make_stopped_data_dir(data_dir: Path) -> None:
    """A stopped server's data dir: a store with one key, a CA, a version file."""
    import asyncio

    from pilothouse.store.sqlite import SQLiteStore

    async def write() -> None:
        async with SQLiteStore(data_dir / "state.db", compact_interval=None) as store:
            await store.create("/registry/configmaps/default/x", b'{"data": {}}')

    asyncio.run(write())
    (data_dir / "pki").mkdir()
    (data_dir / "pki" / "ca.crt").write_text("a CA\n")
    (data_dir / "format-version").write_text(f"{FORMAT_VERSION}\n")


def test_encryption_reference_force_and_missing_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "stopped"
    make_stopped_data_dir(data_dir)
    encryption = tmp_path / "encryption.yaml"
    encryption.write_text("kind: EncryptionConfiguration\n")
    archive = tmp_path / "b.tar.gz"
    pilothouse("backup", "--data-dir", str(data_dir), "-o", str(archive),
               "--encryption-provider-config", str(encryption))
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert manifest["encryptionProviderConfig"]["path"] == str(encryption)
    assert names == ["manifest.json", "state.db", "pki", "pki/ca.crt", "format-version"]  # no encryption keys

    target = tmp_path / "target"
    quiet = pilothouse("restore", str(archive), "--data-dir", str(target))
    assert "warning" not in quiet.stderr
    encryption.write_text("kind: EncryptionConfiguration\n# other keys\n")
    (target / "pki" / "ca.crt").write_text("another CA\n")
    forced = pilothouse("restore", str(archive), "--data-dir", str(target), "--force")
    assert "changed since the backup" in forced.stderr
    assert (target / "pki" / "ca.crt").read_text() == "a CA\n"
    encryption.unlink()
    assert "is not here" in pilothouse("restore", str(archive), "--data-dir", str(target), "--force").stderr

    elsewhere = tmp_path / "elsewhere.db"  # a store placed outside the data dir is guarded as well
    elsewhere.write_bytes(b"precious")
    guarded = pilothouse("restore", str(archive), "--data-dir", str(tmp_path / "empty"),
                         "--datastore-endpoint", f"sqlite://{elsewhere}", check=False)
    assert guarded.returncode != 0 and "not empty" in guarded.stderr and elsewhere.read_bytes() == b"precious"

    missing = pilothouse("backup", "--data-dir", str(tmp_path / "nothing"), "-o", str(tmp_path / "n.tar.gz"),
                         check=False)
    assert missing.returncode != 0 and "cannot snapshot the store" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "n.tar.gz").exists()
