"""networking.k8s.io/v1: Ingress, IngressClass, NetworkPolicy.

Defaults from pkg/apis/networking/v1/defaults.go, the rules users hit from
pkg/apis/networking/validation/validation.go (pathType required, absolute paths, one backend kind).
No ingress controller or network policy enforcement ships with pilothouse: these are stored and
served for the controllers a cluster adds.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import (
    Object,
    Strategy,
    keep_status_on_update,
    reset_status_on_create,
    status_strategy,
)
from pilothouse.machinery.kinds.vcommon import GoValue, invalid, not_supported, required

__all__ = ["INGRESS", "INGRESSCLASS", "INGRESS_STATUS", "NETWORKPOLICY", "validate_ingress"]

_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
# What an Exact or Prefix path may not hold: ways to escape or double up path segments.
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def _backend_errors(backend: dict[str, Any], path: str) -> list[FieldError]:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, GoValue(backend, "networking.IngressBackend{...}"),
                        "cannot set both resource and service backends")]
    if service is None and resource is None:
        return [invalid(path, GoValue(backend, "networking.IngressBackend{...}"),
                        "resource or service backend is required")]
    if service is None:
        return []
    errors: list[FieldError] = []
    if not service.get("name"):
        errors.append(required(f"{path}.service.name"))
    port = service.get("port") or {}
    if port.get("name") and port.get("number"):
        errors.append(invalid(f"{path}.service.port", GoValue(port, "networking.ServiceBackendPort{...}"),
                              "cannot set both port name & port number"))
    elif not port.get("name") and not port.get("number"):
        errors.append(invalid(f"{path}.service.port", GoValue(port, "networking.ServiceBackendPort{...}"),
                              "port name or number is required"))
    return errors


def _path_errors(http_path: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    path_type = http_path.get("pathType")
    value = http_path.get("path", "")
    if path_type is None:
        errors.append(required(f"{path}.pathType", "pathType must be specified"))
    elif path_type not in _PATH_TYPES:
        errors.append(not_supported(f"{path}.pathType", path_type, _PATH_TYPES))
    elif path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errors.append(invalid(f"{path}.path", value, "must be an absolute path"))
        errors += [invalid(f"{path}.path", value, f"must not contain '{seq}'")
                   for seq in _INVALID_PATH_SEQUENCES if seq in value]
        errors += [invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
                   for suffix in _INVALID_PATH_SUFFIXES if value.endswith(suffix)]
    elif value and not value.startswith("/"):
        errors.append(invalid(f"{path}.path", value, "must be an absolute path"))
    return errors + _backend_errors(http_path.get("backend") or {}, f"{path}.backend")


def validate_ingress(ingress: Object) -> list[FieldError]:
    spec = ingress.get("spec") or {}
    errors: list[FieldError] = []
    rules = spec.get("rules") or []
    if spec.get("defaultBackend") is None and not rules:
        errors.append(invalid("spec", GoValue(spec, "networking.IngressSpec{...}"),
                              "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errors += _backend_errors(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        host = rule.get("host") or ""
        if ":" in host:
            errors.append(invalid(f"spec.rules[{i}].host", host, "must not contain a port"))
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            errors.append(required(f"spec.rules[{i}].http.paths"))
        for j, http_path in enumerate(paths):
            errors += _path_errors(http_path, f"spec.rules[{i}].http.paths[{j}]")
    return errors


def default_ingressclass(ingress_class: Object) -> None:
    parameters = (ingress_class.get("spec") or {}).get("parameters")
    if parameters is not None and parameters.get("scope") is None:
        parameters["scope"] = "Cluster"


def validate_ingressclass(ingress_class: Object) -> list[FieldError]:
    controller = (ingress_class.get("spec") or {}).get("controller")
    if not controller:
        return [required("spec.controller")]
    return []


def validate_ingressclass_update(new: Object, old: Object) -> list[FieldError]:
    errors = validate_ingressclass(new)
    controller = (new.get("spec") or {}).get("controller")
    if controller != (old.get("spec") or {}).get("controller"):
        errors.append(invalid("spec.controller", controller, "field is immutable"))
    return errors


def default_networkpolicy(policy: Object) -> None:
    """SetDefaults_NetworkPolicy: ports default to TCP; policyTypes to Ingress, plus Egress when
    egress rules are given."""
    spec = policy.setdefault("spec", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or ():
            for port in rule.get("ports") or ():
                port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def validate_networkpolicy(policy: Object) -> list[FieldError]:
    allowed = ("Ingress", "Egress")
    types = (policy.get("spec") or {}).get("policyTypes") or []
    errors = [not_supported(f"spec.policyTypes[{i}]", t, allowed) for i, t in enumerate(types) if t not in allowed]
    if len(types) > 2:
        errors.append(invalid("spec.policyTypes", GoValue(types, "[]networking.PolicyType{...}"),
                              "may not specify more than two policyTypes"))
    return errors


def prepare_ingress_create(ingress: Object) -> None:
    ingress["status"] = {"loadBalancer": {}}
    ingress["metadata"]["generation"] = 1


INGRESS = Strategy(validate=validate_ingress, validate_update=same_on_update(validate_ingress),
                   prepare_for_create=prepare_ingress_create,
                   prepare_for_update=p.update_keeping_status())
INGRESS_STATUS = status_strategy(INGRESS)
INGRESSCLASS = Strategy(default=default_ingressclass, validate=validate_ingressclass,
                        validate_update=validate_ingressclass_update)
NETWORKPOLICY = Strategy(default=default_networkpolicy, validate=validate_networkpolicy,
                         validate_update=same_on_update(validate_networkpolicy),
                         prepare_for_create=reset_status_on_create, prepare_for_update=keep_status_on_update)
