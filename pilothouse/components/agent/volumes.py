"""Pod volumes on the node's disk: what each container's bind mounts point at.

Every volume lives under ``<root-dir>/pods/<uid>/volumes/<plugin>/<name>`` as the kubelet lays it
out; hostPath volumes are the host path itself. ConfigMap, Secret, downwardAPI and projected volumes
are written as files the way the kubelet's AtomicWriter does (``pkg/volume/util/atomic_writer.go``):
each version in a ``..<timestamp>`` directory, a ``..data`` symlink renamed over to switch versions,
and every visible name a symlink through ``..data``, so that a reader never sees half an update.
Service-account token projections hold a real token from the TokenRequest API
(components/agent/satoken.py), rewritten before 80% of its lifetime has passed.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

from pilothouse.components.agent.env import Fetch, field_ref_value, resource_field_value
from pilothouse.components.agent.runtime.interface import Mount
from pilothouse.components.agent.satoken import TokenManager
from pilothouse.machinery.meta import Object

__all__ = ["VolumeError", "container_mounts", "pod_dir", "prepare_volumes", "remove_pod_dir"]

DATA_LINK = "..data"


class VolumeError(Exception):
    """A volume cannot be set up yet (FailedMount): the container stays ContainerCreating."""


def pod_dir(root_dir: Path, uid: str) -> Path:
    return root_dir / "pods" / uid


def remove_pod_dir(root_dir: Path, uid: str) -> None:
    shutil.rmtree(pod_dir(root_dir, uid), ignore_errors=True)


def _write_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Replace a volume's content with these files (relative path -> (data, mode)), atomically:
    the new version goes to a fresh ``..<timestamp>`` directory, ``..data`` is switched to it by a
    rename (atomic on POSIX), then the visible top-level names are (re)linked and the old version
    removed -- the AtomicWriter's order, so that no reader sees a mix of two versions."""
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o755)
    version = Path(tempfile.mkdtemp(prefix="..", dir=target))
    for relative, (data, mode) in files.items():
        path = version / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
    os.chmod(version, 0o755)
    data_link = target / DATA_LINK
    staging = target / (DATA_LINK + "_tmp")
    staging.unlink(missing_ok=True)
    staging.symlink_to(version.name)
    os.replace(staging, data_link)
    visible = {Path(relative).parts[0] for relative in files}
    for entry in list(target.iterdir()):
        if entry.name.startswith(".."):
            if entry.name not in (DATA_LINK, version.name):  # the previous version
                _remove(entry)
        elif entry.name not in visible or not entry.is_symlink():
            # a file from before this layout, or a name the new version no longer has
            _remove(entry)
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(Path(DATA_LINK) / name)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _key_files(data: dict[str, bytes], items: list[Object] | None, default_mode: int, what: str,
               optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"configmap/secret references non-existent key {key} in {what}")
        files[item.get("path") or key] = (data[key], int(item.get("mode") or default_mode))
    return files


async def _object_files(fetch: Fetch, kind: str, namespace: str, source: Object,
                        default_mode: int) -> dict[str, tuple[bytes, int]]:
    name = source.get("name") or source.get("secretName") or ""
    obj = await fetch(kind, namespace, name)
    # kube-root-ca.crt is published only when the cluster has a CA file (root-ca-cert-publisher):
    # do not block pods on it
    optional = bool(source.get("optional")) or name == "kube-root-ca.crt"
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f'{"configmap" if kind == "configmaps" else "secret"} "{name}" not found')
    data: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        data[key] = base64.b64decode(value) if kind == "secrets" else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value)
    return _key_files(data, source.get("items"), int(source.get("defaultMode") or default_mode),
                      f"{namespace}/{name}", optional)


