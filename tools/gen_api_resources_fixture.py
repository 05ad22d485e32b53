"""Generate ``tests/kubectl/fixtures/api-resources-1.32.txt``: what ``kubectl api-resources -o wide``
prints against a stock Kubernetes 1.32 API server (default feature gates and runtime config).

Two inputs:

- **Derived**: which resources exist and in which API version. Every kind that the official 1.32
  schemas (``kubernetes-validate``'s ``v1.32.0-local``) give a GA group/version/kind is a resource,
  except the meta types (``io.k8s.apimachinery...``: Status, DeleteOptions, WatchEvent, ...) and the
  bodies of subresources (:data:`SUBRESOURCE_BODIES`). A group shows its preferred version, the
  highest GA one (autoscaling/v2 over v1), as kubectl does.
- **Checked in**: what each resource's registry declares, which no schema carries (:data:`REGISTRY`):
  the plural, short names and categories (the storages' ``ShortNames()``/``Categories()`` in
  pkg/registry/*/*/storage/storage.go), the scope, and the verbs where they are not the full eight
  (read off the 1.32 OpenAPI paths, which the ``kubernetes`` 32.x Python client is generated from:
  namespaces have no deletecollection; componentstatuses only get and list; bindings and the review
  APIs only create). Short names and categories were checked against kubernetes/kubernetes'
  api/discovery/*.json.

The script fails if a schema kind has no registry entry or an entry names no schema kind, so a
schema update cannot silently drop or invent a row.

Usage: ``.venv/bin/python tools/gen_api_resources_fixture.py``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.machinery.schema import KUBERNETES_VERSION, gvk_index

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "kubectl" / "fixtures"
FIXTURE = FIXTURES / "api-resources-1.32.txt"
#: ``kubectl api-versions``: every served group/version, not only the preferred ones.
VERSIONS_FIXTURE = FIXTURES / "api-versions-1.32.txt"

#: Kinds with a GA GVK that are request/response bodies of subresources, not resources.
SUBRESOURCE_BODIES = {("authentication.k8s.io", "TokenRequest"), ("autoscaling", "Scale"), ("policy", "Eviction")}

ALL_VERBS = "create,delete,deletecollection,get,list,patch,update,watch"
CREATE = "create"

#: (group, kind) -> (plural, short names, namespaced, verbs, categories)
REGISTRY: dict[tuple[str, str], tuple[str, str, bool, str, str]] = {
    ("", "Binding"): ("bindings", "", True, CREATE, ""),
    ("", "ComponentStatus"): ("componentstatuses", "cs", False, "get,list", ""),
    ("", "ConfigMap"): ("configmaps", "cm", True, ALL_VERBS, ""),
    ("", "Endpoints"): ("endpoints", "ep", True, ALL_VERBS, ""),
    ("", "Event"): ("events", "ev", True, ALL_VERBS, ""),
    ("", "LimitRange"): ("limitranges", "limits", True, ALL_VERBS, ""),
    ("", "Namespace"): ("namespaces", "ns", False, "create,delete,get,list,patch,update,watch", ""),
    ("", "Node"): ("nodes", "no", False, ALL_VERBS, ""),
    ("", "PersistentVolumeClaim"): ("persistentvolumeclaims", "pvc", True, ALL_VERBS, ""),
    ("", "PersistentVolume"): ("persistentvolumes", "pv", False, ALL_VERBS, ""),
    ("", "Pod"): ("pods", "po", True, ALL_VERBS, "all"),
    ("", "PodTemplate"): ("podtemplates", "", True, ALL_VERBS, ""),
    ("", "ReplicationController"): ("replicationcontrollers", "rc", True, ALL_VERBS, "all"),
    ("", "ResourceQuota"): ("resourcequotas", "quota", True, ALL_VERBS, ""),
    ("", "Secret"): ("secrets", "", True, ALL_VERBS, ""),
    ("", "ServiceAccount"): ("serviceaccounts", "sa", True, ALL_VERBS, ""),
    ("", "Service"): ("services", "svc", True, ALL_VERBS, "all"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        ("mutatingwebhookconfigurations", "", False, ALL_VERBS, "api-extensions"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"):
        ("validatingadmissionpolicies", "", False, ALL_VERBS, "api-extensions"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"):
        ("validatingadmissionpolicybindings", "", False, ALL_VERBS, "api-extensions"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        ("validatingwebhookconfigurations", "", False, ALL_VERBS, "api-extensions"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"):
        ("customresourcedefinitions", "crd,crds", False, ALL_VERBS, "api-extensions"),
    ("apiregistration.k8s.io", "APIService"): ("apiservices", "", False, ALL_VERBS, "api-extensions"),
    ("apps", "ControllerRevision"): ("controllerrevisions", "", True, ALL_VERBS, ""),
    ("apps", "DaemonSet"): ("daemonsets", "ds", True, ALL_VERBS, "all"),
    ("apps", "Deployment"): ("deployments", "deploy", True, ALL_VERBS, "all"),
    ("apps", "ReplicaSet"): ("replicasets", "rs", True, ALL_VERBS, "all"),
    ("apps", "StatefulSet"): ("statefulsets", "sts", True, ALL_VERBS, "all"),
    ("authentication.k8s.io", "SelfSubjectReview"): ("selfsubjectreviews", "", False, CREATE, ""),
    ("authentication.k8s.io", "TokenReview"): ("tokenreviews", "", False, CREATE, ""),
    ("authorization.k8s.io", "LocalSubjectAccessReview"): ("localsubjectaccessreviews", "", True, CREATE, ""),
    ("authorization.k8s.io", "SelfSubjectAccessReview"): ("selfsubjectaccessreviews", "", False, CREATE, ""),
    ("authorization.k8s.io", "SelfSubjectRulesReview"): ("selfsubjectrulesreviews", "", False, CREATE, ""),
    ("authorization.k8s.io", "SubjectAccessReview"): ("subjectaccessreviews", "", False, CREATE, ""),
    ("autoscaling", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", "hpa", True, ALL_VERBS, "all"),
    ("batch", "CronJob"): ("cronjobs", "cj", True, ALL_VERBS, "all"),
    ("batch", "Job"): ("jobs", "", True, ALL_VERBS, "all"),
    ("certificates.k8s.io", "CertificateSigningRequest"):
        ("certificatesigningrequests", "csr", False, ALL_VERBS, ""),
    ("coordination.k8s.io", "Lease"): ("leases", "", True, ALL_VERBS, ""),
    ("discovery.k8s.io", "EndpointSlice"): ("endpointslices", "", True, ALL_VERBS, ""),
    ("events.k8s.io", "Event"): ("events", "ev", True, ALL_VERBS, ""),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"): ("flowschemas", "", False, ALL_VERBS, ""),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"):
        ("prioritylevelconfigurations", "", False, ALL_VERBS, ""),
    ("networking.k8s.io", "IngressClass"): ("ingressclasses", "", False, ALL_VERBS, ""),
    ("networking.k8s.io", "Ingress"): ("ingresses", "ing", True, ALL_VERBS, ""),
    ("networking.k8s.io", "NetworkPolicy"): ("networkpolicies", "netpol", True, ALL_VERBS, ""),
    ("node.k8s.io", "RuntimeClass"): ("runtimeclasses", "", False, ALL_VERBS, ""),
    ("policy", "PodDisruptionBudget"): ("poddisruptionbudgets", "pdb", True, ALL_VERBS, ""),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("clusterrolebindings", "", False, ALL_VERBS, ""),
    ("rbac.authorization.k8s.io", "ClusterRole"): ("clusterroles", "", False, ALL_VERBS, ""),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("rolebindings", "", True, ALL_VERBS, ""),
    ("rbac.authorization.k8s.io", "Role"): ("roles", "", True, ALL_VERBS, ""),
    ("scheduling.k8s.io", "PriorityClass"): ("priorityclasses", "pc", False, ALL_VERBS, ""),
    ("storage.k8s.io", "CSIDriver"): ("csidrivers", "", False, ALL_VERBS, ""),
    ("storage.k8s.io", "CSINode"): ("csinodes", "", False, ALL_VERBS, ""),
    ("storage.k8s.io", "CSIStorageCapacity"): ("csistoragecapacities", "", True, ALL_VERBS, ""),
    ("storage.k8s.io", "StorageClass"): ("storageclasses", "sc", False, ALL_VERBS, ""),
    ("storage.k8s.io", "VolumeAttachment"): ("volumeattachments", "", False, ALL_VERBS, ""),
}

HEADER = ("NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES")
_GA = re.compile(r"^v(\d+)$")


def _resource_gvks() -> list[tuple[str, str, str]]:
    """(group, GA version, kind) of every resource kind in the official schemas."""
    return [(group, version, kind) for (group, version, kind), definition in gvk_index().items()
            if _GA.match(version) and not kind.endswith("List") and not definition.startswith("io.k8s.apimachinery.")
            and (group, kind) not in SUBRESOURCE_BODIES]


def served_kinds() -> dict[tuple[str, str], str]:
    """(group, kind) -> preferred GA version, from the official schemas."""
    found: dict[tuple[str, str], str] = {}
    for group, version, kind in _resource_gvks():
        current = found.get((group, kind))
        if current is None or int(version[1:]) > int(current[1:]):
            found[(group, kind)] = version
    return found


def served_versions() -> list[str]:
    """What ``kubectl api-versions`` prints: every group/version, sorted."""
    return sorted({f"{group}/{version}" if group else version for group, version, _ in _resource_gvks()})


def rows() -> list[tuple[str, ...]]:
    kinds = served_kinds()
    missing = sorted(set(kinds) - set(REGISTRY))
    stale = sorted(set(REGISTRY) - set(kinds))
    if missing or stale:
        raise SystemExit(f"registry facts out of date: no entry for {missing}; no schema kind for {stale}")
    table = []
    for (group, kind), version in kinds.items():
        plural, short, namespaced, verbs, categories = REGISTRY[(group, kind)]
        api_version = f"{group}/{version}" if group else version
        table.append((plural, short, api_version, str(namespaced).lower(), kind, verbs, categories))
    # kubectl sorts by API group, then by resource name.
    return sorted(table, key=lambda row: (row[2].rpartition("/")[0], row[0]))


def render(table: list[tuple[str, ...]]) -> str:
    """As kubectl's tabwriter (minwidth 6, padding 3, blank-padded) prints it."""
    lines = [HEADER, *table]
    widths = [max(6, max(len(line[i]) for line in lines) + 3) for i in range(len(HEADER))]
    return "".join("".join(cell.ljust(widths[i]) if i < len(line) - 1 else cell for i, cell in enumerate(line))
                   + "\n" for line in lines)


def main() -> None:
    assert KUBERNETES_VERSION.startswith("1.32."), KUBERNETES_VERSION
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(render(rows()))
    VERSIONS_FIXTURE.write_text("".join(f"{version}\n" for version in served_versions()))
    print(f"wrote {FIXTURE} ({len(rows())} resources) and {VERSIONS_FIXTURE} ({len(served_versions())} versions)")


if __name__ == "__main__":
    main()
