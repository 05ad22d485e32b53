"""Defaulting of core/v1 objects, as Kubernetes' pkg/apis/core/v1/defaults.go (SetDefaults_*).

Defaults are what make a stored object look like Kubernetes': every pod carries
``restartPolicy: Always``, ``dnsPolicy: ClusterFirst``, ``terminationMessagePath`` and so on, and
clients (kubectl diff/apply, controllers comparing templates) rely on seeing them. Pod templates
inside workloads get the same pod spec defaults, minus the few that Kubernetes applies to Pods only
(``enableServiceLinks``, requests copied from limits). Of what admission plugins add to Pods, only
the service account name is applied here; default tolerations and priority are admission plugins.

Every function is idempotent and mutates in place; ``setdefault`` keeps them cheap.
"""

from __future__ import annotations

import re
from typing import Any

from pilothouse.machinery.kinds.types import Object

__all__ = [
    "default_endpoints",
    "default_limit_range",
    "default_namespace",
    "default_node",
    "default_pod",
    "default_pod_spec",
    "default_pod_template",
    "default_pvc_template",
    "default_secret",
    "default_service",
    "image_pull_policy",
]

# -- images ------------------------------------------------------------------------------------

# The grammar of github.com/distribution/reference, enough to tell a tag from a port or digest.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


def image_pull_policy(image: str) -> str:
    """SetDefaults_Container: Always for ``:latest`` or no tag (and no digest), else IfNotPresent.

    Like parsers.ParseImageName, an unparsable reference yields no tag, hence IfNotPresent.
    """
    match = _REFERENCE.match(image) if image and not _HEX64.match(image) else None
    if match is None:
        return "IfNotPresent"
    tag = match.group("tag")
    if not tag and not match.group("digest"):
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


# -- containers --------------------------------------------------------------------------------

def _default_http_get(action: dict[str, Any] | None) -> None:
    if action is not None:
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _default_probe(probe: dict[str, Any] | None) -> None:
    if probe is None:
        return
    # Zero means unset for these int32 fields, as in Go.
    if not probe.get("timeoutSeconds"):
        probe["timeoutSeconds"] = 1
    if not probe.get("periodSeconds"):
        probe["periodSeconds"] = 10
    if not probe.get("successThreshold"):
        probe["successThreshold"] = 1
    if not probe.get("failureThreshold"):
        probe["failureThreshold"] = 3
    _default_http_get(probe.get("httpGet"))


def _default_env(container: dict[str, Any]) -> None:
    for env in container.get("env") or ():
        source = env.get("valueFrom")
        if source:
            field_ref = source.get("fieldRef")
            if field_ref is not None and not field_ref.get("apiVersion"):
                field_ref["apiVersion"] = "v1"
            resource_ref = source.get("resourceFieldRef")
            if resource_ref is not None:
                # A zero resource.Quantity struct still serializes, as "0".
                resource_ref.setdefault("divisor", "0")


def _default_container(container: dict[str, Any]) -> None:
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = image_pull_policy(container.get("image") or "")
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = "/dev/termination-log"
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    # ResourceRequirements is a struct, so Kubernetes always serializes it.
    if container.get("resources") is None:
        container["resources"] = {}
    for port in container.get("ports") or ():
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe_name))
    lifecycle = container.get("lifecycle")
    if lifecycle:
        for hook in ("postStart", "preStop"):
            handler = lifecycle.get(hook)
            if handler:
                _default_http_get(handler.get("httpGet"))
    _default_env(container)


# -- volumes -----------------------------------------------------------------------------------

def _default_items_field_refs(items: list[dict[str, Any]] | None) -> None:
    for item in items or ():
        field_ref = item.get("fieldRef")
        if field_ref is not None and not field_ref.get("apiVersion"):
            field_ref["apiVersion"] = "v1"
        resource_ref = item.get("resourceFieldRef")
        if resource_ref is not None:
            resource_ref.setdefault("divisor", "0")


def _default_volume(volume: dict[str, Any]) -> None:
    if len(volume) == 1 and "name" in volume:
        # SetDefaults_Volume: a volume with no source is an emptyDir.
        volume["emptyDir"] = {}
        return
    for key in ("secret", "configMap"):
        source = volume.get(key)
        if source is not None and source.get("defaultMode") is None:
            source["defaultMode"] = 420
    downward = volume.get("downwardAPI")
    if downward is not None:
        if downward.get("defaultMode") is None:
            downward["defaultMode"] = 420
        _default_items_field_refs(downward.get("items"))
    projected = volume.get("projected")
    if projected is not None:
        if projected.get("defaultMode") is None:
            projected["defaultMode"] = 420
        for source in projected.get("sources") or ():
            token = source.get("serviceAccountToken")
            if token is not None and not token.get("expirationSeconds"):
                token["expirationSeconds"] = 3600
            downward_source = source.get("downwardAPI")
            if downward_source is not None:
                _default_items_field_refs(downward_source.get("items"))
    host_path = volume.get("hostPath")
    if host_path is not None:
        host_path.setdefault("type", "")
    iscsi = volume.get("iscsi")
    if iscsi is not None and not iscsi.get("iscsiInterface"):
        iscsi["iscsiInterface"] = "default"
    rbd = volume.get("rbd")
    if rbd is not None:
        if not rbd.get("pool"):
            rbd["pool"] = "rbd"
        if not rbd.get("user"):
            rbd["user"] = "admin"
        if not rbd.get("keyring"):
            rbd["keyring"] = "/etc/ceph/keyring"
    azure = volume.get("azureDisk")
    if azure is not None:
        azure.setdefault("cachingMode", "ReadWrite")
        azure.setdefault("fsType", "ext4")
        azure.setdefault("readOnly", False)
        azure.setdefault("kind", "Shared")
    ephemeral = volume.get("ephemeral")
    if ephemeral is not None:
        template = ephemeral.get("volumeClaimTemplate")
        if template is not None:
            spec = template.get("spec")
            if spec is not None and not spec.get("volumeMode"):
                spec["volumeMode"] = "Filesystem"


