"""Secrets encrypted at rest (``--encryption-provider-config``), against real server processes.

What is on disk is checked at the bytes: SQLite's database and WAL files, and the value etcd holds
(read with the store's own etcd client, under the API server's back). What comes back is checked
with the real kubectl and the official Python client (get, list, watch).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kubernetes import client, config, watch
from nacl.bindings import crypto_secretbox_open

from pilothouse.apiserver.encryption.config import EncryptionConfigError, GroupResource, load_config
from pilothouse.apiserver.encryption.store import EncryptingStore
from pilothouse.store import open_store
from pilothouse.store.sqlite import SQLiteStore
from tests.conftest import OPEN_FLAGS, ServerProcess, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary

NO_COMPONENTS = ("--disable", "scheduler,controller-manager")
SECRETS = "/registry/core/secrets/"


def new_key(size: int = 32) -> str:
    return base64.b64encode(os.urandom(size)).decode()


def write_rules(path: Path, rules: list[tuple[list[str], list[dict[str, Any]]]]) -> Path:
    """An EncryptionConfiguration with one ``resources`` entry per (resources, providers) rule."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": names, "providers": providers} for names, providers in rules]}))
    return path


def write_config(path: Path, providers: list[dict[str, Any]], resources: tuple[str, ...] = ("secrets",)) -> Path:
    return write_rules(path, [(list(resources), providers)])


def keyed(provider: str, *keys: tuple[str, str]) -> dict[str, Any]:
    return {provider: {"keys": [{"name": name, "secret": secret} for name, secret in keys]}}


def start(data_dir: Path, encryption_config: Path, *extra: str) -> ServerProcess:
    return start_server_process(data_dir, extra=(*NO_COMPONENTS, "--encryption-provider-config",
                                                 str(encryption_config), *extra))


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers a test started (append them); all stopped at the end, failures included."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def secret_value() -> str:
    """A value that cannot appear on disk by chance, so finding it (or its base64) means a leak."""
    return "s3cr3t-" + os.urandom(12).hex()


def create_secret(server: ServerProcess, name: str, value: str, namespace: str = "default") -> None:
    server.kubectl("create", "secret", "generic", name, "-n", namespace, f"--from-literal=password={value}")


def read_secret(server: ServerProcess, name: str, namespace: str = "default") -> str:
    encoded = server.kubectl("get", "secret", name, "-n", namespace, "-o", "jsonpath={.data.password}").stdout
    return base64.b64decode(encoded).decode()


