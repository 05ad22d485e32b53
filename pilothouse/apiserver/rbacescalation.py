"""Privilege-escalation checks on RBAC writes (``pkg/registry/rbac/*/policybased``).

A user may write a Role or ClusterRole only with rules they already hold (or the ``escalate``
verb on it), and a binding only to a role whose rules they hold (or the ``bind`` verb on it);
``system:masters`` may do anything, and so may the server's own writes (no user). The refusal is
``NewForbidden`` over ``ConfirmNoEscalation``'s text, the missing rules compacted as Kubernetes
compacts them. These run as the kinds' storage hooks, which also put the server's own RBAC writes
into the authorizer's caches before their watch events arrive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pilothouse.apiserver.auth import CURRENT_USER, SYSTEM_MASTERS, UserInfo, go_quoted
from pilothouse.apiserver.registry import StorageHooks, WriteContext
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import StatusError, forbidden
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.rbac.covers import covers

if TYPE_CHECKING:
    from pilothouse.apiserver.rbacauthz import RBACAuthorizer

__all__ = ["EscalationHooks", "compact_string", "escalation_message"]

GROUP = "rbac.authorization.k8s.io"
_FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                   {"verbs": ["*"], "nonResourceURLs": ["*"]}]


def compact_string(rule: dict[str, Any]) -> str:
    """``rbacv1helpers.CompactString``."""
    parts = [f"{label}:{go_quoted(rule[field])}" for label, field in (
        ("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
        ("ResourceNames", "resourceNames"), ("Verbs", "verbs")) if rule.get(field)]
    return "{" + ", ".join(parts) + "}"


def _compact(atoms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``CompactRules``: atoms of one group and resource, with nothing else, merged across verbs."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for atom in atoms:
        if atom.get("resourceNames") or atom.get("nonResourceURLs"):
            out.append(atom)
            continue
        key = (atom["apiGroups"][0], atom["resources"][0])
        if key in merged:
            merged[key]["verbs"].extend(v for v in atom["verbs"] if v not in merged[key]["verbs"])
        else:
            merged[key] = {"verbs": list(atom["verbs"]), "apiGroups": [key[0]], "resources": [key[1]]}
            out.append(merged[key])
    return out


def escalation_message(user: UserInfo, missing: list[dict[str, Any]], errors: list[str]) -> str:
    """``ConfirmNoEscalation``'s text."""
    described = sorted({compact_string(rule) for rule in _compact(missing)})
    message = (f'user "{user.name}" (groups={go_quoted(list(user.groups))}) is attempting to grant RBAC '
               "permissions not currently held:\n" + "\n".join(described))
    if errors:
        message += f"; resolution errors: [{', '.join(errors)}]"  # %v of a []error
    return message


class EscalationHooks(StorageHooks):
    def __init__(self, rbac: RBACAuthorizer, plural: str) -> None:
        self.rbac = rbac
        self.plural = plural

    async def _allowed_by(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        info = RequestInfo(True, "", verb, GROUP, "*", namespace or None, resource, name)
        allowed, _ = await self.rbac.chain.authorize(user, info)
        return allowed

    def _confirm_no_escalation(self, user: UserInfo, namespace: str, rules: list[dict[str, Any]],
                               name: str) -> None:
        owned, errors = self.rbac.rules_for(user, namespace)
        ok, missing = covers(owned, rules)
        if not ok:
            raise forbidden(self.plural, GROUP, name, escalation_message(user, missing, errors))

    async def before_write(self, new: Object, old: Object | None,
                           ctx: WriteContext) -> Callable[[], Awaitable[None]]:
        user = CURRENT_USER.get()
        undo = await super().before_write(new, old, ctx)
        if user is None or SYSTEM_MASTERS in user.groups:
            return undo
        metadata = new["metadata"]
        name, namespace = metadata.get("name", ""), metadata.get("namespace", "") or ""
        await self.rbac.ensure_loaded()
        if self.plural in ("roles", "clusterroles"):
            if old is not None and (old.get("rules"), old.get("aggregationRule")) == (
                    new.get("rules"), new.get("aggregationRule")):
                return undo  # only metadata changes: nothing granted
            if await self._allowed_by(user, "escalate", self.plural, namespace, name):
                return undo
            if new.get("aggregationRule") and not covers(self.rbac.rules_for(user, "")[0], _FULL_AUTHORITY)[0]:
                raise forbidden(self.plural, GROUP, name, "must have cluster-admin privileges to use an "
                                "aggregationRule")
            self._confirm_no_escalation(user, namespace, list(new.get("rules") or []), name)
            return undo
        ref = new.get("roleRef") or {}
        if old is not None and old.get("subjects") == new.get("subjects"):
            return undo
        ref_resource = {"ClusterRole": "clusterroles", "Role": "roles"}.get(ref.get("kind", ""), "")
        if await self._allowed_by(user, "bind", ref_resource, namespace, ref.get("name", "")):
            return undo
        rules, error = self.rbac.role_rules(ref, namespace)
        if error:
            raise StatusError(404, "NotFound", error, {"name": ref.get("name", ""), "group": GROUP,
                                                       "kind": ref.get("kind", "").lower()})
        self._confirm_no_escalation(user, namespace, rules, name)
        return undo

    async def after_write(self, obj: Object) -> None:
        self.rbac.cache_for(self.plural).observe(obj)

    async def after_delete(self, obj: Object) -> None:
        self.rbac.cache_for(self.plural).forget(obj)
