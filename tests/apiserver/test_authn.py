"""The authentication chain with the real kubectl and the official client: token file users,
anonymous and bad credentials, impersonation, service-account tokens through TokenRequest and
TokenReview, bootstrap tokens."""

from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from pilothouse.apiserver.tokencache import SUCCESS_TTL
from tests.apiserver.authcluster import AuthCluster, auth_cluster, csr_request
from tests.conftest import ServerProcess

ADMIN, ALICE, BOB = "admin-token", "alice-token", "bob-token"
AUDIENCE = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with auth_cluster(tmp_path_factory.mktemp("authn")) as running:
        yield running


def _status(cluster: AuthCluster, path: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(cluster.server.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=cluster.context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _whoami(cluster: AuthCluster, token: str, *args: str) -> dict[str, object]:
    out = cluster.kubectl(token, "auth", "whoami", "-o", "json", *args).stdout
    return json.loads(out)["status"]["userInfo"]  # type: ignore[no-any-return]


def _token_review(cluster: AuthCluster, token: str, audiences: list[str] | None = None) -> client.V1TokenReviewStatus:
    spec: dict[str, object] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    review = client.AuthenticationV1Api(cluster.api(ADMIN)).create_token_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
    return review.status


def test_token_file_users(cluster: AuthCluster) -> None:
    assert _whoami(cluster, ALICE) == {"username": "alice", "uid": "uid-alice",
                                       "groups": ["devs", "qa", "system:authenticated"]}
    assert _whoami(cluster, ADMIN)["groups"] == ["system:masters", "system:authenticated"]


def test_no_credentials_is_anonymous_and_a_bad_token_is_401(cluster: AuthCluster) -> None:
    assert _status(cluster, "/api/v1/namespaces/default/pods", {}) == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the '
                   'namespace "default"',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    unauthorized = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    # A bad token is never taken as anonymous, not even where anonymous may go.
    assert _status(cluster, "/api/v1/namespaces/default/pods", {"Authorization": "Bearer nope"}) == (401, unauthorized)
    assert _status(cluster, "/version", {"Authorization": "Bearer nope"}) == (401, unauthorized)
    result = cluster.kubectl("nope", "get", "pods", check=False)
    assert "error: You must be logged in to the server" in result.stderr


def test_impersonation(cluster: AuthCluster) -> None:
    assert _whoami(cluster, ADMIN, "--as", "bob", "--as-group", "testers") == {
        "username": "bob", "groups": ["testers", "system:authenticated"]}
    assert _whoami(cluster, ADMIN, "--as", "system:serviceaccount:default:robot") == {
        "username": "system:serviceaccount:default:robot",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]}
    status, body = _status(cluster, "/api/v1/namespaces/default/pods",
                           {"Authorization": f"Bearer {ALICE}", "Impersonate-User": "bob"})
    assert (status, body["message"], body["details"]) == (403, (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster '
        'scope'), {"name": "bob", "kind": "users"})
    # kubectl meets it first on discovery, and words it as it does against Kubernetes.
    denied = cluster.kubectl(ALICE, "get", "pods", "--as", "bob", check=False)
    assert denied.stderr.splitlines()[-1] == "Error from server (Forbidden): unknown"
    # A uid and extras too (kubectl --as-uid; Impersonate-Extra-<key>).
    api = cluster.api(ADMIN)
    api.default_headers.update({"Impersonate-User": "dave", "Impersonate-Uid": "uid-dave",
                                "Impersonate-Extra-Scopes": "view"})
    dave = client.AuthenticationV1Api(api).create_self_subject_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).status.user_info
    assert (dave.username, dave.uid, dave.groups, dave.extra) == (
        "dave", "uid-dave", ["system:authenticated"], {"scopes": ["view"]})
    # Granted the impersonate verb on that one user (and group), she may act as them.
    cluster.kubectl(ADMIN, "create", "clusterrole", "impersonate-bob", "--verb=impersonate", "--resource=users,groups",
                    "--resource-name=bob", "--resource-name=devs")
    cluster.kubectl(ADMIN, "create", "clusterrolebinding", "alice-impersonates", "--clusterrole=impersonate-bob",
                    "--user=alice")
    assert _whoami(cluster, ALICE, "--as", "bob")["username"] == "bob"
    assert _whoami(cluster, ALICE, "--as", "bob", "--as-group", "devs")["groups"] == ["devs", "system:authenticated"]
    status, body = _status(cluster, "/api/v1/namespaces/default/pods", {
        "Authorization": f"Bearer {ALICE}", "Impersonate-User": "bob", "Impersonate-Group": "admins"})
    assert (status, body["message"]) == (403, 'groups "admins" is forbidden: User "alice" cannot impersonate '
                                              'resource "groups" in API group "" at the cluster scope')


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _eventually(check: Callable[[], bool], within: float = SUCCESS_TTL + 20) -> float:
    """Seconds until ``check()`` holds. A token that authenticated is cached for SUCCESS_TTL (10 s, as
    kube-apiserver's), so its revocation shows within that; the rest is slack for a loaded machine."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not within {within} s"
        time.sleep(0.5)
    return time.monotonic() - start


def test_service_account_token_lives_as_long_as_its_account(cluster: AuthCluster) -> None:
    cluster.kubectl(ADMIN, "create", "serviceaccount", "robot")
    token = cluster.kubectl(ADMIN, "create", "token", "robot", "--duration", "20m").stdout.strip()
    claims = _claims(token)
    account = json.loads(cluster.kubectl(ADMIN, "get", "sa", "robot", "-o", "json").stdout)
    assert claims["iss"] == AUDIENCE and claims["aud"] == [AUDIENCE]
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["kubernetes.io"] == {"namespace": "default", "serviceaccount": {
        "name": "robot", "uid": account["metadata"]["uid"]}}
    assert claims["exp"] - claims["iat"] == 1200  # type: ignore[operator]
    status = _token_review(cluster, token)
    assert status.authenticated is True and status.audiences == [AUDIENCE]
    assert status.user.username == "system:serviceaccount:default:robot"
    assert status.user.uid == account["metadata"]["uid"]
    assert status.user.groups == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    assert status.user.extra["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]
    assert _whoami(cluster, token)["username"] == "system:serviceaccount:default:robot"
    # Another audience: only a review that asks for it accepts the token.
    other = cluster.kubectl(ADMIN, "create", "token", "robot", "--audience", "vault").stdout.strip()
    elsewhere = _token_review(cluster, other)
    assert elsewhere.authenticated is None
    assert elsewhere.error == f'token audiences ["vault"] is invalid for the target audiences ["{AUDIENCE}"]'
    assert _token_review(cluster, other, ["vault"]).authenticated is True
    cluster.kubectl(ADMIN, "delete", "serviceaccount", "robot")
    _eventually(lambda: _token_review(cluster, token).authenticated is None)
    gone = _token_review(cluster, token)
    assert (gone.authenticated, gone.error) == (None, 'serviceaccounts "robot" not found')
    assert "You must be logged in to the server" in cluster.kubectl(token, "get", "pods", check=False).stderr
    # The same name again is another account: the old token stays dead.
    cluster.kubectl(ADMIN, "create", "serviceaccount", "robot")
    new_uid = cluster.kubectl(ADMIN, "get", "sa", "robot", "-o", "jsonpath={.metadata.uid}").stdout
    assert _token_review(cluster, token).error == (f"service account UID ({new_uid}) does not match claim "
                                                   f"({account['metadata']['uid']})")


def test_token_request_rules(cluster: AuthCluster) -> None:
    short = cluster.kubectl(ADMIN, "create", "token", "default", "--duration", "5m", check=False)
    assert short.stderr.strip() == ('error: failed to create token: TokenRequest.authentication.k8s.io "default" is '
                                    'invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration '
                                    'less than 10 minutes')
    missing = cluster.kubectl(ADMIN, "create", "token", "nobody", check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr
    # Bound to a pod: the token names the pod and dies with it.
    cluster.kubectl(ADMIN, "create", "serviceaccount", "runner")
    cluster.kubectl(ADMIN, "run", "job-pod", "--image=busybox", "--overrides",
                    '{"spec": {"serviceAccountName": "runner"}}')
    token = cluster.kubectl(ADMIN, "create", "token", "runner", "--bound-object-kind", "Pod",
                            "--bound-object-name", "job-pod").stdout.strip()
    pod_uid = cluster.kubectl(ADMIN, "get", "pod", "job-pod", "-o", "jsonpath={.metadata.uid}").stdout
    assert _claims(token)["kubernetes.io"]["pod"] == {"name": "job-pod", "uid": pod_uid}  # type: ignore[index]
    status = _token_review(cluster, token)
    assert status.authenticated is True
    assert status.user.extra["authentication.kubernetes.io/pod-name"] == ["job-pod"]
    wrong = cluster.kubectl(ADMIN, "create", "token", "default", "--bound-object-kind", "Pod",
                            "--bound-object-name", "job-pod", check=False)
    assert ('cannot bind token for serviceaccount "default" to pod running with serviceaccount "runner"'
            in wrong.stderr)
    cluster.kubectl(ADMIN, "delete", "pod", "job-pod", "--grace-period=0", "--force")
    _eventually(lambda: _token_review(cluster, token).authenticated is None)
    assert _token_review(cluster, token).error == "service account token has been invalidated"


def _bootstrap_secret(token_id: str, secret: str, expires: datetime.datetime) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "stringData": {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
                       "auth-extra-groups": "system:bootstrappers:workers",
                       "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}})


def test_bootstrap_token_until_it_expires(cluster: AuthCluster) -> None:
    expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=10)
    cluster.kubectl(ADMIN, "create", "-f", "-", input=_bootstrap_secret("abcdef", "0123456789abcdef", expires))
    assert _whoami(cluster, "abcdef.0123456789abcdef") == {
        "username": "system:bootstrap:abcdef",
        "groups": ["system:bootstrappers", "system:bootstrappers:workers", "system:authenticated"]}
    wrong_secret = cluster.kubectl("abcdef.0123456789abcdee", "auth", "whoami", check=False)
    assert "You must be logged in to the server" in wrong_secret.stderr
    time.sleep(max(0.0, (expires - datetime.datetime.now(datetime.UTC)).total_seconds()) + 0.5)
    # Cached for up to 10 s after its last success, as kube-apiserver's token cache keeps it.
    _eventually(lambda: "You must be logged in to the server" in cluster.kubectl(
        "abcdef.0123456789abcdef", "auth", "whoami", check=False).stderr)


def test_a_csr_records_its_requester(cluster: AuthCluster) -> None:
    cluster.kubectl(ADMIN, "create", "clusterrole", "csr-creator", "--verb=create,get",
                    "--resource=certificatesigningrequests.certificates.k8s.io")
    cluster.kubectl(ADMIN, "create", "clusterrolebinding", "alice-csr", "--clusterrole=csr-creator", "--user=alice")
    created = client.CertificatesV1Api(cluster.api(ALICE)).create_certificate_signing_request({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "alice"},
        "spec": {"request": csr_request("alice"), "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"], "username": "mallory", "groups": ["system:masters"]}})
    assert (created.spec.username, created.spec.uid, created.spec.groups) == (
        "alice", "uid-alice", ["devs", "qa", "system:authenticated"])


def _header(token: str) -> dict[str, object]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def test_signing_keys_persist_and_rotate(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("keys")
    key_file = directory / "data" / "pki" / "sa.key"
    with auth_cluster(directory) as first:
        first.kubectl(ADMIN, "create", "serviceaccount", "robot")
        old = first.kubectl(ADMIN, "create", "token", "robot").stdout.strip()
        assert _header(old)["alg"] == "RS256"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The key made on first start signs and verifies after a restart.
    with auth_cluster(directory) as again:
        assert _whoami(again, old)["username"] == "system:serviceaccount:default:robot"
    # A new ES256 signing key, the old key still trusted through --service-account-key-file.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (directory / "es.pem").write_bytes(ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    rotate = ("--service-account-signing-key-file", str(directory / "es.pem"))
    with auth_cluster(directory, *rotate, "--service-account-key-file", str(key_file)) as rotated:
        new = rotated.kubectl(ADMIN, "create", "token", "robot").stdout.strip()
        assert _header(new)["alg"] == "ES256" and _header(new)["kid"] != _header(old)["kid"]
        assert _whoami(rotated, new)["username"] == _whoami(rotated, old)["username"]
    # Once the old key is dropped, so are its tokens.
    with auth_cluster(directory, *rotate) as dropped:
        assert _token_review(dropped, old).error == "go-jose/go-jose: error in cryptographic primitive"
        assert _token_review(dropped, new).authenticated is True


def test_loopback_default_still_admin_and_may_impersonate(server: ServerProcess) -> None:
    """Without auth flags every caller is system:admin (the suite's model), whatever token it sends,
    and may act as anyone."""
    configuration = client.Configuration()
    configuration.host = server.url
    api = client.ApiClient(configuration, header_name="Authorization", header_value="Bearer whatever")
    me = client.AuthenticationV1Api(api).create_self_subject_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert me.status.user_info.username == "system:admin"
    acting = client.ApiClient(configuration, header_name="Impersonate-User", header_value="jane")
    jane = client.AuthenticationV1Api(acting).create_self_subject_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert (jane.status.user_info.username, jane.status.user_info.groups) == ("jane", ["system:authenticated"])
