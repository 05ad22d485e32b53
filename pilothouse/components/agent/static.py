"""Static pods: pod manifests from ``--pod-manifest-path`` (kubelet's staticPodPath), run by the agent and mirrored.

As the kubelet's file source: every ``*.yaml``/``*.yml``/``*.json`` in the directory is a pod; its
name gets the ``-<node-name>`` suffix, its uid is a hash of the manifest (so a restarted agent adopts
its containers, and an edited file is a new pod: the old one is stopped, the new one started), and
a *mirror pod* with ``kubernetes.io/config.mirror`` carries its status in the API, owned by the Node.
Deleting the mirror does not stop the static pod: the agent creates the mirror again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import orjson
import yaml

from pilothouse.machinery.meta import Object

__all__ = ["MIRROR_ANNOTATION", "load_manifests", "mirror_pod", "static_pod_from_manifest"]

log = logging.getLogger("pilothouse.agent.static")

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SOURCE_ANNOTATION = "kubernetes.io/config.source"
HASH_ANNOTATION = "kubernetes.io/config.hash"
SEEN_ANNOTATION = "kubernetes.io/config.seen"


def static_pod_from_manifest(raw: Object, node_name: str, source: str) -> Object:
    digest = hashlib.md5(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS) + node_name.encode(),
                         usedforsecurity=False).hexdigest()
    metadata = dict(raw.get("metadata") or {})
    name = f"{metadata.get('name', 'static')}-{node_name}"
    uid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    annotations = {**(metadata.get("annotations") or {}), SOURCE_ANNOTATION: "file", HASH_ANNOTATION: digest,
                   MIRROR_ANNOTATION: digest}
    spec = dict(raw.get("spec") or {})
    spec["nodeName"] = node_name
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", "IfNotPresent" if ":" in str(container.get("image", ""))
                             and not str(container.get("image", "")).endswith(":latest") else "Always")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**metadata, "name": name, "namespace": metadata.get("namespace") or "default",
                         "uid": uid, "annotations": annotations},
            "spec": spec, "status": {}, "_source": source}


def load_manifests(directory: Path, node_name: str) -> dict[str, Object]:
    """uid -> static pod, for every readable manifest (bad files are logged and skipped)."""
    pods: dict[str, Object] = {}
    if not directory.is_dir():
        return pods
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as error:
            log.warning("static pod manifest %s: %s", path, error)
            continue
        for document in documents:
            if isinstance(document, dict) and document.get("kind", "Pod") == "Pod" and document.get("spec"):
                pod = static_pod_from_manifest(document, node_name, str(path))
                pods[pod["metadata"]["uid"]] = pod
    return pods


def mirror_pod(static: Object, node_name: str, node_uid: str) -> Object:
    """The API object standing for a static pod."""
    metadata = {k: v for k, v in static["metadata"].items() if k not in ("uid", "resourceVersion")}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
                                        "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": static["spec"]}
