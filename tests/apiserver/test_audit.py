"""The audit log (``--audit-log-path``, ``--audit-policy-file``) of a real server, driven by the real
kubectl and the official client: each line an ``audit.k8s.io/v1`` Event, with the fields of its
level as the first matching policy rule says; ``Audit-Id`` headers; authorization decisions,
impersonation, failed authentication; watches' ``ResponseStarted``; PodSecurity's audit annotations;
rotation; and the policy errors that stop the server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from pilothouse.apiserver.audit.backend import RotatingFile
from tests.apiserver.authcluster import AuthCluster, auth_cluster
from tests.conftest import start_server_process

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources: [{group: "", resources: ["events"]}]
- level: None
  userGroups: ["qa"]
- level: RequestResponse
  resources: [{group: "", resources: ["configmaps"]}]
  omitManagedFields: true
- level: Request
  resources: [{group: "", resources: ["pods"]}]
- level: Metadata
  nonResourceURLs: ["/version"]
  omitStages: ["RequestReceived"]
- level: Metadata
  resources: [{group: "", resources: ["secrets"], resourceNames: ["named"]}]
- level: None
  resources: [{group: "", resources: ["secrets"]}]
- level: Metadata
"""

AUDIT_NS = "audited"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    directory = tmp_path_factory.mktemp("audit")
    policy = directory / "policy.yaml"
    policy.write_text(POLICY)
    # 1 MB files, two backups: the rotation test fills several.
    with auth_cluster(directory, "--disable", "scheduler,controller-manager",
                      "--audit-log-path", str(directory / "logs" / "audit.log"), "--audit-policy-file", str(policy),
                      "--audit-log-maxsize", "1", "--audit-log-maxbackup", "2") as running:
        admin = client.CoreV1Api(running.api("admin-token"))
        for namespace in ("default", AUDIT_NS):
            if namespace != "default":
                admin.create_namespace({"metadata": {"name": namespace, "labels": {
                    "pod-security.kubernetes.io/audit": "restricted"}}})
            admin.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
        yield running


def log_dir(cluster: AuthCluster) -> Path:
    return cluster.server.data_dir.parent / "logs"


def events(cluster: AuthCluster) -> list[dict[str, Any]]:
    """Every event written so far, rotated files first (their names sort by time). The writer thread
    works meanwhile: a line it is still writing (a 300 KB event is not one atomic write for a reader)
    is not read yet, and a backup it pruned since the listing is skipped."""
    directory = log_dir(cluster)
    files = [*sorted(p for p in directory.iterdir() if p.name != "audit.log"), directory / "audit.log"]
    found = []
    for path in files:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        complete = text[:text.rfind("\n") + 1]
        found += [json.loads(line) for line in complete.splitlines()]
    return found


