"""A container's environment, as the kubelet builds it (``makeEnvironmentVariables``).

``envFrom`` first (ConfigMaps and Secrets, with prefixes), then ``env`` entries in order, each value
able to reference earlier ones as ``$(NAME)`` (``$$`` escapes). References to missing ConfigMaps,
Secrets or keys that are not ``optional`` fail the container with CreateContainerConfigError and the
kubelet's message. Quantities for ``resourceFieldRef`` come from the machinery's exact parser.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.meta import Object

__all__ = ["ConfigError", "expand", "field_ref_value", "make_environment", "resource_field_value"]

#: (kind "configmaps"|"secrets", namespace, name) -> object or None when absent
Fetch = Callable[[str, str, str], Awaitable[Object | None]]

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """CreateContainerConfigError: the message is what the pod's status shows."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay as written, ``$$`` is a literal ``$``."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)
    return _REF.sub(replace, text)


def field_ref_value(pod: Object, path: str, pod_ip: str, host_ip: str) -> str:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {"metadata.name": metadata.get("name", ""), "metadata.namespace": metadata.get("namespace", ""),
              "metadata.uid": metadata.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": pod_ip,
              "status.hostIP": host_ip, "status.podIPs": pod_ip, "status.hostIPs": host_ip}
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.*)'\])?", path)
    if match:
        values = metadata.get(match.group(1)) or {}
        if match.group(2) is not None:
            return str(values.get(match.group(2), ""))
        # the whole map, as the downward API formats it: key="value" lines, sorted
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldPath: {path}")


def resource_field_value(container: Object, ref: Object, allocatable: dict[str, str]) -> str:
    """``resourceFieldRef``: limits fall back to the node's allocatable, as the kubelet does."""
    name = ref.get("resource", "")
    divisor = parse_quantity(str(ref.get("divisor") or "1")) or Fraction(1)
    if divisor == 0:
        divisor = Fraction(1)
    kind, _, resource_name = name.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(resource_name)
    if raw is None and kind == "limits":
        raw = allocatable.get(resource_name)
    if raw is None:
        return "0"
    amount = parse_quantity(str(raw)) or Fraction(0)
    return str(math.ceil(amount / divisor))


def _decode(kind: str, value: Any) -> str:
    if kind == "secrets":
        return base64.b64decode(str(value)).decode(errors="replace")
    return str(value)


async def make_environment(pod: Object, container: Object, fetch: Fetch, *, pod_ip: str, host_ip: str,
                           allocatable: dict[str, str]) -> dict[str, str]:
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for field, kind, label in (("configMapRef", "configmaps", "configmap"), ("secretRef", "secrets", "secret")):
            ref = source.get(field)
            if not ref:
                continue
            obj = await fetch(kind, namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
            for key, value in (obj.get("data") or {}).items():
                env[prefix + key] = _decode(kind, value)
            if kind == "configmaps":
                for key, value in (obj.get("binaryData") or {}).items():
                    env[prefix + key] = base64.b64decode(value).decode(errors="replace")
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "value" in item or not item.get("valueFrom"):
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_ref_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            env[name] = resource_field_value(container, source["resourceFieldRef"], allocatable)
        else:
            for field, kind, title in (("configMapKeyRef", "configmaps", "ConfigMap"),
                                       ("secretKeyRef", "secrets", "Secret")):
                ref = source.get(field)
                if not ref:
                    continue
                obj = await fetch(kind, namespace, ref.get("name", ""))
                key = ref.get("key", "")
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise ConfigError(f'{title.lower()} "{ref.get("name", "")}" not found')
                data = obj.get("data") or {}
                if key not in data:
                    if ref.get("optional"):
                        break
                    raise ConfigError(f"couldn't find key {key} in {title} {namespace}/{ref.get('name', '')}")
                env[name] = _decode(kind, data[key])
    return env