# -- pod spec ----------------------------------------------------------------------------------

def _host_network_ports(containers: list[dict[str, Any]] | None) -> None:
    for container in containers or ():
        for port in container.get("ports") or ():
            if not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort", 0)


def default_pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec plus the defaults of everything a pod spec contains."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or ():
            _default_container(container)
    for volume in spec.get("volumes") or ():
        _default_volume(volume)
    # The v1 conversion keeps the deprecated serviceAccount field in step with serviceAccountName.
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    elif spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]


def default_pod_template(template: dict[str, Any] | None) -> None:
    """A PodTemplateSpec inside a workload: pod spec defaults only."""
    if template is None:
        return
    spec = template.get("spec")
    if spec is None:
        spec = template["spec"] = {}
    default_pod_spec(spec)


def _requests_from_limits(containers: list[dict[str, Any]] | None) -> None:
    for container in containers or ():
        resources = container.get("resources") or {}
        limits = resources.get("limits")
        if limits:
            requests = resources.setdefault("requests", {})
            for name, value in limits.items():
                requests.setdefault(name, value)


def default_pod(pod: Object) -> None:
    """SetDefaults_Pod, plus what the always-on admission plugins add to every Pod."""
    spec = pod.get("spec")
    if spec is None:
        spec = pod["spec"] = {}
    # Pod-only (not templates): requests default to limits, service links on.
    _requests_from_limits(spec.get("containers"))
    _requests_from_limits(spec.get("initContainers"))
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork"):
        _host_network_ports(spec.get("containers"))
        _host_network_ports(spec.get("initContainers"))
    # The default service account and its token volume come from ServiceAccount admission
    # (apiserver/admission_plugins/serviceaccount.py): mirror pods must stay without one.
    default_pod_spec(spec)
    # Priority and DefaultTolerationSeconds are admission plugins (apiserver/admission_plugins).


# -- other core kinds --------------------------------------------------------------------------

def _externally_accessible(spec: dict[str, Any]) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def _default_ip_families(spec: dict[str, Any]) -> None:
    """The IP family part of the service REST allocator (single-stack IPv4 cluster)."""
    if spec.get("type") == "ExternalName":
        return
    families = spec.get("ipFamilies")
    if spec.get("clusterIP") == "None" and not spec.get("selector"):
        # Headless and selectorless: dual-stack unless the user said otherwise.
        if spec.get("ipFamilyPolicy") is None and not families:
            spec["ipFamilyPolicy"] = "RequireDualStack"
        if not families:
            families = spec["ipFamilies"] = ["IPv4"]
        if len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        return
    if not families:
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
        families = spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in ips] or ["IPv4"]
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "PreferDualStack" if len(families) == 2 else "SingleStack"


def default_service(service: Object) -> None:
    """SetDefaults_Service, plus the allocator's IP family defaults (not the clusterIP itself)."""
    spec = service.get("spec")
    if spec is None:
        spec = service["spec"] = {}
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig") or {}
        if (config.get("clientIP") or {}).get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in spec.get("ports") or ():
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port", 0)
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("ClusterIP", "NodePort",
                                                                         "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    _default_ip_families(spec)
    status = service.get("status")
    if status is not None:
        # LoadBalancerIPMode (beta, on): ingress points with an IP get ipMode VIP.
        for ingress in (status.get("loadBalancer") or {}).get("ingress") or ():
            if ingress.get("ip") and not ingress.get("ipMode"):
                ingress["ipMode"] = "VIP"


def default_namespace(namespace: Object) -> None:
    """SetDefaults_Namespace (the metadata.name label) and SetDefaults_NamespaceStatus."""
    meta = namespace.setdefault("metadata", {})
    name = meta.get("name")
    if name:
        labels = meta.get("labels")
        if labels is None:
            labels = meta["labels"] = {}
        labels["kubernetes.io/metadata.name"] = name
    status = namespace.get("status")
    if status is not None and not status.get("phase"):
        status["phase"] = "Active"


def default_node(node: Object) -> None:
    """SetDefaults_NodeStatus: allocatable defaults to capacity."""
    status = node.get("status")
    if status and status.get("capacity") and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])


def default_secret(secret: Object) -> None:
    if not secret.get("type"):
        secret["type"] = "Opaque"


def default_endpoints(endpoints: Object) -> None:
    for subset in endpoints.get("subsets") or ():
        for port in subset.get("ports") or ():
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def default_limit_range(limit_range: Object) -> None:
    """SetDefaults_LimitRangeItem: container defaults fall back to max, requests to default/min."""
    for item in (limit_range.get("spec") or {}).get("limits") or ():
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        request = dict(item.get("defaultRequest") or {})
        for key, value in (item.get("max") or {}).items():
            default.setdefault(key, value)
        for key, value in default.items():
            request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            request.setdefault(key, value)
        if default:
            item["default"] = default
        if request:
            item["defaultRequest"] = request


def default_pvc_template(claim: dict[str, Any]) -> None:
    """A PersistentVolumeClaim embedded in a StatefulSet, as Kubernetes stores it."""
    claim.setdefault("apiVersion", "v1")
    claim.setdefault("kind", "PersistentVolumeClaim")
    spec = claim.get("spec")
    if spec is not None and not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = claim.get("status")
    if status is None:
        status = claim["status"] = {}
    if not status.get("phase"):
        status["phase"] = "Pending"
