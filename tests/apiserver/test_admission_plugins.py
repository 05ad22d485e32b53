"""The default admission plugins against a real server: the official client and kubectl.

LimitRanger, ResourceQuota (with the quota controller the server runs), Priority,
DefaultTolerationSeconds and DefaultStorageClass, plus the PriorityClass and StorageClass kinds.
The plugins' rules on plain dicts are in tests/machinery/test_admission_rules.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from tests.conftest import ServerProcess, start_server_process
from tests.store.etcd_server import EtcdCluster, etcd_binary

T = TypeVar("T")


def api(server: ServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


def namespace(server: ServerProcess, name: str) -> str:
    client.CoreV1Api(api(server)).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def pod(name: str, **resources: dict[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if resources:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container]}}


def forbidden(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(client.ApiException) as refused:
        call()
    assert refused.value.status == 403, refused.value.body
    status: dict[str, Any] = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    return status


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def create_config_maps_at_once(servers: list[ServerProcess], ns: str) -> list[int]:
    """One ConfigMap create per entry of ``servers``, through that server, all at once: the sorted
    HTTP statuses."""
    outcomes: list[int] = []

    def create(i: int) -> None:
        try:
            client.CoreV1Api(api(servers[i])).create_namespaced_config_map(ns, {"metadata": {"name": f"cm{i}"}})
            outcomes.append(201)
        except client.ApiException as error:
            outcomes.append(error.status)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


# -- LimitRanger -------------------------------------------------------------------------------

def test_limit_range_defaults_land_on_a_created_pod(server: ServerProcess) -> None:
    ns = namespace(server, "limits-default")
    core = client.CoreV1Api(api(server))
    core.create_namespaced_limit_range(ns, {"metadata": {"name": "defaults"}, "spec": {"limits": [{
        "type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
        "defaultRequest": {"cpu": "250m"}}]}})
    created = core.create_namespaced_pod(ns, pod("p"))
    resources = created.spec.containers[0].resources
    assert resources.limits == {"cpu": "500m", "memory": "128Mi"}
    # defaultRequest for cpu; memory's request comes from its default (SetDefaults_LimitRangeItem)
    assert resources.requests == {"cpu": "250m", "memory": "128Mi"}
    assert created.status.qos_class == "Burstable"  # computed from what LimitRanger set
    assert created.metadata.annotations["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c")
    # What the pod set itself is kept.
    own = core.create_namespaced_pod(ns, pod("own", limits={"cpu": "1"}, requests={"cpu": "1"}))
    assert own.spec.containers[0].resources.limits == {"cpu": "1", "memory": "128Mi"}


def test_limit_range_min_and_max_are_refused_with_kubernetes_messages(server: ServerProcess) -> None:
    ns = namespace(server, "limits-bounds")
    core = client.CoreV1Api(api(server))
    core.create_namespaced_limit_range(ns, {"metadata": {"name": "bounds"}, "spec": {"limits": [{
        "type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}}]}})
    too_big = forbidden(lambda: core.create_namespaced_pod(
        ns, pod("big", limits={"cpu": "2", "memory": "512Mi"})))
    assert too_big["message"] == 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    assert too_big["details"] == {"name": "big", "kind": "pods"}
    too_small = forbidden(lambda: core.create_namespaced_pod(
        ns, pod("small", limits={"cpu": "50m", "memory": "512Mi"})))
    assert too_small["message"] == (
        'pods "small" is forbidden: minimum cpu usage per Container is 100m, but request is 50m')
    # Max defaults the limit (SetDefaults_LimitRangeItem), so a pod without resources fits.
    fits = core.create_namespaced_pod(ns, pod("fits"))
    assert fits.spec.containers[0].resources.limits == {"cpu": "1", "memory": "1Gi"}
    # kubectl shows the same refusal.
    result = server.kubectl("run", "cli", "-n", ns, "--image=busybox", "--restart=Never",
                            "--overrides", json.dumps({"spec": {"containers": [
                                {"name": "cli", "image": "busybox", "resources": {"limits": {"cpu": "3"}}}]}}),
                            check=False)
    assert result.returncode != 0
    assert 'Error from server (Forbidden): pods "cli" is forbidden: maximum cpu usage per Container is 1, ' \
           'but limit is 3' in result.stderr


# -- ResourceQuota -----------------------------------------------------------------------------

def _quota_ready(core: client.CoreV1Api, ns: str, name: str) -> Callable[[], Any]:
    def check() -> Any:
        status = core.read_namespaced_resource_quota(name, ns).status
        return status if status and status.hard and status.used is not None else None
    return check


def test_quota_counts_and_refuses_with_the_exact_message(server: ServerProcess) -> None:
    ns = namespace(server, "quota-count")
    core = client.CoreV1Api(api(server))
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "compute"}, "spec": {"hard": {
        "pods": "2", "requests.cpu": "1", "requests.memory": "1Gi", "limits.memory": "2Gi"}}})
    status = eventually(_quota_ready(core, ns, "compute"), "the controller to fill status")
    assert status.hard == {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi", "limits.memory": "2Gi"}
    assert status.used == {"pods": "0", "requests.cpu": "0", "requests.memory": "0", "limits.memory": "0"}

    resources = {"requests": {"cpu": "400m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    core.create_namespaced_pod(ns, pod("a", **resources))
    assert core.read_namespaced_resource_quota("compute", ns).status.used == {
        "pods": "1", "requests.cpu": "400m", "requests.memory": "256Mi", "limits.memory": "512Mi"}
    core.create_namespaced_pod(ns, pod("b", **resources))
    refused = forbidden(lambda: core.create_namespaced_pod(ns, pod("c", **resources)))
    assert refused["message"] == (
        'pods "c" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=400m, '
        'used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1')
    # A pod without the requests the quota constrains is refused before counting.
    missing = forbidden(lambda: core.create_namespaced_pod(ns, pod("bare")))
    assert missing["message"] == ('pods "bare" is forbidden: failed quota: compute: must specify '
                                  'limits.memory for: c; requests.cpu for: c; requests.memory for: c')
    # Deleting a pod gives its usage back once the controller recounts.
    core.delete_namespaced_pod("a", ns, grace_period_seconds=0)
    eventually(lambda: core.read_namespaced_resource_quota("compute", ns).status.used["pods"] == "1",
               "the controller to release the deleted pod")
    core.create_namespaced_pod(ns, pod("c", **resources))

    # kubectl describe quota shows used against hard.
    described = server.kubectl("describe", "quota", "compute", "-n", ns).stdout
    lines = {tuple(line.split()) for line in described.splitlines()}
    assert ("pods", "2", "2") in lines
    assert ("requests.cpu", "800m", "1") in lines
    assert ("requests.memory", "512Mi", "1Gi") in lines


def test_quota_object_counts_dry_run_and_concurrency(server: ServerProcess) -> None:
    ns = namespace(server, "quota-objects")
    core = client.CoreV1Api(api(server))
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "objects"}, "spec": {"hard": {
        "configmaps": "5", "count/secrets": "1", "services.nodeports": "0"}}})
    eventually(_quota_ready(core, ns, "objects"), "the controller to fill status")
    # A dry run is checked but not charged.
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    assert core.read_namespaced_resource_quota("objects", ns).status.used["configmaps"] == "0"

    # Concurrent creates: exactly as many succeed as the quota allows.
    assert create_config_maps_at_once([server] * 12, ns) == [201] * 5 + [403] * 7
    assert len(core.list_namespaced_config_map(ns).items) == 5
    assert core.read_namespaced_resource_quota("objects", ns).status.used["configmaps"] == "5"
    # Replenishment: a deleted ConfigMap is given back at once, not at the next full resync.
    core.delete_namespaced_config_map(core.list_namespaced_config_map(ns).items[0].metadata.name, ns)
    eventually(lambda: core.read_namespaced_resource_quota("objects", ns).status.used["configmaps"] == "4",
               "the controller to give the deleted ConfigMap back", timeout=10)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "again"}})

    core.create_namespaced_secret(ns, {"metadata": {"name": "s1"}})
    refused = forbidden(lambda: core.create_namespaced_secret(ns, {"metadata": {"name": "s2"}}))
    assert refused["message"] == ('secrets "s2" is forbidden: exceeded quota: objects, requested: '
                                  'count/secrets=1, used: count/secrets=1, limited: count/secrets=1')
    refused = forbidden(lambda: core.create_namespaced_service(ns, {"metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80}]}}))
    assert refused["message"] == ('services "np" is forbidden: exceeded quota: objects, requested: '
                                  'services.nodeports=1, used: services.nodeports=0, limited: services.nodeports=0')
    core.create_namespaced_service(ns, {"metadata": {"name": "cip"}, "spec": {"ports": [{"port": 80}]}})


def test_quota_counts_any_resource(server: ServerProcess) -> None:
    ns = namespace(server, "quota-generic")
    core = client.CoreV1Api(api(server))
    apps = client.AppsV1Api(api(server))
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "apps"}, "spec": {"hard": {
        "count/deployments.apps": "1"}}})
    eventually(_quota_ready(core, ns, "apps"), "the controller to fill status")
    deployment = {"metadata": {"name": "one"}, "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "replicas": 0,
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    apps.create_namespaced_deployment(ns, deployment)
    refused = forbidden(lambda: apps.create_namespaced_deployment(ns, {**deployment, "metadata": {"name": "two"}}))
    assert refused["message"] == ('deployments.apps "two" is forbidden: exceeded quota: apps, requested: '
                                  'count/deployments.apps=1, used: count/deployments.apps=1, '
                                  'limited: count/deployments.apps=1')
    assert refused["details"] == {"name": "two", "group": "apps", "kind": "deployments"}
    # The controller counts deployments too (through discovery): deleting one frees the quota.
    apps.delete_namespaced_deployment("one", ns)
    core.patch_namespaced_resource_quota("apps", ns, {"spec": {"hard": {"count/deployments.apps": "2"}}})
    eventually(lambda: core.read_namespaced_resource_quota("apps", ns).status.used == {"count/deployments.apps": "0"},
               "the controller to recount deployments")


# -- Priority ----------------------------------------------------------------------------------

def test_bootstrap_priority_classes_and_pod_priority(server: ServerProcess) -> None:
    scheduling = client.SchedulingV1Api(api(server))
    core = client.CoreV1Api(api(server))
    classes = {pc.metadata.name: pc for pc in scheduling.list_priority_class().items}
    assert classes["system-cluster-critical"].value == 2000000000
    assert classes["system-node-critical"].value == 2000001000
    assert classes["system-node-critical"].preemption_policy == "PreemptLowerPriority"
    table = server.kubectl("get", "pc").stdout
    assert table.split("\n")[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    assert "system-node-critical" in table
    undeletable = forbidden(lambda: scheduling.delete_priority_class("system-node-critical"))
    assert undeletable["message"] == ('priorityclasses.scheduling.k8s.io "system-node-critical" is forbidden: '
                                      "this is a system priority class and cannot be deleted")

    ns = namespace(server, "priorities")
    critical = core.create_namespaced_pod(ns, {**pod("critical"), "spec": {
        **pod("critical")["spec"], "priorityClassName": "system-node-critical"}})
    assert critical.spec.priority == 2000001000
    assert critical.spec.preemption_policy == "PreemptLowerPriority"
    plain = core.create_namespaced_pod(ns, pod("plain"))
    assert plain.spec.priority == 0 and plain.spec.priority_class_name is None
    # DefaultTolerationSeconds
    assert [(t.key, t.effect, t.toleration_seconds) for t in plain.spec.tolerations] == [
        ("node.kubernetes.io/not-ready", "NoExecute", 300), ("node.kubernetes.io/unreachable", "NoExecute", 300)]

    refused = forbidden(lambda: core.create_namespaced_pod(ns, {**pod("ghost"), "spec": {
        **pod("ghost")["spec"], "priorityClassName": "nonexistent"}}))
    assert refused["message"] == 'pods "ghost" is forbidden: no PriorityClass with name nonexistent was found'

    scheduling.create_priority_class({"metadata": {"name": "high"}, "value": 1000, "globalDefault": True,
                                      "preemptionPolicy": "Never", "description": "test default"})
    try:
        defaulted = core.create_namespaced_pod(ns, pod("defaulted"))
        assert defaulted.spec.priority_class_name == "high"
        assert defaulted.spec.priority == 1000 and defaulted.spec.preemption_policy == "Never"
        second = forbidden(lambda: scheduling.create_priority_class(
            {"metadata": {"name": "second"}, "value": 5, "globalDefault": True}))
        assert second["message"] == ('priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass high '
                                     'is already marked as default. Only one default can exist')
        # Pods keep their priority on update even when the request leaves it out.
        patched = core.patch_namespaced_pod("defaulted", ns, {"metadata": {"labels": {"x": "y"}}})
        assert patched.spec.priority == 1000
    finally:
        scheduling.delete_priority_class("high")


def test_priority_class_validation(server: ServerProcess) -> None:
    scheduling = client.SchedulingV1Api(api(server))

    def invalid(body: dict[str, Any], message: str, replace: bool = False) -> None:
        with pytest.raises(client.ApiException) as refused:
            if replace:
                scheduling.replace_priority_class(body["metadata"]["name"], body)
            else:
                scheduling.create_priority_class(body)
        assert refused.value.status == 422, refused.value.body
        assert json.loads(refused.value.body)["message"] == message

    invalid({"metadata": {"name": "system-mine"}, "value": 10},
            'PriorityClass.scheduling.k8s.io "system-mine" is invalid: metadata.name: Forbidden: priority class '
            "names with 'system-' prefix are reserved for system use only. error: system-mine is not a known "
            "system priority class")
    invalid({"metadata": {"name": "huge"}, "value": 1000000001},
            'PriorityClass.scheduling.k8s.io "huge" is invalid: value: Forbidden: maximum allowed value of a '
            "user defined priority is 1000000000")
    created = scheduling.create_priority_class({"metadata": {"name": "mid"}, "value": 7})
    assert created.preemption_policy == "PreemptLowerPriority" and not created.global_default
    body = scheduling.read_priority_class("mid").to_dict()
    invalid({"metadata": {"name": "mid", "resourceVersion": body["metadata"]["resource_version"]}, "value": 8},
            'PriorityClass.scheduling.k8s.io "mid" is invalid: value: Forbidden: may not be changed in an update.',
            replace=True)


# -- StorageClass and DefaultStorageClass ------------------------------------------------------

def test_storage_class_kind(server: ServerProcess) -> None:
    storage = client.StorageV1Api(api(server))
    created = storage.create_storage_class({"metadata": {"name": "fast", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "example.com/fast",
        "parameters": {"type": "ssd"}})
    assert created.reclaim_policy == "Delete" and created.volume_binding_mode == "Immediate"
    with pytest.raises(client.ApiException) as refused:
        storage.patch_storage_class("fast", {"parameters": {"type": "hdd"}})
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        'StorageClass.storage.k8s.io "fast" is invalid: parameters: Forbidden: updates to parameters are forbidden.')
    table = server.kubectl("get", "sc").stdout.split("\n")
    assert table[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                "ALLOWVOLUMEEXPANSION", "AGE"]
    assert table[1].split()[:5] == ["fast", "(default)", "example.com/fast", "Delete", "Immediate"]


def test_default_storage_class_on_claims(server: ServerProcess) -> None:
    """Runs once the PersistentVolumeClaim kind is served (added by the surface work)."""
    resources = client.CoreV1Api(api(server)).get_api_resources().resources
    if not any(r.name == "persistentvolumeclaims" for r in resources):
        pytest.skip("persistentvolumeclaims are not served by this build yet")
    storage = client.StorageV1Api(api(server))
    core = client.CoreV1Api(api(server))
    storage.create_storage_class({"metadata": {"name": "standard", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "example.com/standard"})
    ns = namespace(server, "claims")
    claim = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                   "resources": {"requests": {"storage": "1Gi"}}}}
    created = core.create_namespaced_persistent_volume_claim(ns, claim)
    assert created.spec.storage_class_name in ("standard", "fast")
    explicit = core.create_namespaced_persistent_volume_claim(ns, {**claim, "metadata": {"name": "none"},
                                                                   "spec": {**claim["spec"], "storageClassName": ""}})
    assert explicit.spec.storage_class_name == ""


# -- quota across API servers ------------------------------------------------------------------

@pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")
def test_quota_holds_across_two_api_servers(tmp_path: Path) -> None:
    """Each server serialises its own charges; between servers the quota's revision decides (a
    charge that lost the compare-and-swap reads the quota again), so the limit holds."""
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as etcd:
        servers = [start_server_process(tmp_path / name, extra=(
            "--datastore-endpoint", etcd.endpoint, "--disable", "scheduler,controller-manager")) for name in "ab"]
        try:
            apis = [client.CoreV1Api(api(s)) for s in servers]
            ns = namespace(servers[0], "quota-ha")
            apis[0].create_namespaced_resource_quota(ns, {"metadata": {"name": "q"}, "spec": {"hard": {
                "configmaps": "7"}}})
            # No controller runs here: fill status as it would.
            apis[0].patch_namespaced_resource_quota_status("q", ns, {"status": {
                "hard": {"configmaps": "7"}, "used": {"configmaps": "0"}}})
            assert create_config_maps_at_once(servers * 10, ns) == [201] * 7 + [403] * 13
            assert len(apis[1].list_namespaced_config_map(ns).items) == 7
            assert apis[1].read_namespaced_resource_quota("q", ns).status.used == {"configmaps": "7"}
        finally:
            for s in servers:
                s.stop()
