"""The Pod Security Standards checks of k8s.io/pod-security-admission 1.32 (``policy/check_*.go``).

Each check is a pure function of a pod's (or pod template's) metadata and spec, as plain dicts,
returning ``None`` when the pod passes or a :class:`Result` carrying Kubernetes' exact reason and
detail text. :data:`CHECKS` is the table the evaluator reads: one row per check ID with its level,
the versions at which its behaviour changed, and the baseline checks a restricted one replaces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from pilothouse.machinery.meta import Object

__all__ = ["CHECKS", "Check", "CheckFn", "Result"]



@dataclass(frozen=True)
class Result:
    """A failed check: ``reason`` goes into the short list, ``detail`` into the parentheses."""

    reason: str
    detail: str = ""


CheckFn = Callable[[Object, Object], "Result | None"]


@dataclass(frozen=True)
class Check:
    id: str
    level: Literal["baseline", "restricted"]
    #: (minimum minor version of 1.x, function), strictly increasing.
    versions: tuple[tuple[int, CheckFn], ...]
    #: Baseline check IDs this restricted check replaces at every version it applies to.
    overrides: tuple[str, ...] = ()


# -- helpers (policy/helpers.go, visitor.go) ----------------------------------------------------

def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _go_quote(value: str) -> str:
    """Go's ``%q`` of a string (JSON's escaping agrees with it for what labels and annotations hold)."""
    return json.dumps(value, ensure_ascii=False)


def _containers(spec: Object) -> Iterator[Object]:
    """visitContainers: init containers, containers, then ephemeral containers."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def _sc(obj: Object) -> Object:
    return obj.get("securityContext") or {}


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_join_quote(names)}"


def _windows(spec: Object) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(_containers_phrase(containers))
    return setters


# -- baseline ----------------------------------------------------------------------------------

_APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def app_armor_profile(metadata: Object, spec: Object) -> Result | None:
    def allowed(profile: Object) -> bool:
        return profile.get("type") in ("RuntimeDefault", "Localhost")

    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile")
    pod_bad = pod_profile is not None and not allowed(pod_profile)
    if pod_profile is not None and pod_bad:
        bad_values.add(str(pod_profile.get("type") or ""))
    bad_containers = []
    for container in _containers(spec):
        profile = _sc(container).get("appArmorProfile")
        if profile is not None and not allowed(profile):
            bad_containers.append(container.get("name", ""))
            bad_values.add(str(profile.get("type") or ""))
    setters = _setters(pod_bad, bad_containers)
    annotations = sorted(
        f"{key}={_go_quote(value)}" for key, value in (metadata.get("annotations") or {}).items()
        if key.startswith(_APPARMOR_ANNOTATION_PREFIX)
        and not (value == "" or value == "runtime/default" or value.startswith("localhost/")))
    values = sorted(bad_values) + annotations
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return Result(_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
                  f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(values)}")


_DEFAULT_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def capabilities_baseline(metadata: Object, spec: Object) -> Result | None:
    bad_containers, non_default = [], set()
    for container in _containers(spec):
        added = [c for c in (_sc(container).get("capabilities") or {}).get("add") or []
                 if c not in _DEFAULT_CAPABILITIES]
        if added:
            bad_containers.append(container.get("name", ""))
            non_default.update(added)
    if not bad_containers:
        return None
    return Result("non-default capabilities", f"{_containers_phrase(bad_containers)} must not include "
                  f"{_join_quote(sorted(non_default))} in securityContext.capabilities.add")


def host_namespaces(metadata: Object, spec: Object) -> Result | None:
    used = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    return Result("host namespaces", ", ".join(used)) if used else None


