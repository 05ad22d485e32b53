"""The RBAC authorizer (``plugin/pkg/auth/authorizer/rbac``), over watch-fed caches.

Roles, ClusterRoles and their bindings are held in memory by four list-then-watch caches (the
admission plugins' :class:`WatchCache`), so a request costs no store read, as kube-apiserver's
authorizer reads informers. Decisions are cached per user and request attributes and the whole
cache is dropped whenever any RBAC object changes, so ``bench/api.py`` with RBAC on pays one dict
lookup per request once warm.

Matching is ``rbac/validation``'s: ``RuleAllows`` for a request, ``appliesTo`` for a binding's
subjects, ``system:masters`` allowed everything first (kube-apiserver puts a privileged-groups
authorizer before RBAC). A binding whose role is missing adds ``RBAC: role... not found`` to the
reason of a denial, as Kubernetes does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.apiserver.auth import SYSTEM_MASTERS, Authorizer, UserInfo, aggregate
from pilothouse.apiserver.rbacescalation import EscalationHooks
from pilothouse.apiserver.requestinfo import RequestInfo, object_name
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["CachedAuthorizer", "NotifyingCache", "RBACAuthorizer", "rule_allows_request"]

Rule = dict[str, Any]

_PREFIX = "/registry/rbac.authorization.k8s.io/"
#: Beyond this many cached decisions the cache starts over (a bound on memory, not a policy).
_MAX_DECISIONS = 50_000


class NotifyingCache(WatchCache):
    """A :class:`WatchCache` that tells its authorizer when anything in it changes."""

    def __init__(self, store: Store, prefix: str, changed: Any) -> None:
        super().__init__(store, prefix)
        self._changed = changed

    def _record(self, key: str, revision: int, obj: Object | None) -> None:
        super()._record(key, revision, obj)
        self._changed()

    def cached(self, namespace: str, name: str) -> Object | None:
        return self._buckets.get(namespace, {}).get(f"{self.prefix}{namespace}/{name}" if namespace
                                                      else f"{self.prefix}{name}")

    def bucket(self, namespace: str) -> Iterator[Object]:
        return iter(self._buckets.get(namespace, {}).values())

    def forget(self, obj: Object) -> None:
        """An object this server just deleted (``obj`` carries the delete's resourceVersion)."""
        metadata = obj["metadata"]
        namespace = metadata.get("namespace")
        key = f"{self.prefix}{namespace}/{metadata['name']}" if namespace else f"{self.prefix}{metadata['name']}"
        self._record(key, int(metadata["resourceVersion"]), None)

    async def ensure_loaded(self) -> None:
        """Before the first list has landed, load what the store holds (read once, not per request)."""
        if not self._synced:
            listed = await self.list()
            if not self._synced:  # the follower's own list landed meanwhile: it is newer
                for obj in listed:
                    self.observe(obj)


def _matches(items: list[str], wanted: str) -> bool:
    return "*" in items or wanted in items


def _resource_matches(rule: Rule, info: RequestInfo) -> bool:
    combined = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    for resource in rule.get("resources") or ():
        if resource in ("*", combined):
            return True
        if info.subresource and resource == f"*/{info.subresource}":
            return True
    return False


def _url_matches(rule: Rule, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path) or (url.endswith("*") and path.startswith(url.rstrip("*"))):
            return True
    return False


def rule_allows_request(rule: Rule, info: RequestInfo) -> bool:
    """``RuleAllows``: one PolicyRule against one request's attributes."""
    if not _matches(rule.get("verbs") or [], info.verb):
        return False
    if not info.is_resource_request:
        return _url_matches(rule, info.path)
    names = rule.get("resourceNames") or []
    return (_matches(rule.get("apiGroups") or [], info.group) and _resource_matches(rule, info)
            and (not names or info.name in names))


def _applies_to(user: UserInfo, subject: dict[str, Any], namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(user.name == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == f"system:serviceaccount:{sa_namespace}:{name}"
    return False


class CachedAuthorizer:
    """An authorizer deciding from watch-fed caches (``_caches``), which the server starts and closes."""

    _caches: tuple[NotifyingCache, ...] = ()

    def start(self) -> None:
        for cache in self._caches:
            cache.start()

    async def close(self) -> None:
        for cache in self._caches:
            await cache.close()


class RBACAuthorizer(CachedAuthorizer):
    def __init__(self, store: Store) -> None:
        self._decisions: dict[tuple[Any, ...], tuple[bool, str]] = {}
        self._any_name: dict[tuple[Any, ...], tuple[bool, str]] = {}
        changed = self._forget
        self.roles = NotifyingCache(store, _PREFIX + "roles/", changed)
        self.cluster_roles = NotifyingCache(store, _PREFIX + "clusterroles/", changed)
        self.role_bindings = NotifyingCache(store, _PREFIX + "rolebindings/", changed)
        self.cluster_role_bindings = NotifyingCache(store, _PREFIX + "clusterrolebindings/", changed)
        self._caches = (self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings)
        #: The server's whole authorizer (``escalate`` and ``bind`` are asked of it, not of RBAC alone).
        self.chain: Authorizer = self

    def cache_for(self, plural: str) -> NotifyingCache:
        return {"roles": self.roles, "clusterroles": self.cluster_roles, "rolebindings": self.role_bindings,
                "clusterrolebindings": self.cluster_role_bindings}[plural]

    def storage_hooks(self) -> dict[tuple[str, str], Any]:
        """Escalation checks on writes of the four kinds (and this server's writes seen at once)."""
        return {("rbac.authorization.k8s.io", plural): EscalationHooks(self, plural)
                for plural in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")}

    async def ensure_loaded(self) -> None:
        for cache in self._caches:
            await cache.ensure_loaded()

    # ---------------------------------------------------------------- rules

    def role_rules(self, ref: dict[str, Any], namespace: str) -> tuple[list[Rule], str]:
        """``GetRoleReferenceRules``: (rules, error text)."""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.cluster_roles.cached("", name)
            if role is None:
                return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        elif kind == "Role":
            role = self.roles.cached(namespace, name)
            if role is None:
                return [], f'role.rbac.authorization.k8s.io "{name}" not found'
        else:
            return [], f"unsupported role reference kind: {kind!r}"
        return list(role.get("rules") or []), ""

    def visit_rules(self, user: UserInfo, namespace: str) -> Iterator[tuple[Rule | None, str]]:
        """``VisitRulesFor``: every (rule, source) the user holds in ``namespace`` (cluster-wide
        ones first), the source described as Kubernetes' describers do; (None, error) for a
        binding whose role is missing."""
        sources = [("ClusterRoleBinding", "", b) for b in self.cluster_role_bindings.bucket("")]
        if namespace:
            sources += [("RoleBinding", namespace, b) for b in self.role_bindings.bucket(namespace)]
        for kind, binding_namespace, binding in sources:
            subject = next((s for s in binding.get("subjects") or () if _applies_to(user, s, binding_namespace)),
                           None)
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules, error = self.role_rules(ref, binding_namespace)
            if error:
                yield None, error
                continue
            name = binding["metadata"]["name"] + (f"/{binding_namespace}" if binding_namespace else "")
            who = subject.get("name", "")
            if subject.get("kind") == "ServiceAccount":
                who += "/" + (subject.get("namespace") or binding_namespace)
            source = f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {subject.get("kind")} "{who}"'
            for rule in rules:
                yield rule, source

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        """``RulesFor``: (rules, errors), what SelfSubjectRulesReview lists. (system:masters gets
        its rules from the bootstrap cluster-admin binding, as in Kubernetes, whose privileged-group
        authorizer resolves no rules of its own.)"""
        rules, errors = [], []
        for rule, said in self.visit_rules(user, namespace):
            if rule is not None:
                rules.append(rule)
            else:
                errors.append(said)
        return rules, errors

    # ------------------------------------------------------------ authorize

    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        if SYSTEM_MASTERS in user.groups:
            return True, ""
        name = object_name(info)
        if name != info.name:  # a list or watch of one object by metadata.name: resourceNames apply
            info = dataclasses.replace(info, name=name)
        # A decision that no rule with resourceNames took part in holds for every name: kept under
        # the key without one, so that GETs of a thousand objects decide once, not a thousand times.
        any_name = (user.key(), info.is_resource_request, info.verb, info.group, info.resource, info.subresource,
                    info.namespace, "" if info.is_resource_request else info.path)
        decided = self._any_name.get(any_name)
        if decided is not None:
            return decided
        key = (*any_name, info.name)
        decided = self._decisions.get(key)
        if decided is not None:
            return decided
        await self.ensure_loaded()
        decision, by_name = self._decide(user, info)
        if len(self._decisions) + len(self._any_name) >= _MAX_DECISIONS:
            self._forget()
        if by_name:
            self._decisions[key] = decision
        else:
            self._any_name[any_name] = decision
        return decision

    def _forget(self) -> None:
        self._decisions.clear()
        self._any_name.clear()

    def _decide(self, user: UserInfo, info: RequestInfo) -> tuple[tuple[bool, str], bool]:
        """(allowed, reason), and whether a rule naming resources (``resourceNames``) was among
        those looked at, which another name could have decided otherwise."""
        errors = []
        by_name = False
        for rule, said in self.visit_rules(user, info.namespace or ""):
            if rule is None:
                errors.append(said)
                continue
            by_name = by_name or bool(rule.get("resourceNames"))
            if rule_allows_request(rule, info):
                return (True, f"RBAC: allowed by {said}"), by_name
        if not errors:
            return (False, ""), by_name
        return (False, "RBAC: " + aggregate(errors)), by_name
