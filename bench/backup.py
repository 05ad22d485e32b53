"""Backup and restore time for a SQLite store of N pods (issue 15's figure: 10,000 pods).

Fills ``<tmp>/data/state.db`` through ``SQLiteStore.create`` with pods shaped like the ones the API
server stores (spec, status, managedFields: ~3 KB of JSON each; the history log keeps every create,
as before the first compaction), then times the real commands, each as a fresh process:
``pilothouse backup`` and ``pilothouse restore``, and prints the store and archive sizes.

Usage: ``.venv/bin/python bench/backup.py [--pods 10000]``. One run, a few seconds of writes; removes
its temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pilothouse.store.sqlite import SQLiteStore

__all__ = ["main"]


def pod(i: int) -> dict[str, Any]:
    name = f"web-{i:05d}"
    container = {"name": "web", "image": "registry.local/web:1.2.3", "ports": [{"containerPort": 8080,
                                                                                  "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                 "imagePullPolicy": "IfNotPresent",
                 "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"00000000-0000-0000-0000-{i:012d}",
                     "labels": {"app": "web", "pod-template-hash": "5d8f7c9b6"},
                     "creationTimestamp": "2026-12-03T10:00:00Z", "generateName": "web-5d8f7c9b6-",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b6",
                                          "uid": "11111111-2222-3333-4444-555555555555", "controller": True,
                                          "blockOwnerDeletion": True}],
                     "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                        "apiVersion": "v1", "time": "2026-12-03T10:00:00Z", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {
                                            ".": {}, "f:app": {}, "f:pod-template-hash": {}}},
                                            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                                                ".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}}}}}]},
        "spec": {"containers": [container], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "nodeName": f"node-{i % 100}", "schedulerName": "default-scheduler",
                 "terminationGracePeriodSeconds": 30, "priority": 0, "enableServiceLinks": True,
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}],
                 "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                     {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}]},
        "status": {"phase": "Running", "podIP": f"10.244.{i // 250}.{i % 250}", "hostIP": "10.0.0.1",
                   "startTime": "2026-12-03T10:00:01Z", "qosClass": "Burstable",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-12-03T10:00:02Z"}
                                  for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                   "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "started": True,
                                          "image": "registry.local/web:1.2.3", "imageID": "sha256:" + "ab" * 32,
                                          "containerID": "docker://" + f"{i:064x}",
                                          "state": {"running": {"startedAt": "2026-12-03T10:00:02Z"}}}]},
    }


async def fill(path: Path, pods: int) -> None:
    async with SQLiteStore(path, compact_interval=None) as store:
        batch = 200  # concurrent creates: the writer commits each group with one fsync
        for start in range(0, pods, batch):
            await asyncio.gather(*(store.create(f"/registry/pods/default/web-{i:05d}", json.dumps(pod(i)).encode())
                                   for i in range(start, min(start + batch, pods))))


def timed(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pilothouse", *args], check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        data = Path(tmp) / "data"
        started = time.monotonic()
        asyncio.run(fill(data / "state.db", args.pods))
        print(f"filled {args.pods} pods in {time.monotonic() - started:.1f}s; "
              f"store {(data / 'state.db').stat().st_size / 1e6:.1f} MB")
        archive = Path(tmp) / "backup.tar.gz"
        backup_s = timed("backup", "--data-dir", str(data), "-o", str(archive))
        restore_s = timed("restore", str(archive), "--data-dir", str(Path(tmp) / "restored"))
        print(f"backup  {backup_s:.2f}s  archive {archive.stat().st_size / 1e6:.1f} MB")
        print(f"restore {restore_s:.2f}s  store {(Path(tmp) / 'restored' / 'state.db').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