def sqlite_bytes(data_dir: Path) -> bytes:
    """Everything SQLite holds on disk: the database and its write-ahead log."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("state.db*")) if path.is_file())


def raw_values(data_dir: Path, prefix: str = SECRETS) -> dict[str, bytes]:
    """The stored bytes under ``prefix``, read with the store alone (the server stopped)."""
    async def read() -> dict[str, bytes]:
        store = SQLiteStore(data_dir / "state.db", compact_interval=None)
        await store.start()
        try:
            return {kv.key: kv.value for kv in (await store.list(prefix)).items}
        finally:
            await store.close()

    return asyncio.run(read())


def leaks(blob: bytes, value: str) -> bool:
    return value.encode() in blob or base64.b64encode(value.encode()) in blob


def api(server: ServerProcess) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


# -- SQLite: ciphertext on disk, plaintext through the API ---------------------------------------------


def test_secrets_are_aescbc_on_disk_and_plain_through_get_list_and_watch(
        tmp_path: Path, servers: list[ServerProcess]) -> None:
    key = new_key()
    cfg = write_config(tmp_path / "enc.yaml", [keyed("aescbc", ("key1", key)), {"identity": {}}])
    server = start(tmp_path / "server", cfg)
    servers.append(server)
    core = api(server)
    listed = core.list_namespaced_secret("default")
    events: list[tuple[str, dict[str, str]]] = []

    def collect() -> None:
        for event in watch.Watch().stream(core.list_namespaced_secret, "default",
                                          resource_version=listed.metadata.resource_version, timeout_seconds=10):
            events.append((event["type"], event["object"].data))
            return

    watcher = threading.Thread(target=collect)
    watcher.start()
    value, unencrypted = secret_value(), secret_value()
    create_secret(server, "db-password", value)
    # Not configured for encryption: stays plain, which shows the grep below can see values at all.
    server.kubectl("create", "configmap", "settings", f"--from-literal=x={unencrypted}")
    watcher.join(15)

    assert read_secret(server, "db-password") == value
    everything = json.loads(server.kubectl("get", "secrets", "-A", "-o", "json").stdout)
    assert [base64.b64decode(item["data"]["password"]).decode() for item in everything["items"]] == [value]
    assert events == [("ADDED", {"password": base64.b64encode(value.encode()).decode()})]

    on_disk = sqlite_bytes(server.data_dir)
    assert not leaks(on_disk, value)
    assert b"k8s:enc:aescbc:v1:key1:" in on_disk
    assert leaks(on_disk, unencrypted)
    server.stop()
    stored = raw_values(server.data_dir)[SECRETS + "default/db-password"]
    assert stored.startswith(b"k8s:enc:aescbc:v1:key1:")
    # Kubernetes' layout, decrypted here independently: 16-byte IV, AES-CBC, PKCS#7 padding.
    body = stored[len(b"k8s:enc:aescbc:v1:key1:"):]
    decryptor = Cipher(algorithms.AES(base64.b64decode(key)), modes.CBC(body[:16])).decryptor()
    padded = decryptor.update(body[16:]) + decryptor.finalize()
    plain = json.loads(padded[:-padded[-1]])
    assert base64.b64decode(plain["data"]["password"]).decode() == value


def test_key_rotation_as_kubernetes_documents_it(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """New key added second, restart; new key first, restart; replace every Secret; old key removed."""
    old, new = ("old", new_key()), ("new", new_key(16))
    cfg = tmp_path / "enc.yaml"
    data_dir = tmp_path / "server"
    values = {f"s{i}": secret_value() for i in range(3)}

    def restart(*providers: dict[str, Any]) -> ServerProcess:
        if servers:
            servers.pop().stop()
        write_config(cfg, list(providers))
        servers.append(start(data_dir, cfg))
        return servers[-1]

    server = restart(keyed("aescbc", old))
    server.kubectl("create", "namespace", "team")
    for name, value in values.items():
        create_secret(server, name, value, "team" if name == "s2" else "default")

    server = restart(keyed("aescbc", old, new))  # every server can read the new key before any writes it
    server = restart(keyed("aescbc", new, old))
    assert read_secret(server, "s0") == values["s0"]
    stale = raw_values(data_dir)
    assert all(v.startswith(b"k8s:enc:aescbc:v1:old:") for v in stale.values()) and len(stale) == 3

    listing = server.kubectl("get", "secrets", "-A", "-o", "json").stdout
    server.kubectl("replace", "-f", "-", input=listing)
    rewritten = raw_values(data_dir)
    assert sorted(rewritten) == sorted(stale)
    assert all(v.startswith(b"k8s:enc:aescbc:v1:new:") for v in rewritten.values())

    server = restart(keyed("aescbc", new))
    assert read_secret(server, "s0") == values["s0"]
    assert read_secret(server, "s2", "team") == values["s2"]
    assert not leaks(sqlite_bytes(data_dir), values["s1"])


def test_without_the_replace_step_the_dropped_key_cannot_read(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """The reason rotation rewrites everything: data under a removed key is unreadable, and says why."""
    cfg = write_config(tmp_path / "enc.yaml", [keyed("aesgcm", ("k1", new_key()))])
    server = start(tmp_path / "server", cfg)
    servers.append(server)
    create_secret(server, "orphan", secret_value())
    created = server.kubectl("get", "secret", "orphan", "-o", "jsonpath={.metadata.resourceVersion}").stdout
    server.stop()
    write_config(cfg, [keyed("aesgcm", ("k2", new_key()))])
    server = start(tmp_path / "server", cfg)
    servers.append(server)
    result = server.kubectl("get", "secret", "orphan", check=False)
    assert result.returncode != 0
    assert "Internal error occurred" in result.stderr
    assert ("Error from server (InternalError): Internal error occurred: no matching key was found for the "
            "provided AES transformer") in result.stderr
    listed = server.kubectl("get", "secrets", check=False)
    assert listed.returncode != 0
    assert f'unable to transform key "{SECRETS}default/orphan"' in listed.stderr
    # A watch replaying the orphan's creation ends with an ERROR event that says why.
    url = f"{server.url}/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=5&resourceVersion={int(created) - 1}"
    with urllib.request.urlopen(url, timeout=10) as response:
        events = [json.loads(line) for line in response.read().splitlines()]
    assert [(e["type"], e["object"]["code"], e["object"]["reason"]) for e in events] == [
        ("ERROR", 500, "InternalError")]
    assert "no matching key was found for the provided AES transformer" in events[0]["object"]["message"]

    server.stop()  # Secrets dropped from the configuration altogether: read as plain, refused as such.
    write_config(cfg, [{"identity": {}}], resources=("configmaps",))
    server = start(tmp_path / "server", cfg)
    servers.append(server)
    assert "identity transformer tried to read encrypted data" in server.kubectl(
        "get", "secret", "orphan", check=False).stderr


def test_identity_first_reads_old_ciphertext_and_writes_plaintext(
        tmp_path: Path, servers: list[ServerProcess]) -> None:
    """Decrypting everything again (Kubernetes' "Decrypt all data"): identity first, the old provider
    after it to read what is still encrypted; a replace stores it plain."""
    key = new_key()
    box = keyed("secretbox", ("box", key))
    cfg = write_config(tmp_path / "enc.yaml", [box])
    data_dir = tmp_path / "server"
    server = start(data_dir, cfg)
    servers.append(server)
    before = secret_value()
    create_secret(server, "before", before)
    server.stop()

    write_config(cfg, [{"identity": {}}, box])
    server = start(data_dir, cfg)
    servers.append(server)
    after = secret_value()
    create_secret(server, "after", after)
    assert read_secret(server, "before") == before
    assert read_secret(server, "after") == after
    stored = raw_values(data_dir)
    assert stored[SECRETS + "default/before"].startswith(b"k8s:enc:secretbox:v1:box:")
    # Go's nacl/secretbox layout, opened with libsodium's primitive: 24-byte nonce, then tag + ciphertext.
    body = stored[SECRETS + "default/before"][len(b"k8s:enc:secretbox:v1:box:"):]
    opened = json.loads(crypto_secretbox_open(body[24:], body[:24], base64.b64decode(key)))
    assert base64.b64decode(opened["data"]["password"]).decode() == before
    plain = json.loads(stored[SECRETS + "default/after"])
    assert plain["data"]["password"] == base64.b64encode(after.encode()).decode()

    server.kubectl("replace", "-f", "-", input=server.kubectl("get", "secret", "before", "-o", "json").stdout)
    assert json.loads(raw_values(data_dir)[SECRETS + "default/before"])["metadata"]["name"] == "before"
    assert read_secret(server, "before") == before


def test_wildcard_rules_pick_a_provider_per_resource_and_the_cluster_still_works(
        tmp_path: Path, servers: list[ServerProcess]) -> None:
    """An exact rule, then ``*.apps``, then ``*.*`` for everything else: namespaces, RBAC, Services
    included, all read back by the server itself (its admission caches watch them)."""
    cfg = write_rules(tmp_path / "enc.yaml", [(["secrets"], [keyed("aescbc", ("c", new_key()))]),
                                              (["*.apps"], [keyed("aesgcm", ("g", new_key()))]),
                                              (["*.*"], [keyed("secretbox", ("b", new_key()))])])
    server = start(tmp_path / "server", cfg)
    servers.append(server)
    server.kubectl("create", "namespace", "shop")
    create_secret(server, "s", "v", "shop")
    server.kubectl("create", "configmap", "c", "-n", "shop", "--from-literal=k=v")
    server.kubectl("create", "deployment", "web", "-n", "shop", "--image=busybox")
    server.kubectl("create", "service", "clusterip", "web", "-n", "shop", "--tcp=80:80")
    server.kubectl("create", "clusterrole", "reader", "--verb=get", "--resource=pods")
    assert read_secret(server, "s", "shop") == "v"
    assert server.kubectl("get", "deployment", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}").stdout == "1"
    assert server.kubectl("get", "service", "web", "-n", "shop", "-o", "jsonpath={.spec.clusterIP}").stdout
    server.stop()

    def provider(prefix: str) -> set[bytes]:
        return {value.split(b":")[2] if value.startswith(b"k8s:enc:") else b"plain"
                for value in raw_values(server.data_dir, prefix).values()}

    assert provider(SECRETS) == {b"aescbc"}
    assert provider("/registry/apps/deployments/") == {b"aesgcm"}
    for other in ("configmaps", "namespaces", "services"):
        assert provider(f"/registry/core/{other}/") == {b"secretbox"}, other
    assert provider("/registry/rbac.authorization.k8s.io/clusterroles/") == {b"secretbox"}
    assert provider("/registry/ranges/") == {b"plain"}  # allocator bitmaps are not API resources


# -- etcd: the value etcd holds -------------------------------------------------------------------------


@pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")
def test_etcd_holds_ciphertext_for_secrets_and_configmaps(tmp_path: Path, servers: list[ServerProcess]) -> None:
    key = new_key(24)
    cfg = write_config(tmp_path / "enc.yaml", [keyed("aesgcm", ("gcm", key))], resources=("secrets", "configmaps"))
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as etcd:
        server = start(tmp_path / "server", cfg, "--datastore-endpoint", etcd.endpoint)
        servers.append(server)
        value, setting = secret_value(), secret_value()
        create_secret(server, "token", value)
        server.kubectl("create", "configmap", "settings", f"--from-literal=x={setting}")
        assert read_secret(server, "token") == value
        assert server.kubectl("get", "configmap", "settings", "-o", "jsonpath={.data.x}").stdout == setting

        async def raw(key: str) -> bytes:
            store = open_store(etcd.endpoint)
            await store.start()
            try:
                kv = await store.get(key)
                assert kv is not None
                return kv.value
            finally:
                await store.close()

        secret = asyncio.run(raw(SECRETS + "default/token"))
        configmap = asyncio.run(raw("/registry/core/configmaps/default/settings"))
        namespace = asyncio.run(raw("/registry/core/namespaces/default"))
    assert secret.startswith(b"k8s:enc:aesgcm:v1:gcm:") and not leaks(secret, value)
    assert configmap.startswith(b"k8s:enc:aesgcm:v1:gcm:") and not leaks(configmap, setting)
    assert namespace.startswith(b"{")  # not configured: plain JSON
    # Kubernetes' layout: 12-byte nonce, then AES-GCM with the etcd key as associated data.
    body = secret[len(b"k8s:enc:aesgcm:v1:gcm:"):]
    plain = AESGCM(base64.b64decode(key)).decrypt(body[:12], body[12:], (SECRETS + "default/token").encode())
    assert base64.b64decode(json.loads(plain)["data"]["password"]).decode() == value


# -- startup validation ----------------------------------------------------------------------------------


def run_server_expecting_failure(tmp_path: Path, cfg: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(tmp_path / "d"),
                             "--port", "0", *OPEN_FLAGS, *NO_COMPONENTS, "--encryption-provider-config", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    return result.stderr


def test_a_key_of_the_wrong_length_stops_startup_with_kubernetes_message(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "enc.yaml", [keyed("aescbc", ("short", base64.b64encode(b"8 bytes!").decode())),
                                               keyed("secretbox", ("box", new_key(16)))])
    stderr = run_server_expecting_failure(tmp_path, cfg)
    assert ('resources[0].providers[0].aescbc.keys[0].secret: Invalid value: "REDACTED": secret is not of the '
            "expected length, got 8, expected one of [16 24 32]") in stderr
    assert ('resources[0].providers[1].secretbox.keys[0].secret: Invalid value: "REDACTED": secret is not of the '
            "expected length, got 16, expected one of [32]") in stderr
    assert not (tmp_path / "d" / "state.db").exists()


def test_masked_and_misspelled_resources_stop_startup(tmp_path: Path) -> None:
    cfg = write_rules(tmp_path / "enc.yaml", [(["*.apps"], [{"identity": {}}]),
                                              (["deployments.apps"], [{"identity": {}}])])
    masked = run_server_expecting_failure(tmp_path, cfg)
    assert 'resource "deployments.apps" is masked by earlier rule "*.apps"' in masked
    write_config(cfg, [{"identity": {}}], resources=("Secrets",))
    assert ('resources[0].resources[0]: Invalid value: "Secrets": resource name should not contain capital letters'
            in run_server_expecting_failure(tmp_path, cfg))


# -- automatic reload -------------------------------------------------------------------------------------


def test_reload_takes_a_valid_new_file_and_keeps_the_old_one_on_a_broken_edit(tmp_path: Path) -> None:
    first, second = ("first", new_key()), ("second", new_key())
    cfg = write_config(tmp_path / "enc.yaml", [keyed("aescbc", first)])

    async def scenario() -> list[bytes]:
        store = EncryptingStore(SQLiteStore(tmp_path / "state.db", compact_interval=None), cfg,
                                automatic_reload=True, reload_interval=0.05)
        await store.start()
        try:
            await store.create(SECRETS + "ns/a", b'{"a":1}')
            write_config(cfg, [keyed("aescbc", second, first)])
            await asyncio.sleep(0.3)  # a few polls
            await store.create(SECRETS + "ns/b", b'{"b":1}')
            cfg.write_text("resources: [")  # broken: ignored, the second configuration stays
            assert not store.reload()
            await store.create(SECRETS + "ns/c", b'{"c":1}')
            assert [kv.value for kv in (await store.list(SECRETS)).items] == [b'{"a":1}', b'{"b":1}', b'{"c":1}']
            return [kv.value for kv in (await store.inner.list(SECRETS)).items]
        finally:
            await store.close()

    stored = asyncio.run(scenario())
    assert [value.split(b":")[:5] for value in stored] == [
        [b"k8s", b"enc", b"aescbc", b"v1", name] for name in (b"first", b"second", b"second")]


# -- the configuration's validation, message by message ---------------------------------------------------

K16, K32 = new_key(16), new_key(32)


@pytest.mark.parametrize(("rules", "message"), [
    ([], "resources: Required value: at least one resources is required"),
    ([(["secrets", "secrets"], [{"identity": {}}])],
     'resources[0].resources: Invalid value: []string{"secrets", "secrets"}: the same resource cannot be '
     "specified multiple times"),
    ([(["secrets", "*."], [{"identity": {}}])],
     "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed"),
    ([(["*"], [{"identity": {}}])], "use '*.' to encrypt all the resources from core API group or *.* to encrypt"),
    ([(["deployments.*"], [{"identity": {}}])], "encrypting the same resource across groups is not supported"),
    ([(["events.events.k8s.io"], [{"identity": {}}])], "Use 'events' instead in the config file"),
    ([(["serviceipallocations"], [{"identity": {}}])], "resources which do not have REST API/s cannot be encrypted"),
    ([(["secrets"], [])], "resources[0].providers: Required value: at least one resources[0].providers is required"),
    ([(["secrets"], [{"identity": {}, **keyed("aescbc", ("k", K32))}])],
     "more than one provider specified in a single element, should split into different list elements"),
    ([(["secrets"], [{"aescbc": {"keys": []}}])],
     "resources[0].providers[0].aescbc.keys: Required value: at least one keys is required"),
    ([(["secrets"], [keyed("aesgcm", ("", K16))])],
     "resources[0].providers[0].aesgcm.keys[0].name: Required value: name is a mandatory field for a key"),
    ([(["secrets"], [keyed("secretbox", ("k", "not base64!"))])],
     'resources[0].providers[0].secretbox.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded'),
    ([(["secrets"], [{"kms": {"name": "vault", "endpoint": "unix:///kms.sock"}}])], "KMS providers are not supported"),
    ([(["*.*"], [{"identity": {}}]), (["secrets"], [{"identity": {}}])],
     'resource "secrets" is masked by earlier rule "*.*"'),
])
def test_configuration_errors_read_as_kubernetes_writes_them(tmp_path: Path, rules: list[tuple[list[str], list[
        dict[str, Any]]]], message: str) -> None:
    with pytest.raises(EncryptionConfigError) as error:
        load_config(write_rules(tmp_path / "enc.yaml", rules))
    assert str(error.value).startswith("error while parsing file: ")
    assert message in str(error.value)


def test_a_valid_configuration_loads(tmp_path: Path) -> None:
    config = load_config(write_rules(tmp_path / "enc.yaml", [
        (["secrets", "configmaps"], [keyed("aescbc", ("a", K32), ("b", K16)), {"identity": {}}]),
        (["*.apps"], [keyed("secretbox", ("s", K32))])]))
    table = config.providers_by_resource()
    assert [p.type for p in table[GroupResource("", "configmaps")]] == ["aescbc", "identity"]
    assert [k.name for k in table[GroupResource("", "secrets")][0].keys] == ["a", "b"]
    assert [p.type for p in table[GroupResource("apps", "*")]] == ["secretbox"]