def _downward_files(pod: Object, items: list[Object], default_mode: int, pod_ip: str, host_ip: str,
                    allocatable: dict[str, str]) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items:
        if "fieldRef" in item:
            value = field_ref_value(pod, item["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            value = resource_field_value(containers.get(ref.get("containerName"), {}), ref, allocatable)
        else:
            continue
        files[item.get("path", "")] = (value.encode(), int(item.get("mode") or default_mode))
    return files


async def prepare_volumes(pod: Object, root_dir: Path, fetch: Fetch, *, pod_ip: str, host_ip: str,
                          allocatable: dict[str, str], tokens: TokenManager) -> dict[str, Path]:
    """Set up every volume of the pod; returns volume name -> host path."""
    metadata = pod.get("metadata") or {}
    namespace = metadata.get("namespace", "default")
    base = pod_dir(root_dir, metadata.get("uid", "unknown")) / "volumes"
    paths: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume.get("name", "")
        try:
            if "hostPath" in volume:
                source = volume["hostPath"]
                path = Path(source.get("path", "/"))
                kind = source.get("type") or ""
                if kind == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                elif kind == "FileOrCreate" and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                elif kind in ("Directory", "File", "Socket") and not path.exists():
                    raise VolumeError(f"hostPath type check failed: {path} is not a {kind.lower()}")
                paths[name] = path
            elif "configMap" in volume:
                source = volume["configMap"]
                target = base / "kubernetes.io~configmap" / name
                _write_files(target, await _object_files(fetch, "configmaps", namespace, source, 0o644))
                paths[name] = target
            elif "secret" in volume:
                source = volume["secret"]
                target = base / "kubernetes.io~secret" / name
                _write_files(target, await _object_files(fetch, "secrets", namespace, source, 0o644))
                paths[name] = target
            elif "downwardAPI" in volume:
                source = volume["downwardAPI"]
                target = base / "kubernetes.io~downward-api" / name
                _write_files(target, _downward_files(pod, source.get("items") or [],
                                                     int(source.get("defaultMode") or 0o644), pod_ip, host_ip,
                                                     allocatable))
                paths[name] = target
            elif "projected" in volume:
                source = volume["projected"]
                mode = int(source.get("defaultMode") or 0o644)
                files: dict[str, tuple[bytes, int]] = {}
                for projection in source.get("sources") or []:
                    if "configMap" in projection:
                        files.update(await _object_files(fetch, "configmaps", namespace, projection["configMap"], mode))
                    elif "secret" in projection:
                        files.update(await _object_files(fetch, "secrets", namespace, projection["secret"], mode))
                    elif "downwardAPI" in projection:
                        files.update(_downward_files(pod, projection["downwardAPI"].get("items") or [], mode,
                                                     pod_ip, host_ip, allocatable))
                    elif "serviceAccountToken" in projection:
                        # ServiceAccount admission's kube-api-access-* volume, or the user's own audience
                        token_source = projection["serviceAccountToken"]
                        try:
                            token = await tokens.token(pod, token_source)
                        except Exception as error:  # the kubelet: FailedMount, retried
                            raise VolumeError(f"failed to fetch token: {error}") from error
                        files[token_source.get("path", "token")] = (token.encode(), mode)
                target = base / "kubernetes.io~projected" / name
                _write_files(target, files)
                paths[name] = target
            else:  # emptyDir and anything we do not know: a directory on the node's disk
                target = base / "kubernetes.io~empty-dir" / name
                target.mkdir(parents=True, exist_ok=True)
                os.chmod(target, 0o777)
                paths[name] = target
        except VolumeError as error:
            # the kubelet's FailedMount words: which volume, then why
            raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {error}') from error
    return paths


def container_mounts(container: Object, volumes: dict[str, Path]) -> list[Mount]:
    mounts = []
    for mount in container.get("volumeMounts") or []:
        source = volumes.get(mount.get("name", ""))
        if source is None:
            raise VolumeError(f"volume {mount.get('name')} not found")
        sub = mount.get("subPath") or ""
        if sub:
            source = source / sub
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(source), mount.get("mountPath", ""), bool(mount.get("readOnly"))))
    return mounts
