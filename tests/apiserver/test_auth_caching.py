"""What the TLS + RBAC path remembers must not change what it answers (issue 11's benchmark work).

The RBAC authorizer keeps a decision that no ``resourceNames`` rule took part in for every name of
the resource; one that a named rule took part in stays per name. The x509 authenticator remembers
a connection's user for the connection's life. Against a real ``--secure --authorization-mode
Node,RBAC`` server with the official client (keep-alive connections), and the authorizer itself
for how often it decides.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.rbacauthz import RBACAuthorizer
from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.store.sqlite import SQLiteStore
from tests.conftest import ServerProcess, start_server_process, terminate


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("authcache"), secure=True,
                                  extra=("--authorization-mode", "Node,RBAC",
                                         "--disable", "scheduler,controller-manager"))
    try:
        yield server
    finally:
        terminate(server.process)


def _api(server: ServerProcess, user: str | None = None) -> client.ApiClient:
    """The official client as ``user`` (a certificate from ``pilothouse kubeconfig``), else as the
    written admin kubeconfig's ``system:masters`` user."""
    path = server.kubeconfig
    if user is not None:
        text = subprocess.run([sys.executable, "-m", "pilothouse", "kubeconfig", "--data-dir", str(server.data_dir),
                               "--user", user], check=True, capture_output=True, text=True).stdout
        path = server.data_dir / f"{user}.kubeconfig"
        path.write_text(text)
    return config.new_client_from_config(str(path))


def _role(name: str, names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    if names:
        rule["resourceNames"] = names
    return {"metadata": {"name": name}, "rules": [rule]}


def _bind(rbac: client.RbacAuthorizationV1Api, role: str, user: str) -> None:
    rbac.create_namespaced_role_binding("default", {
        "metadata": {"name": role}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def _read(api: client.CoreV1Api, name: str) -> int | str:
    try:
        api.read_namespaced_config_map(name, "default")
    except ApiException as error:
        return f"{error.status}: {yaml.safe_load(error.body)['message']}"
    return 200


def _until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the authorizer's caches never caught up"
        time.sleep(0.1)


def test_a_named_rule_decides_per_name_and_a_new_binding_is_seen(secure: ServerProcess) -> None:
    admin_core, rbac = client.CoreV1Api(_api(secure)), client.RbacAuthorizationV1Api(_api(secure))
    for name in ("allowed", "other"):
        admin_core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    rbac.create_namespaced_role("default", _role("one-map", ["allowed"]))
    _bind(rbac, "one-map", "carol")
    carol = client.CoreV1Api(_api(secure, "carol"))
    _until(lambda: _read(carol, "allowed") == 200)
    denied = ('403: configmaps "other" is forbidden: User "carol" cannot get resource "configmaps" in API group "" '
              'in the namespace "default"')
    # Allowed for one name, then asked for another on the same connection: not the first answer again.
    assert _read(carol, "other") == denied
    assert _read(carol, "allowed") == 200
    assert _read(carol, "other") == denied
    rbac.create_namespaced_role("default", _role("all-maps"))
    _bind(rbac, "all-maps", "carol")
    _until(lambda: _read(carol, "other") == 200)


def test_each_connection_keeps_its_own_user(secure: ServerProcess) -> None:
    reviews = {user: client.AuthenticationV1Api(_api(secure, user)) for user in ("dave", "erin")}
    for _ in range(3):  # each client reuses its keep-alive connection
        for user, api in reviews.items():
            review = api.create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                     "kind": "SelfSubjectReview"})
            assert review.status.user_info.username == user
            assert review.status.user_info.groups == ["system:authenticated"]


def _binding(kind: str, name: str, role_kind: str, role: str, subject: dict[str, str], revision: int,
             namespace: str = "") -> dict[str, Any]:
    metadata = {"name": name, "resourceVersion": str(revision), **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": metadata, "roleRef": {"kind": role_kind, "name": role}, "subjects": [subject]}


def test_decisions_without_named_rules_are_made_once_for_every_name(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, list[bool]]:
        store = SQLiteStore(str(tmp_path / "s.db"), compact_interval=None)
        await store.start()
        authorizer = RBACAuthorizer(store)
        await authorizer.ensure_loaded()  # an empty store: nothing to load
        authorizer.cluster_roles.observe({"metadata": {"name": "reader", "resourceVersion": "1"},
                                          "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        authorizer.roles.observe({"metadata": {"name": "one", "namespace": "team", "resourceVersion": "2"},
                                  "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                                             "resourceNames": ["s1"]}]})
        authorizer.cluster_role_bindings.observe(_binding("ClusterRoleBinding", "readers", "ClusterRole", "reader",
                                                          {"kind": "Group", "name": "devs"}, 3))
        authorizer.role_bindings.observe(_binding("RoleBinding", "one", "Role", "one",
                                                  {"kind": "Group", "name": "devs"}, 4, "team"))
        decided = 0
        decide = authorizer._decide

        def counting(user: UserInfo, info: Any) -> Any:
            nonlocal decided
            decided += 1
            return decide(user, info)

        authorizer._decide = counting  # type: ignore[method-assign]
        user = UserInfo("ann", ("devs", "system:authenticated"))
        pods = [await authorizer.authorize(user, parse_request_info("GET", f"/api/v1/namespaces/team/pods/p{i}"))
                for i in range(50)]
        pods_decided = decided
        secrets = [(await authorizer.authorize(user, parse_request_info(
            "GET", f"/api/v1/namespaces/team/secrets/{name}")))[0] for name in ("s1", "s2", "s1", "s2", "s3")]
        await store.close()
        assert all(allowed for allowed, _ in pods)
        return pods_decided, decided - pods_decided, secrets

    pods_decided, secrets_decided, secrets = asyncio.run(scenario())
    assert pods_decided == 1
    assert secrets == [True, False, True, False, False]
    assert secrets_decided == 3  # s1, s2 and s3 each once: a named rule was looked at