def host_path_volumes(metadata: Object, spec: Object) -> Result | None:
    names = [v.get("name", "") for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    if not names:
        return None
    return Result("hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_join_quote(names)}")


def host_ports(metadata: Object, spec: Object) -> Result | None:
    bad_containers, ports = [], set()
    for container in _containers(spec):
        used = [str(p["hostPort"]) for p in container.get("ports") or [] if p.get("hostPort")]
        if used:
            bad_containers.append(container.get("name", ""))
            ports.update(used)
    if not bad_containers:
        return None
    return Result("hostPort", f"{_containers_phrase(bad_containers)} "
                  f"{_plural('uses', 'use', len(bad_containers))} {_plural('hostPort', 'hostPorts', len(ports))} "
                  f"{', '.join(sorted(ports))}")


def privileged(metadata: Object, spec: Object) -> Result | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged")]
    if not bad:
        return None
    return Result("privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true")


def proc_mount(metadata: Object, spec: Object) -> Result | None:
    # The relaxation for user-namespaced pods needs the UserNamespacesPodSecurityStandards gate
    # (alpha, off by default in 1.32), so every pod is held to it.
    bad, types = [], set()
    for container in _containers(spec):
        mount = _sc(container).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(container.get("name", ""))
            types.add(mount)
    if not bad:
        return None
    return Result("procMount", f"{_containers_phrase(bad)} must not set securityContext.procMount to "
                  f"{_join_quote(sorted(types))}")


_SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _selinux_options(allowed_types: frozenset[str]) -> CheckFn:
    def check(metadata: Object, spec: Object) -> Result | None:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(options: Object) -> bool:
            ok = True
            if (options.get("type") or "") not in allowed_types:
                ok = False
                bad_types.add(options.get("type") or "")
            for field in ("user", "role"):
                if options.get(field):
                    ok, flags[field] = False, True
            return ok

        pod_options = _sc(spec).get("seLinuxOptions")
        pod_bad = pod_options is not None and not valid(pod_options)
        bad_containers = [c.get("name", "") for c in _containers(spec)
                          if _sc(c).get("seLinuxOptions") is not None and not valid(_sc(c)["seLinuxOptions"])]
        setters = _setters(pod_bad, bad_containers)
        if not setters:
            return None
        data = [f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}"] if bad_types else []
        data += [f"{field} may not be set" for field in ("user", "role") if flags[field]]
        return Result("seLinuxOptions", f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: "
                      f"{'; '.join(data)}")
    return check


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def _valid_seccomp(profile: Object) -> bool:
    return profile.get("type") in ("Localhost", "RuntimeDefault")


def seccomp_baseline_1_0(metadata: Object, spec: Object) -> Result | None:
    annotations = metadata.get("annotations") or {}
    keys = [_SECCOMP_POD_ANNOTATION] + [_SECCOMP_CONTAINER_PREFIX + c.get("name", "") for c in _containers(spec)]
    forbidden = sorted({f"{key}={_go_quote(annotations[key])}" for key in keys if key in annotations
                        and not (annotations[key] in ("runtime/default", "docker/default")
                                 or annotations[key].startswith("localhost/"))})
    if not forbidden:
        return None
    return Result("seccompProfile", f"forbidden {_plural('annotation', 'annotations', len(forbidden))} "
                  f"{', '.join(forbidden)}")


def _seccomp_explicit(spec: Object) -> tuple[list[str], set[str], bool, list[str]]:
    """(bad setters, bad types, pod sets a valid profile, containers relying on the pod's)."""
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = pod_profile is not None and not _valid_seccomp(pod_profile)
    if pod_profile is not None and pod_bad:
        bad_values.add(str(pod_profile.get("type") or ""))
    explicit, implicit = [], []
    for container in _containers(spec):
        profile = _sc(container).get("seccompProfile")
        if profile is None:
            implicit.append(container.get("name", ""))
        elif not _valid_seccomp(profile):
            explicit.append(container.get("name", ""))
            bad_values.add(str(profile.get("type") or ""))
    return _setters(pod_bad, explicit), bad_values, pod_profile is not None and not pod_bad, implicit


def _seccomp_setters_result(setters: list[str], values: set[str]) -> Result:
    return Result("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                  f"{_join_quote(sorted(values))}")


def seccomp_baseline_1_19(metadata: Object, spec: Object) -> Result | None:
    setters, values, _, _ = _seccomp_explicit(spec)
    return _seccomp_setters_result(setters, values) if setters else None


_SYSCTLS_1_0 = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                                 "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(metadata: Object, spec: Object) -> Result | None:
        bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or [] if s.get("name", "") not in allowed]
        return Result("forbidden sysctls", ", ".join(bad)) if bad else None
    return check


def windows_host_process(metadata: Object, spec: Object) -> Result | None:
    def host_process(obj: Object) -> bool:
        return bool((_sc(obj).get("windowsOptions") or {}).get("hostProcess"))

    setters = _setters(host_process(spec), [c.get("name", "") for c in _containers(spec) if host_process(c)])
    if not setters:
        return None
    return Result("hostProcess",
                  f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")


# -- restricted --------------------------------------------------------------------------------

def _not_on_windows(check: CheckFn) -> CheckFn:
    """The 1.25 versions of several restricted checks: Windows pods are exempt."""
    def versioned(metadata: Object, spec: Object) -> Result | None:
        return None if _windows(spec) else check(metadata, spec)
    return versioned


def allow_privilege_escalation(metadata: Object, spec: Object) -> Result | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return Result("allowPrivilegeEscalation != false",
                  f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false")


def capabilities_restricted(metadata: Object, spec: Object) -> Result | None:
    missing_drop, adding, forbidden = [], [], set()
    for container in _containers(spec):
        capabilities = _sc(container).get("capabilities")
        if capabilities is None:
            missing_drop.append(container.get("name", ""))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(container.get("name", ""))
        added = [c for c in capabilities.get("add") or [] if c != "NET_BIND_SERVICE"]
        if added:
            adding.append(container.get("name", ""))
            forbidden.update(added)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_join_quote(sorted(forbidden))} "
                       "in securityContext.capabilities.add")
    return Result("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUME_SOURCES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret")
# In the order Kubernetes' switch tests them; a source not listed is "unknown".
_RESTRICTED_VOLUME_SOURCES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")


def restricted_volumes(metadata: Object, spec: Object) -> Result | None:
    bad, types = [], set()
    for volume in spec.get("volumes") or []:
        if any(volume.get(source) is not None for source in _ALLOWED_VOLUME_SOURCES):
            continue
        bad.append(volume.get("name", ""))
        types.add(next((s for s in _RESTRICTED_VOLUME_SOURCES if volume.get(s) is not None), "unknown"))
    if not bad:
        return None
    return Result("restricted volume types", f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} "
                  f"{_plural('uses', 'use', len(bad))} "
                  f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
                  f"{_join_quote(sorted(types))}")


