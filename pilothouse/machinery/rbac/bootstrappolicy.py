"""The default RBAC policy kube-apiserver 1.32 bootstraps, as data.

Transcribed from ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy`` (``policy.go``,
``controller_policy.go``, ``namespace_policy.go``) with the default feature gates of 1.32 (alpha
and off-by-default beta gates such as DynamicResourceAllocation, ClusterTrustBundle and
MultiCIDRServiceAllocator contribute nothing). :func:`rule` is ``rbacv1helpers.NewRule(...).RuleOrDie()``:
each list sorted and de-duplicated, as the golden files show them.

Every object carries ``kubernetes.io/bootstrapping: rbac-defaults`` and
``rbac.authorization.kubernetes.io/autoupdate: "true"`` (``addDefaultMetadata``); the reconciler
(``apiserver/rbacbootstrap.py``) creates what is missing and adds missing rules and subjects to
objects whose autoupdate annotation is not ``"false"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.machinery.meta import Object

__all__ = [
    "AUTOUPDATE_ANNOTATION",
    "BOOTSTRAP_LABEL",
    "GROUP",
    "cluster_role_bindings",
    "cluster_roles",
    "namespace_role_bindings",
    "namespace_roles",
    "rule",
]


GROUP = "rbac.authorization.k8s.io"
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = READ + WRITE
READ_UPDATE = ("get", "list", "watch", "update", "patch")

# API groups, named as policy.go names them.
LEGACY = ""
APPS = "apps"
AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTOSCALING = "autoscaling"
BATCH = "batch"
CERTIFICATES = "certificates.k8s.io"
COORDINATION = "coordination.k8s.io"
DISCOVERY = "discovery.k8s.io"
EXTENSIONS = "extensions"
POLICY = "policy"
NETWORKING = "networking.k8s.io"
#: the user (and its ClusterRole) of the agents' NetworkPolicy controller
NETWORK_POLICY_USER = "system:pilothouse-network-policy"
STORAGE = "storage.k8s.io"
EVENTS = "events.k8s.io"
ADMISSION = "admissionregistration.k8s.io"

_AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
_CONTROLLER_PREFIX = "system:controller:"
_SYSTEM_NS = "kube-system"


def rule(*verbs: str, groups: Iterable[str] = (), resources: Iterable[str] = (),
         names: Iterable[str] = (), urls: Iterable[str] = ()) -> Object:
    """One PolicyRule; empty lists are left out as the JSON of the Go struct leaves them out."""
    out: Object = {"verbs": sorted(set(verbs))}
    for key, values in (("apiGroups", groups), ("resources", resources), ("resourceNames", names),
                        ("nonResourceURLs", urls)):
        if values:
            out[key] = sorted(set(values))
    return out


def _events() -> Object:
    """``eventsRule()``: every component records events in both event APIs."""
    return rule("create", "update", "patch", groups=(LEGACY, EVENTS), resources=("events",))


def _metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Object:
    meta: Object = {"name": name,
                    "labels": {BOOTSTRAP_LABEL[0]: BOOTSTRAP_LABEL[1], **(labels or {})},
                    "annotations": {AUTOUPDATE_ANNOTATION: "true"}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _cluster_role(name: str, *rules: Object, labels: dict[str, str] | None = None,
                  aggregate: str | None = None) -> Object:
    role: Object = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                    "metadata": _metadata(name, labels=labels), "rules": list(rules)}
    if aggregate is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {_AGGREGATE_TO + aggregate: "true"}}]}
        # Filled in by the aggregation controller; a bootstrap aggregated role starts empty.
        role["rules"] = []
    return role


def _subject(kind: str, name: str, namespace: str | None = None) -> Object:
    # A ServiceAccount's group is the core one, "", which JSON omits (Subject.APIGroup is omitempty).
    subject: Object = ({"kind": kind, "name": name} if kind == "ServiceAccount"
                       else {"kind": kind, "apiGroup": GROUP, "name": name})
    if namespace is not None:
        subject["namespace"] = namespace
    return subject


def _user(name: str) -> Object:
    return _subject("User", name)


def _group(name: str) -> Object:
    return _subject("Group", name)


def _sa(name: str, namespace: str = _SYSTEM_NS) -> Object:
    return _subject("ServiceAccount", name, namespace)


def _binding(kind: str, name: str, role_kind: str, role: str, subjects: Iterable[Object],
             namespace: str | None = None) -> Object:
    binding: Object = {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": _metadata(name, namespace),
                       "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role}}
    subjects = list(subjects)
    if subjects:
        binding["subjects"] = subjects
    return binding


def _cluster_binding(role: str, *subjects: Object) -> Object:
    return _binding("ClusterRoleBinding", role, "ClusterRole", role, subjects)


# -- policy.go -----------------------------------------------------------------------------------

def _node_rules() -> list[Object]:
    """``NodeRules()``: what kubelets need (the Node authorizer narrows it to their own node)."""
    return [
        rule("create", groups=(AUTHN,), resources=("tokenreviews",)),
        rule("create", groups=(AUTHZ,), resources=("subjectaccessreviews", "localsubjectaccessreviews")),
        rule(*READ, groups=(LEGACY,), resources=("services",)),
        rule("create", "get", "list", "watch", groups=(LEGACY,), resources=("nodes",)),
        rule("update", "patch", groups=(LEGACY,), resources=("nodes/status",)),
        rule("update", "patch", groups=(LEGACY,), resources=("nodes",)),
        rule("create", "update", "patch", groups=(LEGACY,), resources=("events",)),
        rule(*READ, groups=(LEGACY,), resources=("pods",)),
        rule("create", "delete", groups=(LEGACY,), resources=("pods",)),
        rule("update", "patch", groups=(LEGACY,), resources=("pods/status",)),
        rule("create", groups=(LEGACY,), resources=("pods/eviction",)),
        rule("get", "list", "watch", groups=(LEGACY,), resources=("secrets", "configmaps")),
        rule("get", groups=(LEGACY,), resources=("persistentvolumeclaims", "persistentvolumes")),
        rule("get", groups=(LEGACY,), resources=("endpoints",)),
        rule("create", "get", "list", "watch", groups=(CERTIFICATES,), resources=("certificatesigningrequests",)),
        rule("get", "create", "update", "patch", "delete", groups=(COORDINATION,), resources=("leases",)),
        rule("get", groups=(STORAGE,), resources=("volumeattachments",)),
        rule("create", groups=(LEGACY,), resources=("serviceaccounts/token",)),
        rule("get", "update", "patch", groups=(LEGACY,), resources=("persistentvolumeclaims/status",)),
        rule("get", "watch", "list", groups=(STORAGE,), resources=("csidrivers",)),
        rule("get", "create", "update", "patch", "delete", groups=(STORAGE,), resources=("csinodes",)),
        rule("get", "list", "watch", groups=("node.k8s.io",), resources=("runtimeclasses",)),
    ]


def _aggregate_to_edit() -> list[Object]:
    return [
        # Read on escalating resources.
        rule(*READ, groups=(LEGACY,), resources=("pods/attach", "pods/proxy", "pods/exec", "pods/portforward",
                                                 "secrets", "services/proxy")),
        rule("impersonate", groups=(LEGACY,), resources=("serviceaccounts",)),
        rule(*WRITE, groups=(LEGACY,), resources=("pods", "pods/attach", "pods/proxy", "pods/exec",
                                                  "pods/portforward")),
        rule("create", groups=(LEGACY,), resources=("pods/eviction",)),
        # Endpoints are not writable by edit since 1.22 (CVE-2021-25740).
        rule(*WRITE, groups=(LEGACY,), resources=("replicationcontrollers", "replicationcontrollers/scale",
                                                  "serviceaccounts", "services", "services/proxy",
                                                  "persistentvolumeclaims", "configmaps", "secrets")),
        rule("create", groups=(LEGACY,), resources=("serviceaccounts/token",)),
        rule(*WRITE, groups=(APPS,), resources=("statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                                                "deployments/scale", "deployments/rollback", "replicasets",
                                                "replicasets/scale")),
        rule(*WRITE, groups=(AUTOSCALING,), resources=("horizontalpodautoscalers",)),
        rule(*WRITE, groups=(BATCH,), resources=("jobs", "cronjobs")),
        rule(*WRITE, groups=(EXTENSIONS,), resources=("daemonsets", "deployments", "deployments/scale",
                                                      "deployments/rollback", "ingresses", "replicasets",
                                                      "replicasets/scale", "replicationcontrollers/scale",
                                                      "networkpolicies")),
        rule(*WRITE, groups=(POLICY,), resources=("poddisruptionbudgets",)),
        rule(*WRITE, groups=(NETWORKING,), resources=("networkpolicies", "ingresses")),
        # Namespace editors may record events (since 1.22, kubernetes#102858) and run leader
        # election with Leases.
        rule(*WRITE, groups=(LEGACY,), resources=("events",)),
        rule(*READ_WRITE, groups=(COORDINATION,), resources=("leases",)),
    ]


def _aggregate_to_view() -> list[Object]:
    return [
        rule(*READ, groups=(LEGACY,), resources=("pods", "replicationcontrollers", "replicationcontrollers/scale",
                                                 "serviceaccounts", "services", "services/status", "endpoints",
                                                 "persistentvolumeclaims", "persistentvolumeclaims/status",
                                                 "configmaps")),
        rule(*READ, groups=(LEGACY,), resources=("limitranges", "resourcequotas", "bindings", "events",
                                                 "pods/status", "resourcequotas/status", "namespaces/status",
                                                 "replicationcontrollers/status", "pods/log")),
        # Reading namespaces at namespace scope means reading *this* namespace.
        rule(*READ, groups=(LEGACY,), resources=("namespaces",)),
        rule(*READ, groups=(DISCOVERY,), resources=("endpointslices",)),
        rule(*READ, groups=(APPS,), resources=("controllerrevisions", "statefulsets", "statefulsets/status",
                                               "statefulsets/scale", "daemonsets", "daemonsets/status",
                                               "deployments", "deployments/status", "deployments/scale",
                                               "replicasets", "replicasets/status", "replicasets/scale")),
        rule(*READ, groups=(AUTOSCALING,), resources=("horizontalpodautoscalers",
                                                      "horizontalpodautoscalers/status")),
        rule(*READ, groups=(BATCH,), resources=("jobs", "cronjobs", "cronjobs/status", "jobs/status")),
        rule(*READ, groups=(EXTENSIONS,), resources=("daemonsets", "daemonsets/status", "deployments",
                                                     "deployments/scale", "deployments/status", "ingresses",
                                                     "ingresses/status", "replicasets", "replicasets/scale",
                                                     "replicasets/status", "replicationcontrollers/scale",
                                                     "networkpolicies")),
        rule(*READ, groups=(POLICY,), resources=("poddisruptionbudgets", "poddisruptionbudgets/status")),
        rule(*READ, groups=(NETWORKING,), resources=("networkpolicies", "ingresses", "ingresses/status")),
    ]


def _approver(signer: str) -> Object:
    return _cluster_role(f"system:certificates.k8s.io:{signer.replace('kubernetes.io/', '')}-approver",
                         rule("approve", groups=(CERTIFICATES,), resources=("signers",), names=(signer,)))


def _system_roles() -> list[Object]:
    health = ("/livez", "/readyz", "/healthz", "/version", "/version/")
    return [
        # A "root" role which can do absolutely anything.
        _cluster_role("cluster-admin", rule("*", groups=("*",), resources=("*",)), rule("*", urls=("*",))),
        # Just enough to tell whether the server is ready and to discover API versions.
        _cluster_role("system:discovery", rule("get", urls=(*health, "/openapi", "/openapi/*", "/api", "/api/*",
                                                             "/apis", "/apis/*"))),
        _cluster_role("system:monitoring", rule("get", urls=("/metrics", "/metrics/slis", "/livez", "/readyz",
                                                              "/healthz", "/livez/*", "/readyz/*", "/healthz/*"))),
        # What a "normal" user needs to learn about themselves.
        _cluster_role("system:basic-user",
                      rule("create", groups=(AUTHZ,),
                           resources=("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
                      rule("create", groups=(AUTHN,), resources=("selfsubjectreviews",))),
        _cluster_role("system:public-info-viewer", rule("get", urls=health)),
        # The user-facing roles are unions of the aggregate-to-* roles (and of anything else so labelled).
        _cluster_role("admin", aggregate="admin"),
        _cluster_role("edit", labels={_AGGREGATE_TO + "admin": "true"}, aggregate="edit"),
        _cluster_role("view", labels={_AGGREGATE_TO + "edit": "true"}, aggregate="view"),
        _cluster_role("system:aggregate-to-admin",
                      rule("create", groups=(AUTHZ,), resources=("localsubjectaccessreviews",)),
                      rule(*READ_WRITE, groups=(GROUP,), resources=("roles", "rolebindings")),
                      labels={_AGGREGATE_TO + "admin": "true"}),
        _cluster_role("system:aggregate-to-edit", *_aggregate_to_edit(), labels={_AGGREGATE_TO + "edit": "true"}),
        _cluster_role("system:aggregate-to-view", *_aggregate_to_view(), labels={_AGGREGATE_TO + "view": "true"}),
        _cluster_role("system:heapster",
                      rule(*READ, groups=(LEGACY,), resources=("events", "pods", "nodes", "namespaces")),
                      rule(*READ, groups=(EXTENSIONS,), resources=("deployments",))),
        _cluster_role("system:node", *_node_rules()),
        _cluster_role("system:node-problem-detector",
                      rule("get", groups=(LEGACY,), resources=("nodes",)),
                      rule("patch", groups=(LEGACY,), resources=("nodes/status",)),
                      _events()),
        _cluster_role("system:kubelet-api-admin",
                      rule("get", "list", "watch", groups=(LEGACY,), resources=("nodes",)),
                      rule("proxy", groups=(LEGACY,), resources=("nodes",)),
                      rule("*", groups=(LEGACY,), resources=("nodes/proxy", "nodes/metrics", "nodes/spec",
                                                             "nodes/stats", "nodes/log"))),
        _cluster_role("system:node-bootstrapper",
                      rule("create", "get", "list", "watch", groups=(CERTIFICATES,),
                           resources=("certificatesigningrequests",))),
        _cluster_role("system:auth-delegator",
                      rule("create", groups=(AUTHN,), resources=("tokenreviews",)),
                      rule("create", groups=(AUTHZ,), resources=("subjectaccessreviews",))),
        _cluster_role("system:kube-aggregator", rule(*READ, groups=(LEGACY,), resources=("services", "endpoints"))),
        _cluster_role("system:kube-controller-manager",
                      _events(),
                      rule("create", groups=(COORDINATION,), resources=("leases",)),
                      rule("get", "update", groups=(COORDINATION,), resources=("leases",),
                           names=("kube-controller-manager",)),
                      rule("create", groups=(LEGACY,), resources=("secrets", "serviceaccounts")),
                      rule("delete", groups=(LEGACY,), resources=("secrets",)),
                      rule("get", groups=(LEGACY,), resources=("configmaps", "namespaces", "secrets",
                                                               "serviceaccounts")),
                      rule("update", groups=(LEGACY,), resources=("secrets", "serviceaccounts")),
                      rule("create", groups=(AUTHN,), resources=("tokenreviews",)),
                      rule("create", groups=(AUTHZ,), resources=("subjectaccessreviews",)),
                      # Every shared informer.
                      rule("list", "watch", groups=("*",), resources=("*",)),
                      rule("create", groups=(LEGACY,), resources=("serviceaccounts/token",))),
        _cluster_role("system:kube-dns", rule("list", "watch", groups=(LEGACY,), resources=("endpoints", "services"))),
        # Not Kubernetes' bootstrap policy but kubeadm's CoreDNS addon role: pilothouse's node agent serves
        # cluster DNS itself (components/dns) with the node's credentials, bound below to system:nodes.
        # Less kubeadm's "pods" (for CoreDNS's `pods verified`, which this DNS does not do): bound to
        # every node, it would undo 1.32's Node authorizer rule that a node lists only its own pods.
        _cluster_role("system:coredns",
                      rule("list", "watch", groups=(LEGACY,), resources=("endpoints", "services", "namespaces")),
                      rule("list", "watch", groups=(DISCOVERY,), resources=("endpointslices",))),
        _cluster_role("system:persistent-volume-provisioner",
                      rule("get", "list", "watch", "create", "delete", groups=(LEGACY,),
                           resources=("persistentvolumes",)),
                      rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
                      rule(*READ, groups=(STORAGE,), resources=("storageclasses",)),
                      rule("watch", groups=(LEGACY,), resources=("events",)),
                      _events()),
        _cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                      rule("create", groups=(CERTIFICATES,), resources=("certificatesigningrequests/nodeclient",))),
        _cluster_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                      rule("create", groups=(CERTIFICATES,),
                           resources=("certificatesigningrequests/selfnodeclient",))),
        _cluster_role("system:volume-scheduler",
                      rule(*READ_UPDATE, groups=(LEGACY,), resources=("persistentvolumes",)),
                      rule(*READ, groups=(STORAGE,), resources=("storageclasses",)),
                      rule(*READ_UPDATE, groups=(LEGACY,), resources=("persistentvolumeclaims",))),
        _approver("kubernetes.io/legacy-unknown"),
        _approver("kubernetes.io/kubelet-serving"),
        _approver("kubernetes.io/kube-apiserver-client"),
        _approver("kubernetes.io/kube-apiserver-client-kubelet"),
        _cluster_role("system:service-account-issuer-discovery",
                      rule("get", urls=("/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                                        "/openid/v1/jwks", "/openid/v1/jwks/"))),
        _cluster_role("system:node-proxier",
                      rule("list", "watch", groups=(LEGACY,), resources=("services", "endpoints")),
                      rule("get", "list", "watch", groups=(LEGACY,), resources=("nodes",)),
                      _events(),
                      rule("list", "watch", groups=(DISCOVERY,), resources=("endpointslices",))),
        # not Kubernetes' (NetworkPolicy enforcement is a network plugin's there): the agents' embedded
        # policy controller, as k3s gives its netpol controller system:k3s-controller
        _cluster_role(NETWORK_POLICY_USER,
                      rule("list", "watch", groups=(LEGACY,), resources=("pods", "namespaces")),
                      rule("list", "watch", groups=(NETWORKING,), resources=("networkpolicies",))),
        _cluster_role("system:kube-scheduler",
                      _events(),
                      rule("create", groups=(COORDINATION,), resources=("leases",)),
                      rule("get", "update", groups=(COORDINATION,), resources=("leases",), names=("kube-scheduler",)),
                      rule(*READ, groups=(LEGACY,), resources=("nodes",)),
                      rule("get", "list", "watch", "delete", groups=(LEGACY,), resources=("pods",)),
                      rule("create", groups=(LEGACY,), resources=("bindings", "pods/binding")),
                      rule("patch", "update", groups=(LEGACY,), resources=("pods/status",)),
                      rule(*READ, groups=(LEGACY,), resources=("replicationcontrollers", "services")),
                      rule(*READ, groups=(APPS, EXTENSIONS), resources=("replicasets",)),
                      rule(*READ, groups=(APPS,), resources=("statefulsets",)),
                      rule(*READ, groups=(POLICY,), resources=("poddisruptionbudgets",)),
                      rule(*READ, groups=(LEGACY,), resources=("persistentvolumeclaims", "persistentvolumes")),
                      rule("create", groups=(AUTHN,), resources=("tokenreviews",)),
                      rule("create", groups=(AUTHZ,), resources=("subjectaccessreviews",)),
                      rule(*READ, groups=(STORAGE,), resources=("csinodes",)),
                      rule(*READ, groups=(LEGACY,), resources=("namespaces",)),
                      rule(*READ, groups=(STORAGE,), resources=("csidrivers",)),
                      rule(*READ, groups=(STORAGE,), resources=("csistoragecapacities",))),
    ]


# -- controller_policy.go: one role per kube-controller-manager loop, bound to its service account --

def _controller_rules() -> dict[str, list[Object]]:
    pods_rw = ("list", "watch", "create", "delete", "patch")
    return {
        "attachdetach-controller": [
            rule("list", "watch", groups=(LEGACY,), resources=("persistentvolumes", "persistentvolumeclaims")),
            rule("get", "list", "watch", groups=(LEGACY,), resources=("nodes",)),
            rule("patch", "update", groups=(LEGACY,), resources=("nodes/status",)),
            rule("list", "watch", groups=(LEGACY,), resources=("pods",)),
            _events(),
            rule("get", "create", "delete", "list", "watch", groups=(STORAGE,), resources=("volumeattachments",)),
            rule("get", "watch", "list", groups=(STORAGE,), resources=("csidrivers",)),
            rule("get", "watch", "list", groups=(STORAGE,), resources=("csinodes",)),
        ],
        "clusterrole-aggregation-controller": [
            # Aggregation needs escalate: it writes rules its own role may not hold.
            rule("escalate", "get", "list", "watch", "update", "patch", groups=(GROUP,), resources=("clusterroles",)),
        ],
        "cronjob-controller": [
            rule("get", "list", "watch", "update", groups=(BATCH,), resources=("cronjobs",)),
            rule("get", "list", "watch", "create", "update", "delete", "patch", groups=(BATCH,), resources=("jobs",)),
            rule("update", groups=(BATCH,), resources=("cronjobs/status",)),
            rule("update", groups=(BATCH,), resources=("cronjobs/finalizers",)),
            rule("list", "delete", groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "daemon-set-controller": [
            rule("get", "list", "watch", groups=(EXTENSIONS, APPS), resources=("daemonsets",)),
            rule("update", groups=(EXTENSIONS, APPS), resources=("daemonsets/status",)),
            rule("update", groups=(EXTENSIONS, APPS), resources=("daemonsets/finalizers",)),
            rule("list", "watch", groups=(LEGACY,), resources=("nodes",)),
            rule(*pods_rw, groups=(LEGACY,), resources=("pods",)),
            rule("create", groups=(LEGACY,), resources=("pods/binding",)),
            rule("get", "list", "watch", "create", "delete", "update", "patch", groups=(APPS,),
                 resources=("controllerrevisions",)),
            _events(),
        ],
        "deployment-controller": [
            rule("get", "list", "watch", "update", groups=(EXTENSIONS, APPS), resources=("deployments",)),
            rule("update", groups=(EXTENSIONS, APPS), resources=("deployments/status",)),
            rule("update", groups=(EXTENSIONS, APPS), resources=("deployments/finalizers",)),
            rule("get", "list", "watch", "create", "update", "patch", "delete", groups=(APPS, EXTENSIONS),
                 resources=("replicasets",)),
            # The rollout "pause" needs pods to know which replica set owns them.
            rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "disruption-controller": [
            rule("get", "list", "watch", groups=(EXTENSIONS, APPS), resources=("deployments",)),
            rule("get", "list", "watch", groups=(APPS, EXTENSIONS), resources=("replicasets",)),
            rule("get", "list", "watch", groups=(LEGACY,), resources=("replicationcontrollers",)),
            rule("get", "list", "watch", groups=(POLICY,), resources=("poddisruptionbudgets",)),
            rule("get", "list", "watch", groups=(APPS,), resources=("statefulsets",)),
            rule("update", groups=(POLICY,), resources=("poddisruptionbudgets/status",)),
            rule("patch", "update", groups=(LEGACY,), resources=("pods/status",)),
            rule("get", groups=("*",), resources=("*/scale",)),
            _events(),
        ],
        "endpoint-controller": [
            rule("get", "list", "watch", groups=(LEGACY,), resources=("services", "pods")),
            rule("get", "list", "create", "update", "delete", groups=(LEGACY,), resources=("endpoints",)),
            rule("create", groups=(LEGACY,), resources=("endpoints/restricted",)),
            _events(),
        ],
        "endpointslice-controller": [
            rule("get", "list", "watch", groups=(LEGACY,), resources=("services", "pods", "nodes")),
            # Slices owned by a Service block its deletion (blockOwnerDeletion needs finalizers access).
            rule("update", groups=(LEGACY,), resources=("services/finalizers",)),
            rule("get", "list", "create", "update", "delete", groups=(DISCOVERY,), resources=("endpointslices",)),
            _events(),
        ],
        "endpointslicemirroring-controller": [
            rule("get", "list", "watch", groups=(LEGACY,), resources=("services", "endpoints")),
            rule("update", groups=(LEGACY,), resources=("services/finalizers",)),
            rule("update", groups=(LEGACY,), resources=("endpoints/finalizers",)),
            rule("get", "list", "create", "update", "delete", groups=(DISCOVERY,), resources=("endpointslices",)),
            _events(),
        ],
        "expand-controller": [
            rule("get", "list", "watch", "update", "patch", groups=(LEGACY,), resources=("persistentvolumes",)),
            rule("update", "patch", groups=(LEGACY,), resources=("persistentvolumeclaims/status",)),
            rule("get", "list", "watch", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            rule("get", "list", "watch", groups=(STORAGE,), resources=("storageclasses",)),
            rule("get", groups=(LEGACY,), resources=("endpoints", "services")),
            rule("get", groups=(LEGACY,), resources=("secrets",)),
            _events(),
        ],
        "ephemeral-volume-controller": [
            rule("get", "list", "watch", groups=(LEGACY,), resources=("pods",)),
            rule("update", groups=(LEGACY,), resources=("pods/finalizers",)),
            rule("get", "list", "watch", "create", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            _events(),
        ],
        "generic-garbage-collector": [
            rule("get", "list", "watch", "patch", "update", "delete", groups=("*",), resources=("*",)),
            _events(),
        ],
        "horizontal-pod-autoscaler": [
            rule("get", "list", "watch", groups=(AUTOSCALING,), resources=("horizontalpodautoscalers",)),
            rule("update", groups=(AUTOSCALING,), resources=("horizontalpodautoscalers/status",)),
            rule("get", "update", groups=("*",), resources=("*/scale",)),
            rule("list", groups=(LEGACY,), resources=("pods",)),
            rule("list", groups=("metrics.k8s.io",), resources=("pods",)),
            rule("get", "list", groups=("custom.metrics.k8s.io",), resources=("*",)),
            rule("get", "list", groups=("external.metrics.k8s.io",), resources=("*",)),
            _events(),
        ],
        "job-controller": [
            rule("get", "list", "watch", "update", "patch", groups=(BATCH,), resources=("jobs",)),
            rule("update", groups=(BATCH,), resources=("jobs/status",)),
            rule("update", groups=(BATCH,), resources=("jobs/finalizers",)),
            rule(*pods_rw, groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "namespace-controller": [
            rule("get", "list", "watch", "delete", groups=(LEGACY,), resources=("namespaces",)),
            rule("update", groups=(LEGACY,), resources=("namespaces/finalize", "namespaces/status")),
            rule("get", "list", "delete", "deletecollection", groups=("*",), resources=("*",)),
        ],
        "node-controller": [
            rule("get", "list", "update", "delete", "patch", groups=(LEGACY,), resources=("nodes",)),
            rule("patch", "update", groups=(LEGACY,), resources=("nodes/status",)),
            rule("patch", "update", groups=(LEGACY,), resources=("pods/status",)),
            rule("list", "get", "delete", groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "persistent-volume-binder": [
            rule("get", "list", "watch", "update", "create", "delete", groups=(LEGACY,),
                 resources=("persistentvolumes",)),
            rule("update", groups=(LEGACY,), resources=("persistentvolumes/status",)),
            rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            rule("update", groups=(LEGACY,), resources=("persistentvolumeclaims/status",)),
            rule("list", "watch", "get", "create", "delete", groups=(LEGACY,), resources=("pods",)),
            rule("get", "list", "watch", groups=(STORAGE,), resources=("storageclasses",)),
            rule("get", "create", "update", "delete", groups=(LEGACY,), resources=("endpoints",)),
            rule("get", "create", "delete", groups=(LEGACY,), resources=("services",)),
            rule("get", groups=(LEGACY,), resources=("secrets",)),
            rule("get", "list", groups=(LEGACY,), resources=("nodes",)),
            # The recycler watches its pod's events.
            rule("watch", groups=(LEGACY,), resources=("events",)),
            _events(),
        ],
        "pod-garbage-collector": [
            rule("list", "watch", "delete", groups=(LEGACY,), resources=("pods",)),
            rule("get", "list", groups=(LEGACY,), resources=("nodes",)),
            rule("patch", groups=(LEGACY,), resources=("pods/status",)),
        ],
        "replicaset-controller": [
            rule("get", "list", "watch", "update", groups=(APPS, EXTENSIONS), resources=("replicasets",)),
            rule("update", groups=(APPS, EXTENSIONS), resources=("replicasets/status",)),
            rule("update", groups=(APPS, EXTENSIONS), resources=("replicasets/finalizers",)),
            rule(*pods_rw, groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "replication-controller": [
            rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("replicationcontrollers",)),
            rule("update", groups=(LEGACY,), resources=("replicationcontrollers/status",)),
            rule("update", groups=(LEGACY,), resources=("replicationcontrollers/finalizers",)),
            rule(*pods_rw, groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "resourcequota-controller": [
            # Quota counts every kind.
            rule("list", "watch", groups=("*",), resources=("*",)),
            rule("update", groups=(LEGACY,), resources=("resourcequotas/status",)),
            _events(),
        ],
        "route-controller": [
            rule("list", "watch", groups=(LEGACY,), resources=("nodes",)),
            rule("patch", groups=(LEGACY,), resources=("nodes/status",)),
            _events(),
        ],
        "service-account-controller": [
            rule("create", groups=(LEGACY,), resources=("serviceaccounts",)),
            _events(),
        ],
        "service-controller": [
            rule("get", "list", "watch", groups=(LEGACY,), resources=("services",)),
            rule("patch", "update", groups=(LEGACY,), resources=("services/status",)),
            rule("list", "watch", groups=(LEGACY,), resources=("nodes",)),
            _events(),
        ],
        "statefulset-controller": [
            rule("list", "watch", groups=(LEGACY,), resources=("pods",)),
            rule("get", "list", "watch", groups=(APPS,), resources=("statefulsets",)),
            rule("update", groups=(APPS,), resources=("statefulsets/status",)),
            rule("update", groups=(APPS,), resources=("statefulsets/finalizers",)),
            rule("get", "create", "delete", "update", "patch", groups=(LEGACY,), resources=("pods",)),
            rule("get", "create", "delete", "update", "patch", "list", "watch", groups=(APPS,),
                 resources=("controllerrevisions",)),
            rule("get", "create", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            rule("update", "delete", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            _events(),
        ],
        "ttl-controller": [
            rule("update", "patch", "list", "watch", groups=(LEGACY,), resources=("nodes",)),
            _events(),
        ],
        "certificate-controller": [
            rule("get", "list", "watch", "delete", groups=(CERTIFICATES,), resources=("certificatesigningrequests",)),
            rule("update", groups=(CERTIFICATES,), resources=("certificatesigningrequests/status",
                                                                "certificatesigningrequests/approval")),
            rule("approve", groups=(CERTIFICATES,), resources=("signers",),
                 names=("kubernetes.io/kube-apiserver-client-kubelet",)),
            rule("sign", groups=(CERTIFICATES,), resources=("signers",),
                 names=("kubernetes.io/legacy-unknown", "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving")),
            rule("create", groups=(AUTHZ,), resources=("subjectaccessreviews",)),
            _events(),
        ],
        "pvc-protection-controller": [
            rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("persistentvolumeclaims",)),
            rule("list", "watch", "get", groups=(LEGACY,), resources=("pods",)),
            _events(),
        ],
        "pv-protection-controller": [
            rule("get", "list", "watch", "update", groups=(LEGACY,), resources=("persistentvolumes",)),
            _events(),
        ],
        "ttl-after-finished-controller": [
            rule("get", "list", "watch", "delete", groups=(BATCH,), resources=("jobs",)),
            _events(),
        ],
        "root-ca-cert-publisher": [
            rule("create", "update", groups=(LEGACY,), resources=("configmaps",)),
            _events(),
        ],
        "validatingadmissionpolicy-status-controller": [
            rule("get", "list", "watch", groups=(ADMISSION,), resources=("validatingadmissionpolicies",)),
            rule("get", "patch", "update", groups=(ADMISSION,), resources=("validatingadmissionpolicies/status",)),
            _events(),
        ],
        "legacy-service-account-token-cleaner": [
            rule("get", groups=(LEGACY,), resources=("configmaps",),
                 names=("kube-apiserver-legacy-service-account-token-tracking",)),
            rule("delete", "patch", groups=(LEGACY,), resources=("secrets",)),
        ],
    }


def _pilothouse_controller_rules() -> dict[str, list[Object]]:
    """Not upstream's: two loops kube-apiserver runs on its own loopback identity (kube-aggregator's
    APIService availability, the APF configuration controller's FlowSchema status) run in pilothouse's
    controller manager, each as its own service account (components/controllers/credentials.py)."""
    apiregistration, flowcontrol = "apiregistration.k8s.io", "flowcontrol.apiserver.k8s.io"
    return {
        "apiservice-availability-controller": [
            rule(*READ, groups=(apiregistration,), resources=("apiservices",)),
            rule("update", "patch", groups=(apiregistration,), resources=("apiservices/status",)),
            rule(*READ, groups=(LEGACY,), resources=("services", "endpoints")),
        ],
        "flowschema-status-controller": [
            rule(*READ, groups=(flowcontrol,), resources=("flowschemas", "prioritylevelconfigurations")),
            rule("update", "patch", groups=(flowcontrol,), resources=("flowschemas/status",)),
        ],
    }


def _all_controller_rules() -> dict[str, list[Object]]:
    return {**_controller_rules(), **_pilothouse_controller_rules()}


def _controller_roles() -> list[Object]:
    return [_cluster_role(_CONTROLLER_PREFIX + name, *rules) for name, rules in _all_controller_rules().items()]


def cluster_roles() -> list[Object]:
    """Every bootstrap ClusterRole (fresh objects: callers may change them)."""
    return _system_roles() + _controller_roles()


def cluster_role_bindings() -> list[Object]:
    """Every bootstrap ClusterRoleBinding (fresh objects)."""
    bindings = [
        _cluster_binding("cluster-admin", _group("system:masters")),
        _cluster_binding("system:monitoring", _group("system:monitoring")),
        _cluster_binding("system:discovery", _group("system:authenticated")),
        _cluster_binding("system:basic-user", _group("system:authenticated")),
        _cluster_binding("system:public-info-viewer", _group("system:authenticated"),
                         _group("system:unauthenticated")),
        _cluster_binding("system:node-proxier", _user("system:kube-proxy")),
        _cluster_binding(NETWORK_POLICY_USER, _user(NETWORK_POLICY_USER)),
        _cluster_binding("system:kube-controller-manager", _user("system:kube-controller-manager")),
        _cluster_binding("system:kube-dns", _sa("kube-dns")),
        _cluster_binding("system:coredns", _group("system:nodes")),  # the agent's DNS (see system:coredns)
        _cluster_binding("system:kube-scheduler", _user("system:kube-scheduler")),
        _cluster_binding("system:volume-scheduler", _user("system:kube-scheduler")),
        # Kept with no subjects: nodes are authorized by the Node authorizer, the binding only exists
        # so that upgrades do not recreate the old group grant.
        _cluster_binding("system:node"),
        _cluster_binding("system:service-account-issuer-discovery", _group("system:serviceaccounts")),
    ]
    bindings += [_cluster_binding(_CONTROLLER_PREFIX + name, _sa(name)) for name in _all_controller_rules()]
    return bindings


def _role(name: str, namespace: str, *rules: Object) -> Object:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": _metadata(name, namespace),
            "rules": list(rules)}


def namespace_roles() -> list[Object]:
    """The bootstrap Roles of kube-system and kube-public (``namespace_policy.go``)."""
    return [
        # Lets extension API servers read the client CA the kube-apiserver publishes.
        _role("extension-apiserver-authentication-reader", _SYSTEM_NS,
              rule("get", "list", "watch", groups=(LEGACY,), resources=("configmaps",),
                   names=("extension-apiserver-authentication",))),
        _role("system::leader-locking-kube-controller-manager", _SYSTEM_NS,
              rule("watch", groups=(LEGACY,), resources=("configmaps",)),
              rule("get", "update", groups=(LEGACY,), resources=("configmaps",), names=("kube-controller-manager",))),
        _role("system::leader-locking-kube-scheduler", _SYSTEM_NS,
              rule("watch", groups=(LEGACY,), resources=("configmaps",)),
              rule("get", "update", groups=(LEGACY,), resources=("configmaps",), names=("kube-scheduler",))),
        _role(_CONTROLLER_PREFIX + "bootstrap-signer", _SYSTEM_NS,
              rule("get", "list", "watch", groups=(LEGACY,), resources=("secrets",))),
        _role(_CONTROLLER_PREFIX + "cloud-provider", _SYSTEM_NS,
              rule("create", "get", "list", "watch", groups=(LEGACY,), resources=("configmaps",))),
        _role(_CONTROLLER_PREFIX + "token-cleaner", _SYSTEM_NS,
              rule("delete", "get", "list", "watch", groups=(LEGACY,), resources=("secrets",)),
              _events()),
        _role(_CONTROLLER_PREFIX + "bootstrap-signer", "kube-public",
              rule("get", "list", "watch", groups=(LEGACY,), resources=("configmaps",)),
              rule("update", groups=(LEGACY,), resources=("configmaps",), names=("cluster-info",)),
              _events()),
    ]


def namespace_role_bindings() -> list[Object]:
    """The bootstrap RoleBindings of kube-system and kube-public."""
    def bind(name: str, namespace: str, role: str, *subjects: Object) -> Object:
        return _binding("RoleBinding", name, "Role", role, subjects, namespace)

    return [
        bind("system::extension-apiserver-authentication-reader", _SYSTEM_NS,
             "extension-apiserver-authentication-reader",
             _user("system:kube-controller-manager"), _user("system:kube-scheduler")),
        bind("system::leader-locking-kube-controller-manager", _SYSTEM_NS,
             "system::leader-locking-kube-controller-manager",
             _user("system:kube-controller-manager"), _sa("kube-controller-manager")),
        bind("system::leader-locking-kube-scheduler", _SYSTEM_NS, "system::leader-locking-kube-scheduler",
             _user("system:kube-scheduler"), _sa("kube-scheduler")),
        bind(_CONTROLLER_PREFIX + "bootstrap-signer", _SYSTEM_NS, _CONTROLLER_PREFIX + "bootstrap-signer",
             _sa("bootstrap-signer")),
        bind(_CONTROLLER_PREFIX + "cloud-provider", _SYSTEM_NS, _CONTROLLER_PREFIX + "cloud-provider",
             _sa("cloud-provider")),
        bind(_CONTROLLER_PREFIX + "token-cleaner", _SYSTEM_NS, _CONTROLLER_PREFIX + "token-cleaner",
             _sa("token-cleaner")),
        bind(_CONTROLLER_PREFIX + "bootstrap-signer", "kube-public", _CONTROLLER_PREFIX + "bootstrap-signer",
             _sa("bootstrap-signer")),
    ]
