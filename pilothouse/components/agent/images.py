"""Image pulls for the agent: pull policies, registry credentials, and pull back-off.

Credentials come, in the kubelet's order, from the pod's ``imagePullSecrets`` (types
``kubernetes.io/dockerconfigjson`` and the legacy ``kubernetes.io/dockercfg``, the format of the
seed's registry login) and then from a node-wide file like the seed's ``/var/lib/kubelet/.dockercfg``
(either format). Every matching credential is tried until one pulls. A failed pull is
``ErrImagePull`` with the registry's message; further attempts wait in ``ImagePullBackOff``
(10 s doubling to 5 min, per pod and image, as the kubelet's image back-off).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilothouse.components.agent.backoff import Backoff
from pilothouse.components.agent.metrics import POD_STARTS
from pilothouse.components.agent.runtime.interface import ContainerRuntime, ImagePullError
from pilothouse.machinery.meta import Object
from pilothouse.machinery.protobuf.decode import go_duration

__all__ = ["ImageManager", "ImagePullFailure", "Report", "image_registry", "parse_docker_config", "pull_policy",
           "pulled_message"]

log = logging.getLogger("pilothouse.agent.images")

FetchSecret = Callable[[str, str], Awaitable[Object | None]]
#: report(type, reason, message): the kubelet's image events about one container
Report = Callable[[str, str, str], None]


def _no_report(event_type: str, reason: str, message: str) -> None:
    return None


def pulled_message(image: str, pull_seconds: float, total_seconds: float, size: int) -> str:
    """The kubelet's Pulled message (pkg/kubelet/images/image_manager.go), durations as Go prints
    them truncated to the millisecond."""
    def millis(seconds: float) -> str:
        return go_duration(int(seconds * 1000) * 1_000_000)
    return (f'Successfully pulled image "{image}" in {millis(pull_seconds)} ({millis(total_seconds)} including '
            f"waiting). Image size: {size} bytes.")


@dataclass
class ImagePullFailure(Exception):
    reason: str  # ErrImagePull | ImagePullBackOff | ErrImageNeverPull | InvalidImageName
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def image_registry(image: str) -> str:
    """The registry host of an image reference (docker.io when the first part is not a host)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _normalize_key(key: str) -> str:
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    host = key.split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def parse_docker_config(raw: bytes | str) -> list[tuple[str, str, str]]:
    """(registry host, username, password) from a ``.dockercfg`` or ``config.json``/dockerconfigjson."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    auths = data.get("auths")
    entries: dict[str, Any] = auths if isinstance(auths, dict) else data
    result = []
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            continue
        username, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                continue
        if username or password:
            result.append((_normalize_key(key), str(username), str(password)))
    return result


def pull_policy(container: Object) -> str:
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    return "Always" if "@" not in image and (":" not in tag or tag.endswith(":latest")) else "IfNotPresent"


class ImageManager:
    def __init__(self, runtime: ContainerRuntime, fetch_secret: FetchSecret, credentials_file: Path | None) -> None:
        self.runtime = runtime
        self.fetch_secret = fetch_secret
        self.credentials_file = credentials_file
        self.backoff = Backoff(10.0, 300.0)
        #: (pod uid, image) -> last error message, shown while backing off
        self._errors: dict[tuple[str, str], str] = {}

    async def _credentials(self, pod: Object, registry: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        namespace = pod["metadata"].get("namespace", "default")
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            secret = await self.fetch_secret(namespace, ref.get("name", ""))
            if secret is None:
                continue
            data = secret.get("data") or {}
            for key in (".dockerconfigjson", ".dockercfg"):
                if key in data:
                    for host, user, password in parse_docker_config(base64.b64decode(data[key])):
                        if host == registry:
                            found.append((user, password))
        if self.credentials_file is not None and self.credentials_file.exists():
            for host, user, password in parse_docker_config(self.credentials_file.read_bytes()):
                if host == registry:
                    found.append((user, password))
        return found

    async def ensure(self, pod: Object, container: Object, report: Report = _no_report) -> str:
        """The image id to run, pulling per the policy; raises :class:`ImagePullFailure`. ``report``
        receives the kubelet's events: Pulled (present or pulled), Pulling, BackOff, Failed."""
        image = str(container.get("image") or "")
        if not image:
            raise ImagePullFailure("InvalidImageName", "container image is empty")
        policy = pull_policy(container)
        present = await self.runtime.image_id(image)
        if policy == "Never":
            if present:
                report("Normal", "Pulled", f'Container image "{image}" already present on machine')
                return present
            message = f'Container image "{image}" is not present with pull policy of Never'
            report("Warning", "ErrImageNeverPull", message)
            raise ImagePullFailure("ErrImageNeverPull", message)
        if present and policy == "IfNotPresent":
            report("Normal", "Pulled", f'Container image "{image}" already present on machine')
            return present
        key = (pod["metadata"].get("uid", ""), image)
        backoff_key = f"{key[0]}/{image}"
        now = time.monotonic()
        if self.backoff.in_backoff_since(backoff_key, self.backoff.last_update(backoff_key), now) \
                and key in self._errors:
            report("Normal", "BackOff", f'Back-off pulling image "{image}"')
            raise ImagePullFailure("ImagePullBackOff",
                                   f'Back-off pulling image "{image}": ErrImagePull: {self._errors[key]}')
        report("Normal", "Pulling", f'Pulling image "{image}"')
        registry = image_registry(image)
        credentials = await self._credentials(pod, registry)
        attempts: list[dict[str, str] | None] = [
            {"username": u, "password": p, "serveraddress": registry} for u, p in credentials] or [None]
        error_message = ""
        try:
            for auth in attempts:
                pull_started = time.monotonic()
                try:
                    image_id = await self.runtime.pull_image(image, auth)
                except ImagePullError as error:
                    error_message = str(error)
                    continue
                self._errors.pop(key, None)
                self.backoff.reset(backoff_key)
                done = time.monotonic()
                report("Normal", "Pulled", pulled_message(image, done - pull_started, done - now,
                                                          await self.runtime.image_size(image)))
                return image_id
        finally:  # pulls do not count against the pod start SLI
            POD_STARTS.pulled(key[0], now, time.monotonic())
        self._errors[key] = error_message
        self.backoff.next(backoff_key, now)
        log.info("pull of %s failed: %s", image, error_message)
        report("Warning", "Failed", f'Failed to pull image "{image}": {error_message}')
        raise ImagePullFailure("ErrImagePull", error_message)

    def backoff_remaining(self, pod_uid: str, image: str) -> float:
        key = f"{pod_uid}/{image}"
        last = self.backoff.last_update(key)
        return max(0.0, last + self.backoff.get(key) - time.monotonic()) if last else 0.0

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._errors if k[0] == pod_uid]:
            del self._errors[key]
        self.backoff.forget_prefix(f"{pod_uid}/")
