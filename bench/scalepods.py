"""Pods as a 5,000-node cluster stores them, for the read-path benchmarks (bench/list_scale.py,
bench/watch_fanout.py): a Deployment's pod, defaulted, bound, Running, with the projected
service-account volume, five conditions and three managedFields entries (about 3.5 KB of JSON, what
kube-apiserver stores for such a pod), and a bulk loader straight into the SQLite store.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pilothouse.apiserver.objects import encode_for_store
from pilothouse.store.sqlite import SQLiteStore

__all__ = ["bulk_load", "pod_key", "running_pod"]

_TIME = "2026-12-03T12:00:00Z"


def pod_key(namespace: str, name: str) -> str:
    return f"/registry/core/pods/{namespace}/{name}"


def running_pod(namespace: str, name: str, node: str, index: int) -> dict[str, Any]:
    uid = str(uuid.UUID(int=index + 1))
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": _TIME}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    fields_spec = {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                                  "f:ownerReferences": {".": {}, f'k:{{"uid":"{uid}"}}': {}}},
                   "f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:imagePullPolicy": {},
                                                                   "f:name": {}, "f:resources": {}}},
                              "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                              "f:terminationGracePeriodSeconds": {}}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": name.rsplit("-", 1)[0] + "-", "namespace": namespace, "uid": uid,
            "creationTimestamp": _TIME, "labels": {"app": "density", "pod-template-hash": "5d4f8c7b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "density-5d4f8c7b9",
                                 "uid": uid, "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": _TIME,
                 "fieldsType": "FieldsV1", "fieldsV1": fields_spec},
                {"manager": "kube-scheduler", "operation": "Update", "apiVersion": "v1", "time": _TIME,
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {'k:{"type":"PodScheduled"}': {".": {}, "f:status": {},
                                                                                         "f:type": {}}}}}},
                {"manager": "pilothouse-agent", "operation": "Update", "apiVersion": "v1", "time": _TIME,
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {},
                                           "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}},
            ],
        },
        "spec": {
            "containers": [{"name": "app", "image": "registry.local/pause:3.9",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                            "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": True,
                                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": node,
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "conditions": conditions, "hostIP": "10.1.0.7", "hostIPs": [{"ip": "10.1.0.7"}],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": _TIME, "qosClass": "Burstable",
            "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": _TIME}}, "lastState": {},
                                   "ready": True, "restartCount": 0, "image": "registry.local/pause:3.9",
                                   "imageID": "registry.local/pause@sha256:" + "0" * 64,
                                   "containerID": "containerd://" + uid.replace("-", "") * 2,
                                   "started": True}],
        },
    }


async def bulk_load(store: SQLiteStore, pods: int, nodes: int, namespace: str = "default",
                    concurrency: int = 2000) -> None:
    """``pods`` Running pods spread evenly over ``nodes`` nodes, created through the store's writer
    (many in flight at once, so group commit writes them in large transactions)."""
    queue = iter(range(pods))

    async def writer() -> None:
        for index in queue:
            name = f"density-5d4f8c7b9-{index:06d}"
            value = encode_for_store(running_pod(namespace, name, f"node-{index % nodes:04d}", index))
            await store.create(pod_key(namespace, name), value)

    await asyncio.gather(*(writer() for _ in range(concurrency)))
