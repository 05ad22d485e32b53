"""Kind rules of the core/v1 kinds other than Pod (pkg/apis/core/validation/validation.go).

Services (ports, types, immutable cluster IPs), ConfigMaps and Secrets (key syntax, size,
immutability, typed secrets' required keys), Nodes (taints). Metadata and schema checks are the
validation package's job, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.kinds.vcommon import (
    GoValue,
    duplicate,
    forbidden,
    go_string_list,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_name,
    not_supported,
    port_num_errors,
    required,
)

__all__ = [
    "validate_configmap",
    "validate_configmap_update",
    "validate_node",
    "validate_secret",
    "validate_secret_update",
    "validate_service",
    "validate_service_update",
]

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                   "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                   "'[-._a-zA-Z0-9]+')")
_MAX_SIZE = 1024 * 1024


# -- Service -----------------------------------------------------------------------------------

def _target_port_errors(target: Any, path: str) -> list[FieldError]:
    if isinstance(target, str):
        if target.isdigit():
            return [invalid(path, target, msg) for msg in port_num_errors(int(target))]
        return [invalid(path, target, msg) for msg in is_valid_port_name(target)]
    return [invalid(path, target, msg) for msg in port_num_errors(target)]


def _service_port_errors(spec: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    ports = spec.get("ports") or []
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errors.append(required(f"{path}.name"))
        elif name:
            errors += [invalid(f"{path}.name", name, msg) for msg in is_dns1123_label(name)]
            if name in names:
                errors.append(duplicate(f"{path}.name", name))
            names.add(name)
        number = port.get("port")
        errors += [invalid(f"{path}.port", number, msg) for msg in port_num_errors(number)]
        protocol = port.get("protocol") or ""
        if not protocol:
            errors.append(required(f"{path}.protocol"))
        elif protocol not in _PROTOCOLS:
            errors.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
        if spec.get("type") != "ExternalName" and "targetPort" in port:
            errors += _target_port_errors(port["targetPort"], f"{path}.targetPort")
        key = (number, protocol)
        if key in seen:
            errors.append(duplicate(path, GoValue(
                {"port": number, "protocol": protocol},
                f'core.ServicePort{{Name:"", Protocol:"{protocol}", AppProtocol:(*string)(nil), '
                f'Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')))
        seen.add(key)
        node_port = port.get("nodePort")
        if node_port:
            if spec.get("type") == "ClusterIP":
                errors.append(forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                errors += [invalid(f"{path}.nodePort", node_port, msg) for msg in port_num_errors(node_port)]
    return errors


def validate_service(service: Object) -> list[FieldError]:
    spec = service.get("spec") or {}
    errors: list[FieldError] = []
    kind = spec.get("type") or ""
    headless = spec.get("clusterIP") == "None"
    if not kind:
        errors.append(required("spec.type"))
    elif kind not in _SERVICE_TYPES:
        errors.append(not_supported("spec.type", kind, _SERVICE_TYPES))
    if kind == "ExternalName":
        external = spec.get("externalName") or ""
        if not external:
            errors.append(required("spec.externalName"))
        else:
            errors += [invalid("spec.externalName", external, msg)
                       for msg in is_dns1123_subdomain(external.rstrip("."))]
        if spec.get("clusterIP") or spec.get("clusterIPs"):
            errors.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    elif not spec.get("ports") and not headless:
        errors.append(required("spec.ports"))
    errors += _service_port_errors(spec)
    affinity = spec.get("sessionAffinity") or ""
    if affinity and affinity not in ("ClientIP", "None"):
        errors.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    if affinity == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if timeout is not None and not 0 < timeout <= 86400:
            errors.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                  "must be greater than 0 and less than 86400"))
    elif spec.get("sessionAffinityConfig") is not None:
        errors.append(forbidden("spec.sessionAffinityConfig",
                                f"must not be set when session affinity is {affinity}"))
    policy = spec.get("externalTrafficPolicy")
    if policy:
        accessible = kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP"
                                                              and bool(spec.get("externalIPs")))
        if not accessible:
            errors.append(invalid("spec.externalTrafficPolicy", policy,
                                  "may only be set for externally-accessible services"))
        elif policy not in ("Cluster", "Local"):
            errors.append(not_supported("spec.externalTrafficPolicy", policy, ("Cluster", "Local")))
    internal = spec.get("internalTrafficPolicy")
    if internal and internal not in ("Cluster", "Local"):
        errors.append(not_supported("spec.internalTrafficPolicy", internal, ("Cluster", "Local")))
    family_policy = spec.get("ipFamilyPolicy")
    if family_policy and family_policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
        errors.append(not_supported("spec.ipFamilyPolicy", family_policy,
                                    ("PreferDualStack", "RequireDualStack", "SingleStack")))
    return errors


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def validate_service_update(new: Object, old: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    new_spec = new.get("spec") or {}
    old_spec = old.get("spec") or {}
    if _needs_cluster_ip(new_spec) and _needs_cluster_ip(old_spec):
        old_ips = old_spec.get("clusterIPs") or ([old_spec["clusterIP"]] if old_spec.get("clusterIP") else [])
        new_ips = new_spec.get("clusterIPs") or ([new_spec["clusterIP"]] if new_spec.get("clusterIP") else [])
        if old_ips and new_ips and old_ips[0] != new_ips[0]:
            errors.append(invalid("spec.clusterIPs[0]", go_string_list(new_ips), "may not change once set"))
    return errors


# -- ConfigMap / Secret ------------------------------------------------------------------------

def _key_errors(keys: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in keys:
        messages = []
        if len(key) > 253:
            messages.append("must be no more than 253 characters")
        if not _CONFIG_KEY.match(key):
            messages.append(_CONFIG_KEY_MSG)
        if key in (".", ".."):
            messages.append(f"must not be '{key}'")
        elif key.startswith(".."):
            messages.append("must not start with '..'")
        errors += [invalid(f"{path}[{key}]", key, msg) for msg in messages]
    return errors


def _decoded_size(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return len(value)


def validate_configmap(configmap: Object) -> list[FieldError]:
    data = configmap.get("data") or {}
    binary = configmap.get("binaryData") or {}
    errors = _key_errors(data, "data") + _key_errors(binary, "binaryData")
    for key in binary:
        if key in data:
            errors.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    size = sum(len(str(v).encode()) for v in data.values()) + sum(_decoded_size(v) for v in binary.values())
    if size > _MAX_SIZE:
        errors.append(FieldError("FieldValueTooLong", "", f"may not be more than {_MAX_SIZE} bytes", None))
    return errors


def _immutable_data_errors(new: Object, old: Object, keys: tuple[str, ...]) -> list[FieldError]:
    if not old.get("immutable"):
        return []
    errors: list[FieldError] = []
    if not new.get("immutable"):
        errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in keys:
        if (new.get(key) or {}) != (old.get(key) or {}):
            errors.append(forbidden(key, "field is immutable when `immutable` is set"))
    return errors


def validate_configmap_update(new: Object, old: Object) -> list[FieldError]:
    return _immutable_data_errors(new, old, ("data", "binaryData"))


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(secret: Object) -> list[FieldError]:
    data = dict(secret.get("data") or {})
    # stringData is merged into data on write; its keys are validated the same way.
    string_data = secret.get("stringData") or {}
    errors = _key_errors(data, "data") + _key_errors(string_data, "stringData")
    size = sum(_decoded_size(v) for v in data.values()) + sum(len(str(v).encode())
                                                              for v in string_data.values())
    if size > _MAX_SIZE:
        errors.append(FieldError("FieldValueTooLong", "data", f"may not be more than {_MAX_SIZE} bytes", None))
    kind = secret.get("type") or "Opaque"
    for key in _SECRET_REQUIRED_KEYS.get(kind, ()):
        if key not in data and key not in string_data:
            errors.append(required(f"data[{key}]"))
    if kind == "kubernetes.io/service-account-token":
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errors.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data \
            and "username" not in string_data and "password" not in string_data:
        errors.append(required("data[username]", "either username or password is required"))
    if kind == "kubernetes.io/ssh-auth" and "ssh-privatekey" not in data and "ssh-privatekey" not in string_data:
        errors.append(required("data[ssh-privatekey]"))
    return errors


def validate_secret_update(new: Object, old: Object) -> list[FieldError]:
    errors = []
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errors.append(invalid("type", new.get("type"), "field is immutable"))
    return errors + _immutable_data_errors(new, old, ("data",))


# -- Node --------------------------------------------------------------------------------------

def validate_node(node: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, taint in enumerate((node.get("spec") or {}).get("taints") or ()):
        path = f"spec.taints[{i}]"
        if not taint.get("key"):
            errors.append(required(f"{path}.key"))
        effect = taint.get("effect") or ""
        if not effect:
            errors.append(required(f"{path}.effect"))
        elif effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(not_supported(f"{path}.effect", effect,
                                        ("NoSchedule", "PreferNoSchedule", "NoExecute")))
    return errors
