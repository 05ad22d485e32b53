"""API errors are matched by reason and causes, not message text (issue 15): the controllers looked for
"being terminated" in a Status message to recognise a namespace being deleted. client-go's
``HasStatusCause(err, NamespaceTerminatingCause)`` is what they mean; a server free to reword its
messages must not change what the controllers do."""

from __future__ import annotations

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess

NAMESPACES = resource("", "v1", "namespaces")
CONFIGMAPS = resource("", "v1", "configmaps")


async def test_a_terminating_namespace_is_recognised_by_its_cause(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        await client.create(NAMESPACES, {"metadata": {"name": "going", "finalizers": ["example.com/hold"]},
                                         "spec": {"finalizers": ["kubernetes"]}})
        await client.delete(NAMESPACES, "going")
        with pytest.raises(errors.APIError) as refused:
            await client.create(CONFIGMAPS, {"metadata": {"name": "late"}}, "going")
        assert errors.has_cause(refused.value, errors.NAMESPACE_TERMINATING)
        with pytest.raises(errors.NotFoundError) as missing:
            await client.create(CONFIGMAPS, {"metadata": {"name": "late"}}, "never-was")
        assert not errors.has_cause(missing.value, errors.NAMESPACE_TERMINATING)
        assert errors.names(missing.value, "namespaces", "never-was")


def test_the_same_status_reworded_is_still_recognised() -> None:
    status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "espace de noms en suppression",
              "details": {"name": "going", "kind": "namespaces",
                          "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]}}
    error = errors.from_status(403, status)
    assert errors.has_cause(error, errors.NAMESPACE_TERMINATING)
    assert errors.names(error, "namespaces", "going") and not errors.names(error, "pods", "going")
