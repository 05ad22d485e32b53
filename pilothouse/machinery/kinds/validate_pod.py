"""Pod spec validation: the kind rules of ValidatePodSpec / ValidatePodUpdate (pkg/apis/core/validation).

The schema layer checks types and unknown fields; this module checks what the schema cannot say:
names unique across containers, ports in range, supported enum values, volumes referenced by
mounts, and the famous rule that a running pod's spec is immutable apart from a few fields. The
same spec rules run for pod templates inside workloads, under their own field path.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

import orjson

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.kinds.vcommon import (
    duplicate,
    forbidden,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_name,
    nonnegative,
    not_found,
    not_supported,
    port_num_errors,
    required,
)
from pilothouse.machinery.recent import Recent

__all__ = [
    "UPDATABLE_POD_SPEC_FIELDS",
    "validate_controller_template",
    "validate_pod",
    "validate_pod_spec",
    "validate_pod_status_update",
    "validate_pod_template",
    "validate_pod_update",
]

_INT32_MAX = 2**31 - 1
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_ENV_NAME_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', "
                 "'-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
                 "'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs",
    "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
    "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral",
    "image",
)

#: The fields a pod update may change, as ValidatePodUpdate lists them.
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


def _probe_errors(probe: dict[str, Any], path: str, must_succeed_once: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    handlers = [key for key in _PROBE_HANDLERS if probe.get(key) is not None]
    if not handlers:
        errors.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        errors.append(forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold", "terminationGracePeriodSeconds"):
        errors += nonnegative(probe.get(key), f"{path}.{key}")
    threshold = probe.get("successThreshold")
    if must_succeed_once and threshold is not None and threshold != 1:
        errors.append(invalid(f"{path}.successThreshold", threshold, "must be 1"))
    return errors


def _resources_errors(resources: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    limits = resources.get("limits") or {}
    for kind in ("limits", "requests"):
        for name, value in (resources.get(kind) or {}).items():
            amount = parse_quantity(value)
            if amount is not None and amount < 0:
                errors.append(invalid(f"{path}.{kind}[{name}]", value, "must be greater than or equal to 0"))
    for name, value in (resources.get("requests") or {}).items():
        if name not in limits:
            continue
        request, limit = parse_quantity(value), parse_quantity(limits[name])
        if request is None or limit is None:
            continue
        # IsOvercommitAllowed: native resources other than hugepages.
        overcommit = ("/" not in name or name.startswith("kubernetes.io/")) and not name.startswith("hugepages-")
        if request != limit and not overcommit:
            errors.append(invalid(f"{path}.requests", str(value),
                                  f"must be equal to {name} limit of {limits[name]}"))
        elif request > limit:
            errors.append(invalid(f"{path}.requests", str(value),
                                  f"must be less than or equal to {name} limit of {limits[name]}"))
    return errors


def _container_errors(container: dict[str, Any], path: str, volumes: set[str], names: set[str],
                      init: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    name = container.get("name") or ""
    if not name:
        errors.append(required(f"{path}.name"))
    else:
        errors += [invalid(f"{path}.name", name, msg) for msg in is_dns1123_label(name)]
        if name in names:
            errors.append(duplicate(f"{path}.name", name))
        names.add(name)
    image = container.get("image") or ""
    if not image:
        errors.append(required(f"{path}.image"))
    policy = container.get("imagePullPolicy")
    if policy and policy not in _PULL_POLICIES:
        errors.append(not_supported(f"{path}.imagePullPolicy", policy, _PULL_POLICIES))
    message_policy = container.get("terminationMessagePolicy")
    if message_policy and message_policy not in ("File", "FallbackToLogsOnError"):
        errors.append(not_supported(f"{path}.terminationMessagePolicy", message_policy,
                                    ("File", "FallbackToLogsOnError")))
    port_names: set[str] = set()
    for i, port in enumerate(container.get("ports") or ()):
        port_path = f"{path}.ports[{i}]"
        port_name = port.get("name")
        if port_name:
            name_errors = is_valid_port_name(port_name)
            errors += [invalid(f"{port_path}.name", port_name, msg) for msg in name_errors]
            if not name_errors and port_name in port_names:
                errors.append(duplicate(f"{port_path}.name", port_name))
            port_names.add(port_name)
        container_port = port.get("containerPort")
        if not container_port:
            errors.append(required(f"{port_path}.containerPort"))
        else:
            errors += [invalid(f"{port_path}.containerPort", container_port, msg)
                       for msg in port_num_errors(container_port)]
        host_port = port.get("hostPort")
        if host_port:
            errors += [invalid(f"{port_path}.hostPort", host_port, msg) for msg in port_num_errors(host_port)]
        protocol = port.get("protocol")
        if protocol and protocol not in _PROTOCOLS:
            errors.append(not_supported(f"{port_path}.protocol", protocol, _PROTOCOLS))
    for i, env in enumerate(container.get("env") or ()):
        env_name = env.get("name") or ""
        if not env_name:
            errors.append(required(f"{path}.env[{i}].name"))
        elif not _ENV_NAME.match(env_name):
            errors.append(invalid(f"{path}.env[{i}].name", env_name, _ENV_NAME_MSG))
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or ()):
        mount_path = f"{path}.volumeMounts[{i}]"
        mount_name = mount.get("name") or ""
        if not mount_name:
            errors.append(required(f"{mount_path}.name"))
        elif mount_name not in volumes:
            errors.append(not_found(f"{mount_path}.name", mount_name))
        target = mount.get("mountPath") or ""
        if not target:
            errors.append(required(f"{mount_path}.mountPath"))
        elif target in mount_paths:
            errors.append(invalid(f"{mount_path}.mountPath", target, "must be unique"))
        mount_paths.add(target)
    restartable_init = init and container.get("restartPolicy") == "Always"
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe is None:
            continue
        if init and not restartable_init:
            errors.append(forbidden(f"{path}.{probe_name}", "may not be set for init containers without "
                                    "restartPolicy=Always"))
            continue
        errors += _probe_errors(probe, f"{path}.{probe_name}", probe_name != "readinessProbe")
    if init and container.get("restartPolicy") not in (None, "Always"):
        errors.append(not_supported(f"{path}.restartPolicy", container["restartPolicy"], ("Always",)))
    if not init and container.get("restartPolicy") is not None:
        errors.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
    errors += _resources_errors(container.get("resources") or {}, f"{path}.resources")
    return errors


def _volume_errors(volumes: list[dict[str, Any]], path: str) -> tuple[list[FieldError], set[str]]:
    errors: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        volume_path = f"{path}[{i}]"
        name = volume.get("name") or ""
        if not name:
            errors.append(required(f"{volume_path}.name"))
        else:
            errors += [invalid(f"{volume_path}.name", name, msg) for msg in is_dns1123_label(name)]
            if name in names:
                errors.append(duplicate(f"{volume_path}.name", name))
            names.add(name)
        sources = [key for key in _VOLUME_SOURCES if volume.get(key) is not None]
        if not sources:
            errors.append(required(volume_path, "must specify a volume type"))
        elif len(sources) > 1:
            errors.append(forbidden(f"{volume_path}.{sources[1]}", "may not specify more than 1 volume type"))
    return errors, names


def _toleration_errors(tolerations: list[dict[str, Any]], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, toleration in enumerate(tolerations):
        item = f"{path}[{i}]"
        operator = toleration.get("operator") or "Equal"
        if not toleration.get("key") and operator != "Exists":
            errors.append(invalid(f"{item}.operator", operator,
                                  "operator must be Exists when `key` is empty, which means \"match all "
                                  "values and all keys\""))
        if operator not in ("Equal", "Exists"):
            errors.append(not_supported(f"{item}.operator", operator, ("Equal", "Exists")))
        elif operator == "Exists" and toleration.get("value"):
            errors.append(invalid(f"{item}.operator", toleration["value"],
                                  "value must be empty when `operator` is 'Exists'"))
        effect = toleration.get("effect") or ""
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(not_supported(f"{item}.effect", effect,
                                        ("NoExecute", "NoSchedule", "PreferNoSchedule")))
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errors.append(invalid(f"{item}.effect", effect,
                                  "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return errors


#: Pod specs (by report path and JSON) that passed :func:`validate_pod_spec` lately. Controllers create
#: pod after pod from one template, so the same spec comes back again and again; the rules are a pure
#: function of the spec, so a spec that passed once passes again. Only passes are remembered.
_VALID_SPECS: Recent[tuple[str, bytes], bool] = Recent(512)


def validate_pod_spec(spec: dict[str, Any], path: str = "spec") -> list[FieldError]:
    """ValidatePodSpec's kind rules, reported under ``path`` (``spec.template.spec`` in workloads)."""
    try:
        key: tuple[str, bytes] | None = (path, orjson.dumps(spec))
    except TypeError:  # not JSON (cannot come from a request): validate without remembering
        key = None
    if key is not None and _VALID_SPECS.get(key):
        return []
    errors = _pod_spec_errors(spec, path)
    if not errors and key is not None:
        _VALID_SPECS.put(key, True)
    return errors


