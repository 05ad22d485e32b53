"""Defaulting of the built-in kinds matches what Kubernetes 1.32 stores."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from pilothouse.machinery.kinds import BUILTIN_RESOURCES, apps, batch, core, other
from pilothouse.machinery.kinds.defaults_core import image_pull_policy

DEFAULTED_CONTAINER = {
    "name": "web",
    "image": "nginx:1.27",
    "imagePullPolicy": "IfNotPresent",
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "resources": {},
}
DEFAULTED_TEMPLATE_SPEC = {
    "containers": [DEFAULTED_CONTAINER],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}


def _template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}


def test_minimal_deployment_defaults_match_kubernetes() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template()}}
    apps.DEPLOYMENT.default(deployment)
    assert deployment["spec"] == {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": DEFAULTED_TEMPLATE_SPEC},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }


def test_recreate_deployment_gets_no_rolling_update() -> None:
    deployment = {"metadata": {}, "spec": {"strategy": {"type": "Recreate"}, "template": _template()}}
    apps.DEPLOYMENT.default(deployment)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_pod_defaults_include_admission_additions() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": "1"}},
        "livenessProbe": {"httpGet": {"port": 80}},
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    }], "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "tmp"}]}}
    core.POD.default(pod)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "Always"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}
    assert container["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                          "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                          "failureThreshold": 3}
    assert container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"] == [{"name": "cfg", "configMap": {"name": "x", "defaultMode": 420}},
                               {"name": "tmp", "emptyDir": {}}]
    assert spec["enableServiceLinks"] is True
    # priority, the default tolerations and the service account are admission's
    # (tests/apiserver/test_admission_plugins.py, test_serviceaccount_admission.py)
    assert "priority" not in spec and "tolerations" not in spec and "serviceAccountName" not in spec


def test_pod_templates_do_not_get_pod_only_defaults() -> None:
    deployment = {"metadata": {}, "spec": {"template": _template()}}
    apps.DEPLOYMENT.default(deployment)
    spec = deployment["spec"]["template"]["spec"]
    for key in ("enableServiceLinks", "tolerations", "priority", "serviceAccountName"):
        assert key not in spec


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.27", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"),
    ("localhost:5000/nginx:v1", "IfNotPresent"),
    ("registry.k8s.io/pause:3.10", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ("NGINX", "IfNotPresent"),  # unparsable: no tag, as ParseImageName fails
    ("", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_explicit_pull_policy_is_kept() -> None:
    pod = {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}
    core.POD.default(pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_service_defaults() -> None:
    service = {"metadata": {"name": "s"}, "spec": {"selector": {"app": "web"},
                                                   "ports": [{"port": 80}, {"port": 53, "protocol": "UDP",
                                                                            "targetPort": "dns"}]}}
    core.SERVICE.default(service)
    assert service["spec"] == {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                  {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
        "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
    }


def test_nodeport_and_headless_and_external_name_services() -> None:
    node_port = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    core.SERVICE.default(node_port)
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    balancer = {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    core.SERVICE.default(balancer)
    assert balancer["spec"]["allocateLoadBalancerNodePorts"] is True
    headless = {"spec": {"clusterIP": "None"}}
    core.SERVICE.default(headless)
    assert headless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert headless["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    external = {"spec": {"type": "ExternalName", "externalName": "example.com"}}
    core.SERVICE.default(external)
    assert "ipFamilies" not in external["spec"] and "internalTrafficPolicy" not in external["spec"]
    client_ip = {"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]}}
    core.SERVICE.default(client_ip)
    assert client_ip["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_statefulset_daemonset_defaults() -> None:
    sts = {"metadata": {}, "spec": {"serviceName": "s", "template": _template(), "volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}
    apps.STATEFULSET.default(sts)
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["volumeClaimTemplates"][0] == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}
    ds = {"metadata": {}, "spec": {"template": _template()}}
    apps.DAEMONSET.default(ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10


def test_job_and_cronjob_defaults() -> None:
    job = {"metadata": {"name": "j"}, "spec": {"template": _template()}}
    batch.JOB.default(job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert job["metadata"]["labels"] == {"app": "web"}  # copied from the template
    parallel = {"metadata": {}, "spec": {"parallelism": 3, "template": _template()}}
    batch.JOB.default(parallel)
    assert "completions" not in parallel["spec"]
    cron = {"metadata": {}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": _template()}}}}
    batch.CRONJOB.default(cron)
    assert cron["spec"]["concurrencyPolicy"] == "Allow"
    assert (cron["spec"]["successfulJobsHistoryLimit"], cron["spec"]["failedJobsHistoryLimit"]) == (3, 1)
    assert cron["spec"]["suspend"] is False
    # SetDefaults_Job does not apply to job templates; the pod template is defaulted.
    assert "backoffLimit" not in cron["spec"]["jobTemplate"]["spec"]
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_small_kinds_defaults() -> None:
    namespace = {"metadata": {"name": "team"}}
    core.NAMESPACE.default(namespace)
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    secret: dict[str, Any] = {"metadata": {"name": "s"}}
    core.SECRET.default(secret)
    assert secret["type"] == "Opaque"
    node = {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4"}}}
    core.NODE.default(node)
    assert node["status"]["allocatable"] == {"cpu": "4"}
    eps = {"metadata": {}, "ports": [{"port": 80}]}
    other.ENDPOINTSLICE.default(eps)
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    limits = {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}
    core.LIMITRANGE.default(limits)
    item = limits["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"} and item["defaultRequest"] == {"cpu": "2", "memory": "1Mi"}


def _sample(kind: str) -> dict[str, Any]:
    template = _template()
    template["spec"]["containers"][0].update({"ports": [{"containerPort": 80}],
                                              "readinessProbe": {"httpGet": {"port": 80}}})
    samples: dict[str, dict[str, Any]] = {
        "Pod": {"spec": copy.deepcopy(template["spec"])},
        "Deployment": {"spec": {"template": template}},
        "ReplicaSet": {"spec": {"template": template}},
        "StatefulSet": {"spec": {"template": template, "volumeClaimTemplates": [{"spec": {}}]}},
        "DaemonSet": {"spec": {"template": template}},
        "Job": {"spec": {"template": template}},
        "CronJob": {"spec": {"jobTemplate": {"spec": {"template": template}}}},
        "Service": {"spec": {"ports": [{"port": 80}], "type": "LoadBalancer"}},
    }
    obj = samples.get(kind, {})
    obj.setdefault("metadata", {"name": "x"})
    return obj


@pytest.mark.parametrize("resource", BUILTIN_RESOURCES, ids=lambda r: f"{r.group}/{r.kind}")
def test_defaulting_is_idempotent(resource: Any) -> None:
    obj = _sample(resource.kind)
    resource.strategy.default(obj)
    once = copy.deepcopy(obj)
    resource.strategy.default(obj)
    assert obj == once


def test_pod_defaulting_is_fast() -> None:
    pod = _sample("Pod")
    core.POD.default(pod)
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        core.POD.default(copy.deepcopy(pod))
    per_pod = (time.perf_counter() - started) / runs
    assert per_pod < 0.0002
