"""Issue 11's TLS benchmark and what it relies on.

- The insecure port (``--insecure-port``) applies the request limits as the secure port does
  (kube-apiserver's ``BuildInsecureHandlerChain`` has the timeout and max-in-flight filters), so
  that a request costs the same on both listeners but for TLS and authentication:
  ``bench/tls_same_process.py`` compares the two and, without it, counted the limits' middleware
  as a TLS cost.
- ``bench/cload.py`` (h2load, the C load generator of ``bench/api.py --client h2load``) over
  HTTPS with a ``--token-auth-file`` bearer token and Node,RBAC: every request answered, with a
  figure; a token nobody knows makes the level fail instead of giving a figure for 401s.
- The per-request authentication of a known user builds nothing new.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from bench.cload import h2load_level
from pilothouse.apiserver.auth import ALL_AUTHENTICATED, UserInfo, with_authenticated_group
from tests.conftest import ServerProcess, free_port, start_server_process

TOKEN = "tls-bench-token-0123456789"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    """A secure server (Node,RBAC) with a token user who may read pods, and an insecure port."""
    data_dir = tmp_path_factory.mktemp("tlsbench")
    tokens = data_dir / "tokens.csv"
    tokens.write_text(f'{TOKEN},bench,bench-uid,"bench:viewers"\n')
    port = free_port()
    server = start_server_process(data_dir / "data", secure=True,
                                  extra=("--disable", "scheduler,controller-manager", "--token-auth-file",
                                         str(tokens), "--insecure-port", str(port),
                                         "--insecure-bind-address", "127.0.0.1"))
    # A role of its own: ``view`` is aggregated by the controller manager, which does not run here.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bench-viewers"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "bench:viewers"}]}
    for plural, body in (("clusterroles", role), ("clusterrolebindings", binding)):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/apis/rbac.authorization.k8s.io/v1/{plural}",
                                         json.dumps(body).encode(), {"Content-Type": "application/json"},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
    yield server, port
    server.stop()


def _status(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10,
                                    context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_insecure_port_applies_the_request_timeout(served: tuple[ServerProcess, int]) -> None:
    server, port = served
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    # An unparsable ?timeout= is refused by the timeout filter, on either listener alike.
    secure_code, secure_body = _status(f"{server.url}{PODS}?timeout=soon", context, TOKEN)
    plain_code, plain_body = _status(f"http://127.0.0.1:{port}{PODS}?timeout=soon")
    assert secure_code == plain_code == 400, (secure_body["message"], plain_body["message"])
    assert plain_body["message"] == secure_body["message"]
    assert "invalid timeout specified in the request URL" in str(plain_body["message"])
    # A valid one is served.
    assert _status(f"http://127.0.0.1:{port}{PODS}?timeout=30s")[0] == 200


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_h2load_over_tls_with_token_and_rbac(served: tuple[ServerProcess, int]) -> None:
    server, _ = served
    pid = server.process.pid
    result = h2load_level(server.url, pid, 2, 1.0, [PODS], token=TOKEN)
    assert result.requests > 0 and result.rate > 0
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.server_us > 0
    # Forbidden (a reader cannot create) and unauthenticated requests fail the level, not count in it.
    with pytest.raises(RuntimeError, match="failed statuses"):
        h2load_level(server.url, pid, 2, 1.0, [PODS], token=TOKEN, body={"metadata": {"generateName": "x-"}})
    with pytest.raises(RuntimeError, match="failed statuses"):
        h2load_level(server.url, pid, 2, 1.0, [PODS], token="nobody-has-this-token")


def test_a_user_is_made_authenticated_and_keyed_once() -> None:
    """The per-request part of authentication for a token file user (or x509's per-connection
    user): the same object each time, so its system:authenticated copy and RBAC cache key are
    made once, not per request."""
    user = UserInfo("bench", ("bench:viewers",), {"scope": ("a", "b")}, "bench-uid")
    first = with_authenticated_group(user)
    assert first is with_authenticated_group(user)
    assert first == UserInfo("bench", ("bench:viewers", ALL_AUTHENTICATED), {"scope": ("a", "b")}, "bench-uid")
    assert first.key() is first.key()
    assert first.key() == ("bench", ("bench:viewers", ALL_AUTHENTICATED), (("scope", ("a", "b")),), "bench-uid")
    # Already authenticated, or anonymous: returned as it is.
    assert with_authenticated_group(first) is first
    anonymous = UserInfo("system:anonymous", ("system:unauthenticated",))
    assert with_authenticated_group(anonymous) is anonymous