def _pod_spec_errors(spec: dict[str, Any], path: str) -> list[FieldError]:
    errors, volume_names = _volume_errors(spec.get("volumes") or [], f"{path}.volumes")
    containers = spec.get("containers") or []
    names: set[str] = set()
    if not containers:
        errors.append(required(f"{path}.containers"))
    for i, container in enumerate(containers):
        errors += _container_errors(container, f"{path}.containers[{i}]", volume_names, names, False)
    for i, container in enumerate(spec.get("initContainers") or ()):
        errors += _container_errors(container, f"{path}.initContainers[{i}]", volume_names, names, True)
    for i, container in enumerate(spec.get("ephemeralContainers") or ()):
        errors += _container_errors(container, f"{path}.ephemeralContainers[{i}]", volume_names, names,
                                    False)
    restart = spec.get("restartPolicy", "")
    if restart == "":
        errors.append(required(f"{path}.restartPolicy"))
    elif restart not in _RESTART_POLICIES:
        errors.append(not_supported(f"{path}.restartPolicy", restart, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy", "")
    if dns and dns not in _DNS_POLICIES:
        errors.append(not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    elif dns == "None" and spec.get("dnsConfig") is None:
        errors.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _INT32_MAX:
        errors.append(invalid(f"{path}.activeDeadlineSeconds", deadline,
                              f"must be between 1 and {_INT32_MAX}, inclusive"))
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value:
            errors += [invalid(f"{path}.{key}", value, msg) for msg in is_dns1123_label(value)]
    node_name = spec.get("nodeName")
    if node_name:
        errors += [invalid(f"{path}.nodeName", node_name, msg) for msg in is_dns1123_subdomain(node_name)]
    service_account = spec.get("serviceAccountName")
    if service_account:
        errors += [invalid(f"{path}.serviceAccountName", service_account, msg)
                   for msg in is_dns1123_subdomain(service_account)]
    errors += _toleration_errors(spec.get("tolerations") or [], f"{path}.tolerations")
    return errors


def validate_pod_template(template: dict[str, Any] | None, path: str) -> list[FieldError]:
    if template is None:
        return [required(path)]
    return validate_pod_spec(template.get("spec") or {}, f"{path}.spec")


def validate_controller_template(template: dict[str, Any] | None, path: str, owner: str) -> list[FieldError]:
    """The pod template of a controller that keeps its pods running (ValidatePodTemplateSpecForRC,
    ...ForReplicaSet): a valid template that restarts Always and has no activeDeadlineSeconds.
    ``owner`` names the kind in the message, as Kubernetes words it."""
    errors = validate_pod_template(template, path)
    if template is None:
        return errors
    pod_spec = template.get("spec") or {}
    restart = pod_spec.get("restartPolicy", "")
    if restart != "Always":
        errors.append(not_supported(f"{path}.spec.restartPolicy", restart, ("Always",)))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errors.append(forbidden(f"{path}.spec.activeDeadlineSeconds",
                                f"activeDeadlineSeconds in {owner} is not Supported"))
    return errors


def validate_pod(pod: Object) -> list[FieldError]:
    """ValidatePodCreate's rules that also hold on update (the registry runs this on both).

    Kubernetes also forbids ``ephemeralContainers`` on create; that needs a create-only hook.
    """
    spec = pod.get("spec") or {}
    errors = validate_pod_spec(spec)
    if spec.get("nodeName") and spec.get("schedulingGates"):
        errors.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return errors


def _spec_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A readable stand-in for Go's cmp.Diff of the two specs."""
    old_lines = json.dumps(old, indent=2, sort_keys=True).splitlines()
    new_lines = json.dumps(new, indent=2, sort_keys=True).splitlines()
    diff = [line for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=1)
            if not line.startswith(("---", "+++"))]
    return "\n".join("  " + line for line in diff)


def _container_update_errors(new: list[dict[str, Any]], old: list[dict[str, Any]],
                             path: str) -> tuple[list[FieldError], bool]:
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    errors: list[FieldError] = []
    for i, container in enumerate(new):
        image = container.get("image") or ""
        if not image:
            errors.append(required(f"{path}[{i}].image"))
        elif image.strip() != image:
            errors.append(invalid(f"{path}[{i}].image", image, "must not have leading or trailing whitespace"))
    return errors, False


def _tolerations_key(toleration: dict[str, Any]) -> tuple[Any, ...]:
    return (toleration.get("key") or "", toleration.get("operator") or "Equal", toleration.get("value") or "",
            toleration.get("effect") or "")


def validate_pod_update(new: Object, old: Object) -> list[FieldError]:
    """ValidatePodUpdate's update rules: only images, activeDeadlineSeconds, tolerations (additions)...

    The spec rules of the new object are ``validate_pod``'s job (the registry runs both).
    """
    new_spec = new.get("spec") or {}
    old_spec = old.get("spec") or {}
    errors: list[FieldError] = []
    for key in ("containers", "initContainers"):
        found, stop = _container_update_errors(new_spec.get(key) or [], old_spec.get(key) or [], f"spec.{key}")
        errors += found
        if stop:
            return errors
    new_deadline = new_spec.get("activeDeadlineSeconds")
    old_deadline = old_spec.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if old_deadline is not None and old_deadline < new_deadline:
            errors.append(invalid("spec.activeDeadlineSeconds", new_deadline,
                                  "must be less than or equal to previous value"))
            return errors
    elif old_deadline is not None:
        errors.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer "
                              "to nil value"))
    # Tolerations: additions only; an existing NoExecute toleration may only shorten its seconds.
    new_tolerations = {_tolerations_key(t): t for t in new_spec.get("tolerations") or ()}
    for i, toleration in enumerate(old_spec.get("tolerations") or ()):
        kept = new_tolerations.get(_tolerations_key(toleration))
        if kept is None:
            errors.append(forbidden(f"spec.tolerations[{i}]", "existing toleration can not be modified "
                                    "except its tolerationSeconds"))
        elif toleration.get("tolerationSeconds") is not None and (
                kept.get("tolerationSeconds") is None
                or kept["tolerationSeconds"] > toleration["tolerationSeconds"]):
            errors.append(forbidden(f"spec.tolerations[{i}].tolerationSeconds",
                                    "existing toleration can not be modified except its tolerationSeconds"))
    old_gates = [g.get("name") for g in old_spec.get("schedulingGates") or ()]
    for i, gate in enumerate(new_spec.get("schedulingGates") or ()):
        if gate.get("name") not in old_gates:
            errors.append(forbidden(f"spec.schedulingGates[{i}]", "only deletion is allowed, but found new "
                                    f"scheduling gate '{gate.get('name')}'"))
    if new_spec == old_spec:
        return errors
    munged = dict(new_spec)
    for key in ("containers", "initContainers"):
        if key in munged:
            olds = old_spec.get(key) or []
            munged[key] = [{**c, "image": olds[i].get("image")} if "image" in olds[i] else
                           {k: v for k, v in c.items() if k != "image"} for i, c in enumerate(munged[key])]
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(key, None)
        if key in old_spec:
            munged[key] = old_spec[key]
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if old_spec.get("schedulingGates"):
        # Gated pods may still gain node selectors and node affinity.
        for key in ("nodeSelector", "affinity"):
            munged.pop(key, None)
            if key in old_spec:
                munged[key] = old_spec[key]
    if munged != old_spec:
        detail = ("pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS)
                  + "\n" + _spec_diff(old_spec, munged))
        errors.append(forbidden("spec", detail))
    return errors