def wait_for(cluster: AuthCluster, match: Callable[[dict[str, Any]], bool], count: int = 1,
              timeout: float = 10) -> list[dict[str, Any]]:
    """The events ``match`` picks, once there are ``count`` of them (the writer is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in events(cluster) if match(event)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def of(name: str, resource: str, verb: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (e.get("objectRef", {}).get("name") == name and e["objectRef"]["resource"] == resource
                      and e["verb"] == verb)


def same_request(cluster: AuthCluster, event: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in events(cluster) if e["auditID"] == event["auditID"]]


def test_request_response_level_with_kubectl(cluster: AuthCluster) -> None:
    cluster.server.kubectl("create", "configmap", "cm-audited", "--from-literal=k=v")
    (complete,) = wait_for(cluster, of("cm-audited", "configmaps", "create"))
    received, complete = same_request(cluster, complete)
    assert [received["stage"], complete["stage"]] == ["RequestReceived", "ResponseComplete"]
    # Before the handler read the body: the objectRef does not have the name yet.
    assert "requestObject" not in received and "responseStatus" not in received
    assert received["objectRef"] == {"resource": "configmaps", "namespace": "default", "apiVersion": "v1"}
    assert complete["apiVersion"] == "audit.k8s.io/v1" and complete["kind"] == "Event"
    assert complete["level"] == "RequestResponse"
    assert complete["user"]["username"] == "kubernetes-admin"
    assert "system:masters" in complete["user"]["groups"]
    assert complete["userAgent"].startswith("kubectl/v1.32")
    assert complete["sourceIPs"] == ["127.0.0.1"]
    assert complete["requestURI"].startswith("/api/v1/namespaces/default/configmaps?")
    assert complete["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "cm-audited",
                                     "apiVersion": "v1"}
    assert complete["responseStatus"] == {"metadata": {}, "code": 201}
    assert complete["requestObject"]["data"] == {"k": "v"}
    assert complete["responseObject"]["metadata"]["uid"]
    # omitManagedFields: the stored object has them, the log does not.
    assert "managedFields" not in complete["responseObject"]["metadata"]
    assert complete["annotations"] == {"authorization.k8s.io/decision": "allow",
                                       "authorization.k8s.io/reason": ""}
    assert complete["requestReceivedTimestamp"] <= complete["stageTimestamp"]
    assert complete["stageTimestamp"].endswith("Z") and len(complete["stageTimestamp"]) == 27


def test_request_level_and_audit_id_header(cluster: AuthCluster) -> None:
    core = client.CoreV1Api(cluster.api("admin-token"))
    pod = {"metadata": {"name": "req-level"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    _, code, headers = core.create_namespaced_pod_with_http_info("default", pod)
    assert code == 201
    (event,) = wait_for(cluster, lambda e: e["auditID"] == headers["Audit-Id"] and e["stage"] == "ResponseComplete")
    assert event["level"] == "Request" and event["user"]["username"] == "root"
    assert event["requestObject"]["metadata"]["name"] == "req-level"
    assert "responseObject" not in event
    assert event["objectRef"]["name"] == "req-level"  # named by the body, not the URL


def test_metadata_level_by_resource_name_and_none_suppresses(cluster: AuthCluster) -> None:
    core = client.CoreV1Api(cluster.api("admin-token"))
    for name in ("named", "unnamed"):
        core.create_namespaced_secret("default", {"metadata": {"name": name}, "stringData": {"k": "secret"}})
        core.read_namespaced_secret(name, "default")
    core.create_namespaced_event("default", {"metadata": {"name": "ev"}, "involvedObject": {"name": "x"},
                                             "reason": "R", "message": "m"})
    gets = wait_for(cluster, of("named", "secrets", "get"), 2)
    assert [e["level"] for e in gets] == ["Metadata", "Metadata"]
    assert all("requestObject" not in e and "responseObject" not in e for e in gets)
    # Only the rule naming "named" logs: its create is not a request for that name (the URL names
    # no object), so the None rule for secrets takes the create, and everything about "unnamed".
    assert not [e for e in events(cluster) if e.get("objectRef", {}).get("name") == "unnamed"]
    assert not [e for e in events(cluster) if e.get("objectRef", {}).get("resource") == "events"]
    assert "secret" not in json.dumps(events(cluster)).replace("secrets", "")


def test_user_group_rule_matches_the_authenticated_user(cluster: AuthCluster) -> None:
    cluster.kubectl("alice-token", "get", "configmaps", "--field-selector", "metadata.name=alice-probe",
                    check=False)
    cluster.kubectl("bob-token", "get", "configmaps", "--field-selector", "metadata.name=bob-probe", check=False)
    bob = wait_for(cluster, lambda e: "bob-probe" in e["requestURI"] and e["stage"] == "ResponseComplete")
    assert bob and bob[0]["user"]["username"] == "bob"
    assert bob[0]["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert not [e for e in events(cluster) if "alice-probe" in e["requestURI"]]


def test_rbac_reason_of_an_allowed_request(cluster: AuthCluster) -> None:
    # A Role of its own: the aggregated ClusterRoles (view) need the controller manager, not run here.
    cluster.server.kubectl("create", "role", "cm-reader", "--verb=list", "--resource=configmaps")
    cluster.server.kubectl("create", "rolebinding", "bob-read", "--role=cm-reader", "--user=bob")
    deadline = time.monotonic() + 10  # the binding reaches the authorizer's watch cache
    while cluster.kubectl("bob-token", "get", "configmaps", "--field-selector", "metadata.name=bob-allowed",
                          check=False).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    event = wait_for(cluster, lambda e: "bob-allowed" in e["requestURI"] and e["stage"] == "ResponseComplete"
                     and e["annotations"]["authorization.k8s.io/decision"] == "allow")[0]
    assert event["annotations"] == {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "bob-read/default" of Role "cm-reader" '
                                       'to User "bob"'}


def test_forbidden_and_impersonated(cluster: AuthCluster) -> None:
    refused = cluster.server.kubectl("get", "configmap", "cm-forbidden", "--as", "carol", check=False)
    assert "Forbidden" in refused.stderr
    found = wait_for(cluster, of("cm-forbidden", "configmaps", "get"), 2)
    received, complete = found
    assert received["user"]["username"] == "kubernetes-admin" and "impersonatedUser" not in received
    assert complete["impersonatedUser"] == {"username": "carol", "groups": ["system:authenticated"]}
    assert complete["annotations"]["authorization.k8s.io/decision"] == "forbid"
    status = complete["responseStatus"]
    assert status["code"] == 403 and status["reason"] == "Forbidden" and status["status"] == "Failure"
    assert status["message"].startswith('configmaps "cm-forbidden" is forbidden: User "carol" cannot get')


def test_failed_authentication(cluster: AuthCluster) -> None:
    request = urllib.request.Request(cluster.server.url + "/api/v1/namespaces/default/configmaps/badtoken",
                                     headers={"Authorization": "Bearer not-a-token"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=cluster.context, timeout=10)
    assert refused.value.code == 401
    audit_id = refused.value.headers["Audit-Id"]
    (event,) = wait_for(cluster, lambda e: e["auditID"] == audit_id)
    assert event["stage"] == "ResponseStarted" and event["user"] == {}
    assert event["responseStatus"] == {"metadata": {}, "code": 401,
                                       "message": "Authentication failed, attempted: bearer"}


def test_client_audit_id_and_non_resource_url(cluster: AuthCluster) -> None:
    request = urllib.request.Request(cluster.server.url + "/version",
                                     headers={"Authorization": "Bearer admin-token", "Audit-ID": "my-own-id"})
    with urllib.request.urlopen(request, context=cluster.context, timeout=10) as response:
        assert response.headers["Audit-Id"] == "my-own-id"
    found = wait_for(cluster, lambda e: e["auditID"] == "my-own-id")
    assert [e["stage"] for e in found] == ["ResponseComplete"]  # the rule omits RequestReceived
    assert found[0]["verb"] == "get" and "objectRef" not in found[0] and found[0]["requestURI"] == "/version"


def test_watch_has_response_started(cluster: AuthCluster) -> None:
    core = client.CoreV1Api(cluster.api("admin-token"))
    for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1,
                                  field_selector="metadata.name=watched"):
        pass
    found = wait_for(cluster, lambda e: e["verb"] == "watch" and "watched" in e["requestURI"], 3)
    assert [e["stage"] for e in found] == ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    assert found[1]["responseStatus"] == {"metadata": {}, "code": 200}
    assert len({e["auditID"] for e in found}) == 1


def test_pod_security_audit_annotations(cluster: AuthCluster) -> None:
    core = client.CoreV1Api(cluster.api("admin-token"))
    for namespace in (AUDIT_NS, "default"):
        core.create_namespaced_pod(namespace, {"metadata": {"name": "psa"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
    audited = wait_for(cluster, lambda e: of("psa", "pods", "create")(e) and e["stage"] == "ResponseComplete"
                       and e["objectRef"]["namespace"] == AUDIT_NS)
    annotations = audited[0]["annotations"]
    assert annotations["pod-security.kubernetes.io/enforce-policy"] == "privileged:latest"
    assert annotations["pod-security.kubernetes.io/audit-violations"] == (
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set '
        'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set '
        'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set '
        'securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    plain = wait_for(cluster, lambda e: of("psa", "pods", "create")(e) and e["stage"] == "ResponseComplete"
                     and e["objectRef"]["namespace"] == "default")
    assert plain[0]["annotations"]["pod-security.kubernetes.io/enforce-policy"] == "privileged:latest"
    assert "pod-security.kubernetes.io/audit-violations" not in plain[0]["annotations"]


def test_rotation_keeps_max_backups(cluster: AuthCluster) -> None:
    core = client.CoreV1Api(cluster.api("admin-token"))
    # RequestResponse: each create logs its 300 KB body twice (request and response).
    for i in range(8):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"big-{i}"}, "data": {"k": "x" * 300_000}})
    wait_for(cluster, of("big-7", "configmaps", "create"), 2)
    backups = sorted(p.name for p in log_dir(cluster).iterdir() if p.name != "audit.log")
    assert len(backups) == 2, backups  # --audit-log-maxbackup 2
    assert all(name.startswith("audit-") and name.endswith(".log") for name in backups)
    assert all(p.stat().st_size <= 1024 * 1024 for p in log_dir(cluster).iterdir())


def _start(tmp_path: Path, policy: str, *flags: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return subprocess.run([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(tmp_path / "d"),
                           "--port", "1", "--audit-log-path", str(tmp_path / "a.log"), "--audit-policy-file",
                           str(path), *flags], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("policy", "message"), [
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", "loaded illegal policy with 0 rules"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Everything}]\n",
     'rules[0].level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", '
     '"RequestResponse"'),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata, nonResourceURLs: ['/a*b']}]\n",
     "rules[0].nonResourceURLs[0]: Invalid value: \"/a*b\": non-resource URL wildcards '*' must be the final "
     "character of the rule"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata, omitStages: [Sometimes]}]\n",
     'rules[0].omitStages[0]: Invalid value: "Sometimes": allowed stages are '
     'RequestReceived,ResponseStarted,ResponseComplete,Panic'),
])
def test_bad_policy_stops_the_server(tmp_path: Path, policy: str, message: str) -> None:
    result = _start(tmp_path, policy)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_bad_mode_stops_the_server(tmp_path: Path) -> None:
    result = _start(tmp_path, POLICY, "--audit-log-mode", "eventually")
    assert result.returncode != 0
    assert 'invalid audit log mode eventually, allowed modes are "blocking,blocking-strict,batch"' in result.stderr


def test_legacy_format_on_standard_output(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
                      "  omitStages: [RequestReceived]\n")
    server = start_server_process(tmp_path / "data", extra=(
        "--disable", "scheduler,controller-manager", "--audit-log-path", "-", "--audit-policy-file", str(policy),
        "--audit-log-format", "legacy", "--audit-log-mode", "batch"))
    try:
        missing = server.kubectl("get", "configmap", "legacy-probe", check=False)
        assert "NotFound" in missing.stderr
    finally:
        server.stop()  # at once: a server stopping writes what it has queued
    log = server.data_dir / "server.log"
    (line,) = [line for line in log.read_text().splitlines() if "legacy-probe" in line]
    stamp, _, rest = line.partition(" AUDIT: ")
    assert stamp.endswith("Z") and stamp[:4].isdigit()
    assert rest.startswith('id="') and ' stage="ResponseComplete" ip="127.0.0.1" method="get" ' in rest
    assert ' user="system:admin" groups="\\"system:masters\\",\\"system:authenticated\\"" as="<self>" ' \
        'asgroups="<lookup>" user-agent="kubectl/v1.32' in rest
    assert rest.endswith(' namespace="default" uri="/api/v1/namespaces/default/configmaps/legacy-probe" '
                         'response="404"')


def test_compressed_backups(tmp_path: Path) -> None:
    """``--audit-log-compress``: lumberjack's ``<backup>.gz``; with ``--audit-log-maxbackup 1`` only the
    newest backup stays, and it holds whole lines."""
    log = RotatingFile(tmp_path / "audit.log", 1, 1, 0, compress=True)
    line = b'{"kind":"Event","pad":"' + b"x" * 300_000 + b'"}\n'
    for _ in range(5):
        log.write_lines([line, line])  # 300 KB lines, 1 MB files: three lines a file, split inside batches
    log.close()
    (backup,) = log.backups()  # of the three full files, the two older ones were removed
    assert backup.name.startswith("audit-") and backup.name.endswith(".log.gz")
    assert gzip.decompress(backup.read_bytes()) == line * 3
    assert (tmp_path / "audit.log").read_bytes() == line  # the tenth line
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600
