"""PodSecurity: the namespace's ``pod-security.kubernetes.io/*`` labels enforced on pods, warned
about on pods and on workload templates, and checked against existing pods when a namespace's
enforce level is tightened (plugin/pkg/admission/security/podsecurity, over
k8s.io/pod-security-admission). A validating plugin: it judges pods as mutating admission left
them (the service account's token volume included).

Namespaces are read from a watch-fed cache, as Kubernetes reads its namespace informer: a pod
created within milliseconds of a label change can be judged by the labels before it, there too.
Audit mode writes audit annotations, as Kubernetes': ``pod-security.kubernetes.io/audit-violations``
when the audit level finds something, ``pod-security.kubernetes.io/enforce-policy`` on every pod
evaluated (``privileged:latest`` in a namespace privileged in every mode).

Kubernetes' default configuration exempts nothing (no namespaces, users or runtime classes, not
even kube-system) and defaults every mode to ``privileged:latest``; so does this plugin.
"""

from __future__ import annotations

from pilothouse.apiserver import audit
from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery import podsecurity
from pilothouse.machinery.errors import invalid
from pilothouse.store.interface import Store

__all__ = ["PodSecurity"]

_NAMESPACES = "/registry/core/namespaces/"
#: k8s.io/pod-security-admission/api: the plugin's audit annotations, under its label prefix.
ENFORCE_POLICY = "pod-security.kubernetes.io/enforce-policy"
AUDIT_VIOLATIONS = "pod-security.kubernetes.io/audit-violations"


class PodSecurity(Plugin):
    name = "PodSecurity"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.namespaces = WatchCache(store, _NAMESPACES)
        self.caches = (self.namespaces,)

    async def validate(self, attrs: Attributes) -> None:
        if attrs.operation not in ("CREATE", "UPDATE"):
            return
        group, plural = attrs.resource.group, attrs.resource.plural
        if (group, plural) == ("", "namespaces"):
            if not attrs.subresource:
                await self._validate_namespace(attrs)
        elif (group, plural) == ("", "pods"):
            if attrs.subresource not in podsecurity.IGNORED_POD_SUBRESOURCES:
                await self._validate_pod(attrs)
        elif (group, plural) in podsecurity.POD_SPEC_RESOURCES and not attrs.subresource:
            await self._warn_template(attrs)

    async def _policy(self, namespace: str) -> podsecurity.Policy:
        ns = await self.namespaces.get(_NAMESPACES + namespace)
        # A label that does not parse still yields a policy (enforce fails closed, warn open).
        return podsecurity.parse_policy(((ns or {}).get("metadata") or {}).get("labels"))[0]

    async def _validate_pod(self, attrs: Attributes) -> None:
        policy = await self._policy(attrs.namespace)
        if policy.fully_privileged():
            audit.annotate(ENFORCE_POLICY, "privileged:latest")
            return
        if attrs.operation == "UPDATE" and attrs.old is not None \
                and not podsecurity.significant_pod_update(attrs.obj, attrs.old):
            return
        verdict = podsecurity.evaluate_pod(policy, attrs.obj.get("metadata") or {}, attrs.obj.get("spec") or {},
                                           enforce=True)
        audit.annotate(ENFORCE_POLICY, str(policy.enforce))
        if verdict.audit:
            audit.annotate(AUDIT_VIOLATIONS, verdict.audit)
        if verdict.refusal:
            raise attrs.refused(verdict.refusal)
        for warning in verdict.warnings:
            attrs.warn(warning)

    async def _warn_template(self, attrs: Attributes) -> None:
        # Workload templates are only warned about (and audited): their pods are what is enforced.
        policy = await self._policy(attrs.namespace)
        if policy.warn.level == "privileged" and policy.audit.level == "privileged":
            return
        template = podsecurity.pod_spec_of(attrs.resource.group, attrs.resource.plural, attrs.obj)
        if template is not None:
            verdict = podsecurity.evaluate_pod(policy, *template, enforce=False)
            if verdict.audit:
                audit.annotate(AUDIT_VIOLATIONS, verdict.audit)
            for warning in verdict.warnings:
                attrs.warn(warning)

    async def _validate_namespace(self, attrs: Attributes) -> None:
        name = attrs.obj["metadata"]["name"]
        new, errors = podsecurity.parse_policy(attrs.obj["metadata"].get("labels"))
        if attrs.operation == "CREATE" or attrs.old is None:
            if errors:
                raise invalid("Namespace", "", name, errors)
            return
        old, old_errors = podsecurity.parse_policy(attrs.old["metadata"].get("labels"))
        if errors and (not old_errors or errors != old_errors):
            raise invalid("Namespace", "", name, errors)
        if not podsecurity.enforce_tightened(new, old):
            return
        listed = await self.store.list(f"/registry/core/pods/{name}/")
        pods = [decode_stored(kv) for kv in listed.items]
        for warning in podsecurity.existing_pods_warnings(name, new.enforce, pods):
            attrs.warn(warning)