def run_as_non_root(metadata: Object, spec: Object) -> Result | None:
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    setters = _setters(pod_value is False, explicit)
    if setters:
        return Result("runAsNonRoot != true",
                      f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    implicit = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None]
    if implicit and pod_value is not True:
        return Result("runAsNonRoot != true",
                      f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def run_as_user(metadata: Object, spec: Object) -> Result | None:
    setters = _setters(_sc(spec).get("runAsUser") == 0,
                       [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsUser") == 0])
    return Result("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def seccomp_restricted(metadata: Object, spec: Object) -> Result | None:
    setters, values, pod_set, implicit = _seccomp_explicit(spec)
    if setters:
        return _seccomp_setters_result(setters, values)
    if implicit and not pod_set:
        return Result("seccompProfile", f'pod or {_containers_phrase(implicit)} must set '
                      'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
    return None


CHECKS: tuple[Check, ...] = (
    Check("appArmorProfile", "baseline", ((0, app_armor_profile),)),
    Check("capabilities_baseline", "baseline", ((0, capabilities_baseline),)),
    Check("hostNamespaces", "baseline", ((0, host_namespaces),)),
    Check("hostPathVolumes", "baseline", ((0, host_path_volumes),)),
    Check("hostPorts", "baseline", ((0, host_ports),)),
    Check("privileged", "baseline", ((0, privileged),)),
    Check("procMount", "baseline", ((0, proc_mount),)),
    Check("seLinuxOptions", "baseline", ((0, _selinux_options(_SELINUX_TYPES_1_0)),
                                         (31, _selinux_options(_SELINUX_TYPES_1_31)))),
    Check("seccompProfile_baseline", "baseline", ((0, seccomp_baseline_1_0), (19, seccomp_baseline_1_19))),
    Check("sysctls", "baseline", ((0, _sysctls(_SYSCTLS_1_0)), (27, _sysctls(_SYSCTLS_1_27)),
                                  (29, _sysctls(_SYSCTLS_1_29)), (32, _sysctls(_SYSCTLS_1_32)))),
    Check("windowsHostProcess", "baseline", ((0, windows_host_process),)),
    Check("allowPrivilegeEscalation", "restricted",
          ((8, allow_privilege_escalation), (25, _not_on_windows(allow_privilege_escalation)))),
    Check("capabilities_restricted", "restricted",
          ((22, capabilities_restricted), (25, _not_on_windows(capabilities_restricted))),
          overrides=("capabilities_baseline",)),
    Check("restrictedVolumes", "restricted", ((0, restricted_volumes),), overrides=("hostPathVolumes",)),
    Check("runAsNonRoot", "restricted", ((0, run_as_non_root),)),
    Check("runAsUser", "restricted", ((23, run_as_user),)),
    Check("seccompProfile_restricted", "restricted",
          ((19, seccomp_restricted), (25, _not_on_windows(seccomp_restricted))),
          overrides=("seccompProfile_baseline",)),
)
