"""ServiceAccount: pods get their namespace's ``default`` account, must name one that exists, and
mount its token (the rules: ``machinery/admission/serviceaccount.py``).

The account is looked up in a watch-fed cache, then in the store. A missing ``default`` account is
looked for again for a while, since the service account controller creates it just after the
namespace; any other missing account is looked for once; then the pod is refused. Kubernetes
retries ``default`` ten times 100-200 ms apart (1-2 s); pilothouse allows :data:`DEFAULT_WAIT`
seconds, because its controller manager is a child process that starts after the API server is
healthy, and in a cold-started server the first ``default`` account appears about a second
after the first request can arrive (measured: 1.0 s on a loaded 2-core machine).
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

__all__ = ["DEFAULT_WAIT", "ServiceAccount"]

_PREFIX = "/registry/core/serviceaccounts/"
DEFAULT_WAIT = 5.0


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
        serviceaccount.limit_secret_references(await self._account(attrs.namespace, name), attrs.obj)

    async def _account(self, namespace: str, name: str) -> Object:
        key = f"{_PREFIX}{namespace}/{name}"
        deadline = asyncio.get_running_loop().time() + (DEFAULT_WAIT if name == serviceaccount.DEFAULT else 0)
        while (account := await self.accounts.get(key)) is None:
            if asyncio.get_running_loop().time() >= deadline:
                raise Refusal(f'error looking up service account {namespace}/{name}: '
                              f'serviceaccount "{name}" not found')
            await asyncio.sleep(random.uniform(0.1, 0.2))  # spread, as Kubernetes' retry interval
        return account
