"""ServiceAccount: pods get their namespace's ``default`` account, must name one that exists, and
mount its token (the rules: ``machinery/admission/serviceaccount.py``).

The account is looked up in a watch-fed cache, then in the store. As Kubernetes does, a missing
``default`` account is looked for again for a second or two (the service account controller
creates it just after the namespace), any other missing account once; then the pod is refused.
"""

from __future__ import annotations

import asyncio
import random

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.machinery import meta
from pilothouse.machinery.admission import Refusal, serviceaccount
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["ServiceAccount"]

_PREFIX = "/registry/core/serviceaccounts/"
_DEFAULT_ATTEMPTS = 10


class ServiceAccount(Plugin):
    name = "ServiceAccount"

    def __init__(self, store: Store) -> None:
        self.accounts = WatchCache(store, _PREFIX)
        self.caches = (self.accounts,)

    @staticmethod
    def _handles(attrs: Attributes) -> bool:
        # Only creates: a pod's service account and volumes cannot change afterwards.
        return attrs.operation == "CREATE" and attrs.is_main("", "pods")

    async def admit(self, attrs: Attributes) -> None:
        if not self._handles(attrs) or serviceaccount.is_mirror(attrs.obj):
            return
        spec = attrs.obj.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            # The v1 conversion keeps the deprecated serviceAccount field in step.
            spec["serviceAccountName"] = spec["serviceAccount"] = serviceaccount.DEFAULT
        account = await self._account(attrs.namespace, spec["serviceAccountName"])
        serviceaccount.admit_pod(attrs.obj, account, meta.generate_name_suffix())

    async def validate(self, attrs: Attributes) -> None:
        if not self._handles(attrs):
            return
        if serviceaccount.is_mirror(attrs.obj):
            serviceaccount.validate_mirror(attrs.obj)
            return
        name = (attrs.obj.get("spec") or {}).get("serviceAccountName")
        if not name:
            raise Refusal(f"no service account specified for pod {attrs.namespace}/{attrs.obj['metadata']['name']}")
        await self._account(attrs.namespace, name)

    async def _account(self, namespace: str, name: str) -> Object:
        key = f"{_PREFIX}{namespace}/{name}"
        attempts = _DEFAULT_ATTEMPTS if name == serviceaccount.DEFAULT else 1
        interval = random.uniform(0.1, 0.2)  # spreads the retries of concurrent creates
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(interval)
            account = await self.accounts.get(key)
            if account is not None:
                return account
        raise Refusal(f'error looking up service account {namespace}/{name}: serviceaccount "{name}" not found')