def validate_pod_status_update(new: Object, old: Object) -> list[FieldError]:
    """ValidatePodStatusUpdate's main rules."""
    errors: list[FieldError] = []
    new_status = new.get("status") or {}
    old_status = old.get("status") or {}
    if (new.get("spec") or {}).get("nodeName") != (old.get("spec") or {}).get("nodeName"):
        errors.append(forbidden("status.nodeName", "may not be changed directly"))
    if new_status.get("qosClass", "") != old_status.get("qosClass", ""):
        errors.append(invalid("status.qosClass", new_status.get("qosClass", ""), "field is immutable"))
    nominated = new_status.get("nominatedNodeName")
    if nominated and nominated != old_status.get("nominatedNodeName"):
        errors += [invalid("status.nominatedNodeName", nominated, msg) for msg in is_dns1123_subdomain(nominated)]
    restart = (old.get("spec") or {}).get("restartPolicy")
    if restart != "Always":
        new_states = {s.get("name"): s for s in new_status.get("containerStatuses") or ()}
        for i, status in enumerate(old_status.get("containerStatuses") or ()):
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is None or (terminated.get("exitCode", 0) != 0 and restart == "OnFailure"):
                continue
            later = new_states.get(status.get("name"))
            if later is not None and (later.get("state") or {}).get("terminated") is None:
                errors.append(forbidden(f"status.containerStatuses[{i}].state",
                                        "may not be transitioned to non-terminated state"))
    return errors
