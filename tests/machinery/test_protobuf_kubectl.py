"""Golden tests against the real kubectl 1.32: capture the protobuf bodies it sends and decode them.

A tiny loopback HTTP server answers kubectl's discovery (legacy APIResourceLists) and records every
request body. The expectations are derived from what each command means, not from our decoder.
Set ``PILOTHOUSE_WRITE_PB_FIXTURES=1`` to refresh ``protobuf_fixtures/`` from the captured bodies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pilothouse.machinery.protobuf import PROTOBUF_CONTENT_TYPE, decode_kubernetes_protobuf

__all__: list[str] = []

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
FIXTURES = Path(__file__).parent / "protobuf_fixtures"

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists() and not shutil.which("kubectl"),
                                reason="kubectl not installed")


def _resource(name: str, kind: str, namespaced: bool = True, group: str = "", version: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
    if group or version:
        entry.update(group=group, version=version, verbs=["create"])
    return entry


_DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
        for g in ("apps", "batch", "policy", "authorization.k8s.io")]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        _resource("namespaces", "Namespace", False), _resource("configmaps", "ConfigMap"),
        _resource("secrets", "Secret"), _resource("services", "Service"),
        _resource("serviceaccounts", "ServiceAccount"), _resource("pods", "Pod"),
        _resource("resourcequotas", "ResourceQuota"), _resource("nodes", "Node", False),
        _resource("pods/eviction", "Eviction", group="policy", version="v1")]},
    "/api/v1/nodes/n1": {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"}, "spec": {}},
    "/api/v1/pods": {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": "web-1", "namespace": "default", "uid": "u-1",
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                           "uid": "rs-1", "controller": True}]},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
         "status": {"phase": "Running"}}]},
    "/apis/apps/v1": {"kind": "APIResourceList", "groupVersion": "apps/v1",
                      "resources": [_resource("deployments", "Deployment")]},
    "/apis/batch/v1": {"kind": "APIResourceList", "groupVersion": "batch/v1",
                       "resources": [_resource("jobs", "Job"), _resource("cronjobs", "CronJob")]},
    "/apis/policy/v1": {"kind": "APIResourceList", "groupVersion": "policy/v1",
                        "resources": [_resource("poddisruptionbudgets", "PodDisruptionBudget")]},
    "/apis/authorization.k8s.io/v1": {"kind": "APIResourceList", "groupVersion": "authorization.k8s.io/v1",
                                      "resources": [
                                          _resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
                                          _resource("selfsubjectrulesreviews", "SelfSubjectRulesReview", False)]},
}


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, str, bytes]]  # (method, path, content type, body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in _DISCOVERY:
            self._send(200, _DISCOVERY[path])
        else:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": "not found"})

    def _record(self) -> tuple[str, bytes]:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        self.bodies.append((self.command, self.path, content_type, body))
        return content_type, body

    def do_POST(self) -> None:
        content_type, body = self._record()
        obj = decode_kubernetes_protobuf(body) if content_type.startswith(PROTOBUF_CONTENT_TYPE) \
            else json.loads(body)
        if obj.get("kind") == "SelfSubjectAccessReview":
            obj["status"] = {"allowed": True}
        elif obj.get("kind") == "SelfSubjectRulesReview":
            obj["status"] = {"resourceRules": [], "nonResourceRules": [], "incomplete": False}
        self._send(201, obj)

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, _DISCOVERY["/api/v1/nodes/n1"])

    def do_DELETE(self) -> None:
        self._record()
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handler: type[_Recorder] = type("Handler", (_Recorder,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    home = tmp_path_factory.mktemp("home")
    config = home / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u", "namespace": "default"}}],
        "users": [{"name": "u", "user": {}}],
    }))
    binary = KUBECTL if Path(KUBECTL).exists() else str(shutil.which("kubectl"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(config)}

    def run(*args: str, fixture: str = "") -> tuple[str, str, str, bytes]:
        handler.bodies.clear()
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        sent = [b for b in handler.bodies if b[0] in ("POST", "DELETE")]
        assert len(sent) == 1, (handler.bodies, done.stderr)
        if fixture and os.environ.get("PILOTHOUSE_WRITE_PB_FIXTURES"):
            (FIXTURES / f"{fixture}.pb").write_bytes(sent[0][3])
        return sent[0]

    yield run
    server.shutdown()
    server.server_close()


def _decoded(sent: tuple[str, str, str, bytes]) -> dict[str, Any]:
    assert sent[2].startswith(PROTOBUF_CONTENT_TYPE), sent[2]
    return decode_kubernetes_protobuf(sent[3])


def test_create_configmap(kubectl: Any) -> None:
    sent = kubectl("create", "configmap", "x", "--from-literal=a=b", "--from-literal=c=", fixture="configmap_x")
    assert sent[1].startswith("/api/v1/namespaces/default/configmaps")
    assert _decoded(sent) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                              "data": {"a": "b", "c": ""}}


def test_create_secret_generic(kubectl: Any) -> None:
    sent = kubectl("create", "secret", "generic", "s", "--from-literal=user=admin", "--type=Opaque",
                   fixture="secret_generic")
    assert _decoded(sent) == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                              "data": {"user": "YWRtaW4="}, "type": "Opaque"}


def test_create_secret_tls_and_docker_registry(kubectl: Any, tmp_path: Path) -> None:
    sent = kubectl("create", "secret", "docker-registry", "reg", "--docker-server=r.example",
                   "--docker-username=u", "--docker-password=p", fixture="secret_docker_registry")
    obj = _decoded(sent)
    assert obj["type"] == "kubernetes.io/dockerconfigjson"
    import base64
    config = json.loads(base64.b64decode(obj["data"][".dockerconfigjson"]))
    assert config["auths"]["r.example"]["username"] == "u"


def test_create_namespace(kubectl: Any) -> None:
    sent = kubectl("create", "namespace", "team-a", fixture="namespace_team_a")
    assert sent[1].startswith("/api/v1/namespaces?")
    assert _decoded(sent) == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                              "spec": {}, "status": {}}


def test_create_deployment(kubectl: Any) -> None:
    sent = kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80",
                   fixture="deployment_web")
    assert sent[1].startswith("/apis/apps/v1/namespaces/default/deployments")
    obj = _decoded(sent)
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}}
    spec = obj["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"] == {"labels": {"app": "web"}}
    assert spec["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]
    assert spec["strategy"] == {}
    assert "paused" not in spec and "minReadySeconds" not in spec


def test_create_deployment_zero_replicas_survives(kubectl: Any) -> None:
    # replicas is a *int32: zero on the wire means "set to 0", not "absent".
    obj = _decoded(kubectl("create", "deployment", "idle", "--image=nginx", "--replicas=0",
                           fixture="deployment_zero_replicas"))
    assert obj["spec"]["replicas"] == 0


def test_create_service_nodeport(kubectl: Any) -> None:
    sent = kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30080",
                   fixture="service_nodeport")
    obj = _decoded(sent)
    assert obj["kind"] == "Service"
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert obj["spec"]["type"] == "NodePort"
    assert obj["spec"]["selector"] == {"app": "web"}
    assert obj["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                                     "nodePort": 30080}]


def test_create_service_clusterip_none(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "service", "clusterip", "db", "--clusterip=None"))
    assert obj["spec"]["clusterIP"] == "None"
    assert obj["spec"]["type"] == "ClusterIP"
    assert "ports" not in obj["spec"]


def test_create_service_string_target_port(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "service", "clusterip", "api", "--tcp=443:https",
                           fixture="service_clusterip_named_port"))
    assert obj["spec"]["ports"][0]["port"] == 443
    assert obj["spec"]["ports"][0]["targetPort"] == "https"


def test_create_serviceaccount(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "serviceaccount", "robot", fixture="serviceaccount_robot"))
    assert obj == {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}


def test_create_job(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "job", "once", "--image=busybox", "--", "echo", "hi", fixture="job_once"))
    assert obj["apiVersion"] == "batch/v1" and obj["kind"] == "Job"
    assert obj["metadata"]["name"] == "once"
    pod = obj["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"] == [{"name": "once", "image": "busybox", "command": ["echo", "hi"], "resources": {}}]


def test_create_cronjob(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *",
                           fixture="cronjob_tick"))
    assert obj["kind"] == "CronJob"
    assert obj["spec"]["schedule"] == "*/5 * * * *"
    job = obj["spec"]["jobTemplate"]
    assert job["metadata"] == {"name": "tick"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_create_quota(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=10", "--scopes=NotTerminating",
                           fixture="quota_q"))
    assert obj["spec"]["hard"] == {"cpu": "1", "memory": "1Gi", "pods": "10"}
    assert obj["spec"]["scopes"] == ["NotTerminating"]


def test_create_pdb(kubectl: Any) -> None:
    obj = _decoded(kubectl("create", "pdb", "p", "--selector=app=web", "--min-available=50%", fixture="pdb_p"))
    assert obj["apiVersion"] == "policy/v1"
    assert obj["spec"] == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}
    zero = _decoded(kubectl("create", "pdb", "z", "--selector=app=web", "--max-unavailable=0",
                            fixture="pdb_max_unavailable_zero"))
    assert zero["spec"]["maxUnavailable"] == 0  # *IntOrString: a set zero is meaningful


def test_auth_can_i(kubectl: Any) -> None:
    sent = kubectl("auth", "can-i", "list", "deployments.apps", "-n", "prod", fixture="selfsubjectaccessreview")
    assert sent[1].startswith("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    obj = _decoded(sent)
    assert obj["kind"] == "SelfSubjectAccessReview"
    assert obj["spec"] == {"resourceAttributes": {"namespace": "prod", "verb": "list", "group": "apps",
                                                  "resource": "deployments"}}
    nonres = _decoded(kubectl("auth", "can-i", "get", "/healthz", fixture="selfsubjectaccessreview_nonresource"))
    assert nonres["spec"] == {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}


def test_auth_can_i_list(kubectl: Any) -> None:
    obj = _decoded(kubectl("auth", "can-i", "--list", "-n", "dev", fixture="selfsubjectrulesreview"))
    assert obj["kind"] == "SelfSubjectRulesReview"
    assert obj["spec"] == {"namespace": "dev"}


def test_drain_eviction_is_json_not_protobuf(kubectl: Any) -> None:
    # kubectl 1.32 posts the Eviction as JSON; only the DELETE fallback below uses protobuf.
    sent = kubectl("drain", "n1", "--grace-period=7", "--timeout=5s")
    assert sent[1].startswith("/api/v1/namespaces/default/pods/web-1/eviction")
    assert sent[2] == "application/json"
    body = json.loads(sent[3])
    assert body["kind"] == "Eviction" and body["deleteOptions"] == {"gracePeriodSeconds": 7}


def test_drain_delete_fallback_sends_delete_options(kubectl: Any) -> None:
    sent = kubectl("drain", "n1", "--disable-eviction", "--grace-period=0", "--timeout=5s",
                   fixture="delete_options")
    assert sent[0] == "DELETE" and sent[1].startswith("/api/v1/namespaces/default/pods/web-1")
    obj = _decoded(sent)
    assert obj["kind"] == "DeleteOptions"
    assert obj["gracePeriodSeconds"] == 0  # *int64: zero means "now"
