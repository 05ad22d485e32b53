"""ServiceAccount admission against a real server: the ``default`` account, refusals of missing
ones with Kubernetes' text, the ``kube-api-access-*`` token volume (and opting out of it), mirror
pods, and the kube-root-ca.crt ConfigMap the root CA publisher writes into every namespace."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from pilothouse.apiserver.admission_plugins.serviceaccount import DEFAULT_WAIT
from pilothouse.components.controllers.rootcacertpublisher import DESCRIPTION
from tests.conftest import ServerProcess, start_server_process

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose data directory holds a cluster CA, as the tls work will create it."""
    data_dir = tmp_path_factory.mktemp("server")
    (data_dir / "pki").mkdir()
    (data_dir / "pki" / "ca.crt").write_text(CA_PEM)
    proc = start_server_process(data_dir)
    yield proc
    proc.stop()


def core(server: ServerProcess) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def wait_for_default_account(server: ServerProcess, ns: str) -> None:
    deadline = time.monotonic() + 20
    while server.kubectl("-n", ns, "get", "serviceaccount", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the service account controller made no default account"
        time.sleep(0.2)


def test_default_account_and_token_volume(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-token")
    created = core(server).create_namespaced_pod("sa-token", pod("p", initContainers=[
        {"name": "init", "image": "busybox"}]))
    spec = created.spec
    assert spec.service_account_name == "default" and spec.service_account == "default"
    [volume] = spec.volumes
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume.name)
    source = client.ApiClient().sanitize_for_serialization(volume.projected)
    assert source == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for container in (*spec.init_containers, *spec.containers):
        assert [(m.name, m.mount_path, m.read_only) for m in container.volume_mounts] == [
            (volume.name, MOUNT_PATH, True)]


def test_a_container_with_its_own_mount_at_the_path_keeps_it(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-own")
    mine = {"name": "mine", "mountPath": MOUNT_PATH}
    created = core(server).create_namespaced_pod("sa-own", pod("p", volumes=[{"name": "mine", "emptyDir": {}}],
                                                             containers=[
        {"name": "a", "image": "busybox", "volumeMounts": [mine]}, {"name": "b", "image": "busybox"}]))
    a, b = created.spec.containers
    assert [m.name for m in a.volume_mounts] == ["mine"]
    assert b.volume_mounts[0].name.startswith("kube-api-access-")
    assert [v.name for v in created.spec.volumes] == ["mine", b.volume_mounts[0].name]


def test_automount_opt_out_on_pod_or_account(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-optout")
    api = core(server)
    opted_out = api.create_namespaced_pod("sa-optout", pod("pod-says-no", automountServiceAccountToken=False))
    assert opted_out.spec.volumes is None and opted_out.spec.containers[0].volume_mounts is None
    api.create_namespaced_service_account("sa-optout", {"metadata": {"name": "quiet"},
                                                        "automountServiceAccountToken": False,
                                                        "imagePullSecrets": [{"name": "regcred"}]})
    quiet = api.create_namespaced_pod("sa-optout", pod("account-says-no", serviceAccountName="quiet"))
    assert quiet.spec.volumes is None
    assert [s.name for s in quiet.spec.image_pull_secrets] == ["regcred"]  # the account's pull secrets
    # The pod's own choice wins over the account's.
    loud = api.create_namespaced_pod("sa-optout", pod("pod-says-yes", serviceAccountName="quiet",
                                                      automountServiceAccountToken=True))
    assert loud.spec.volumes[0].name.startswith("kube-api-access-")


def test_enforce_mountable_secrets(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-secrets")
    api = core(server)
    api.create_namespaced_service_account("sa-secrets", {
        "metadata": {"name": "strict", "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}},
        "secrets": [{"name": "allowed"}]})
    allowed = pod("ok", serviceAccountName="strict", volumes=[{"name": "s", "secret": {"secretName": "allowed"}}])
    assert api.create_namespaced_pod("sa-secrets", allowed).metadata.name == "ok"
    for name, spec, reason in (
        ("vol", {"volumes": [{"name": "s", "secret": {"secretName": "other"}}]},
         'volume with secret.secretName="other" is not allowed because service account strict does not reference '
         "that secret"),
        ("env", {"containers": [{"name": "c", "image": "busybox", "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]}]},
         'container c with envVar PW referencing secret.secretName="other" is not allowed because service account '
         "strict does not reference that secret"),
        ("envfrom", {"initContainers": [{"name": "i", "image": "busybox", "envFrom": [{"secretRef": {
            "name": "other"}}]}]},
         'init container i with envFrom referencing secret.secretName="other" is not allowed because service '
         "account strict does not reference that secret"),
        ("pull", {"imagePullSecrets": [{"name": "regcred"}]},
         'imagePullSecrets[0].name="regcred" is not allowed because service account strict does not reference '
         "that imagePullSecret")):
        with pytest.raises(client.ApiException) as refused:
            api.create_namespaced_pod("sa-secrets", pod(name, serviceAccountName="strict", **spec))
        assert refused.value.status == 403
        assert json.loads(refused.value.body)["message"] == f'pods "{name}" is forbidden: {reason}'


def test_a_missing_account_is_refused(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-missing")
    wait_for_default_account(server, "sa-missing")
    manifest = json.dumps(pod("ghost", serviceAccountName="nobody") | {"metadata": {"name": "ghost",
                                                                                   "namespace": "sa-missing"}})
    refused = server.kubectl("create", "-f", "-", input=manifest, check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "ghost" is forbidden: error looking up '
        'service account sa-missing/nobody: serviceaccount "nobody" not found')
    # Once the account exists the same pod is admitted.
    server.kubectl("-n", "sa-missing", "create", "serviceaccount", "nobody")
    assert server.kubectl("create", "-f", "-", input=manifest).stdout.strip() == "pod/ghost created"


def test_a_deleted_default_account_is_waited_for_then_refused(server: ServerProcess) -> None:
    api = core(server)
    server.kubectl("create", "namespace", "sa-nodefault")
    wait_for_default_account(server, "sa-nodefault")
    # While the controller recreates a deleted default account, pod creates wait for it.
    api.delete_namespaced_service_account("default", "sa-nodefault")
    assert api.create_namespaced_pod("sa-nodefault", pod("waits")).spec.service_account_name == "default"


def test_without_a_service_account_controller_pods_are_refused(tmp_path: Path) -> None:
    """Kubernetes refuses a pod whose ``default`` account never appears, after waiting for it."""
    bare = start_server_process(tmp_path, extra=("--disable", "scheduler,controller-manager"))
    try:
        started = time.monotonic()
        refused = bare.kubectl("run", "p", "--image=busybox", check=False)
        assert time.monotonic() - started >= DEFAULT_WAIT
        assert refused.stderr.strip() == (
            'Error from server (Forbidden): pods "p" is forbidden: error looking up service account '
            'default/default: serviceaccount "default" not found')
    finally:
        bare.stop()


def test_mirror_pods_are_not_mutated_and_may_not_reference_accounts(server: ServerProcess) -> None:
    server.kubectl("create", "namespace", "sa-mirror")
    api = core(server)
    mirror = {"name": "static-node1", "annotations": {"kubernetes.io/config.mirror": "abc"}}
    created = api.create_namespaced_pod("sa-mirror", {**pod("x"), "metadata": mirror})
    assert created.spec.service_account_name is None and created.spec.volumes is None
    for spec, reason in (({"serviceAccountName": "default"}, "a mirror pod may not reference service accounts"),
                         ({"volumes": [{"name": "s", "secret": {"secretName": "s"}}]},
                          "a mirror pod may not reference secrets")):
        with pytest.raises(client.ApiException) as refused:
            api.create_namespaced_pod("sa-mirror", {**pod("y", **spec), "metadata": {**mirror, "name": "y"}})
        assert refused.value.status == 403
        assert json.loads(refused.value.body)["message"] == f'pods "y" is forbidden: {reason}'


def test_root_ca_configmap_in_every_namespace(server: ServerProcess) -> None:
    api = core(server)
    api.create_namespace({"metadata": {"name": "sa-rootca"}})
    deadline = time.monotonic() + 20
    while True:
        try:
            cm = api.read_namespaced_config_map("kube-root-ca.crt", "sa-rootca")
            break
        except client.ApiException as error:
            assert error.status == 404 and time.monotonic() < deadline, "kube-root-ca.crt was not published"
            time.sleep(0.2)
    assert cm.data == {"ca.crt": CA_PEM}
    assert cm.metadata.annotations == {"kubernetes.io/description": DESCRIPTION}
    for ns in ("default", "kube-system", "kube-public"):
        assert api.read_namespaced_config_map("kube-root-ca.crt", ns).data == {"ca.crt": CA_PEM}
    # Edited or deleted, it is put back.
    api.patch_namespaced_config_map("kube-root-ca.crt", "sa-rootca", {"data": {"ca.crt": "tampered"}})
    deadline = time.monotonic() + 20
    while api.read_namespaced_config_map("kube-root-ca.crt", "sa-rootca").data != {"ca.crt": CA_PEM}:
        assert time.monotonic() < deadline, "the tampered kube-root-ca.crt was not restored"
        time.sleep(0.2)
