"""Writes that record who made them: a CertificateSigningRequest's ``spec.username``, ``uid``,
``groups`` and ``extra`` are the requesting user's (``csrStrategy.PrepareForCreate`` reads them from
the request context), whatever the body said."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pilothouse.apiserver.auth import CURRENT_USER
from pilothouse.apiserver.registry import StorageHooks, WriteContext
from pilothouse.machinery.kinds.types import Object

__all__ = ["REQUESTER_HOOKS", "CSRRequester"]


class CSRRequester(StorageHooks):
    async def before_write(self, new: Object, old: Object | None,
                           ctx: WriteContext) -> Callable[[], Awaitable[None]]:
        user = CURRENT_USER.get()
        if old is None and user is not None:
            spec = new.setdefault("spec", {})
            for field in ("username", "uid", "groups", "extra"):
                spec.pop(field, None)
            spec["username"] = user.name
            if user.uid:
                spec["uid"] = user.uid
            spec["groups"] = list(user.groups)
            if user.extra:
                spec["extra"] = {key: list(values) for key, values in user.extra.items()}
        return await super().before_write(new, old, ctx)


REQUESTER_HOOKS = {("certificates.k8s.io", "certificatesigningrequests"): CSRRequester()}
