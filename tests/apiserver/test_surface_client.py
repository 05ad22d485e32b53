"""The surface kinds through the official ``kubernetes`` client: one HPA served as autoscaling/v1 and
v2, the core ``bindings`` resource, a CSR's approval, a claim's immutable spec, the review APIs and
componentstatuses, and the verbs a resource does not have."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config

from tests.conftest import ServerProcess


def api_client(server: ServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


def test_one_hpa_served_as_v1_and_v2(server: ServerProcess) -> None:
    api = api_client(server)
    v1, v2 = client.AutoscalingV1Api(api), client.AutoscalingV2Api(api)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    v1.create_namespaced_horizontal_pod_autoscaler("default", {
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "from-v1"},
        "spec": {"scaleTargetRef": target, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}})
    as_v2 = v2.read_namespaced_horizontal_pod_autoscaler("from-v1", "default")
    assert as_v2.api_version == "autoscaling/v2"
    assert as_v2.spec.metrics[0].resource.name == "cpu"
    assert as_v2.spec.metrics[0].resource.target.average_utilization == 70

    v2.create_namespaced_horizontal_pod_autoscaler("default", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "from-v2"},
        "spec": {"scaleTargetRef": target, "maxReplicas": 5, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                         "averageUtilization": 60}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue",
                                                                             "averageValue": "10"}}}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 45}}}})
    as_v1 = v1.read_namespaced_horizontal_pod_autoscaler("from-v2", "default")
    assert as_v1.api_version == "autoscaling/v1"
    assert as_v1.spec.target_cpu_utilization_percentage == 60
    # What v1 cannot say rides in annotations, so a write through v1 loses nothing.
    assert json.loads(as_v1.metadata.annotations["autoscaling.alpha.kubernetes.io/metrics"])[0]["type"] == "Pods"
    v1.patch_namespaced_horizontal_pod_autoscaler("from-v2", "default", {"spec": {"maxReplicas": 8}})
    back = v2.read_namespaced_horizontal_pod_autoscaler("from-v2", "default")
    assert back.spec.max_replicas == 8
    assert [m.type for m in back.spec.metrics] == ["Resource", "Pods"]
    assert back.spec.behavior.scale_down.stabilization_window_seconds == 45
    assert not (back.metadata.annotations or {})
    listed = v1.list_namespaced_horizontal_pod_autoscaler("default").items
    assert {(h.metadata.name, h.api_version or "autoscaling/v1") for h in listed} >= {
        ("from-v1", "autoscaling/v1"), ("from-v2", "autoscaling/v1")}
    # A watch through v1 sees a v2 write as v1.
    since = v1.list_namespaced_horizontal_pod_autoscaler("default").metadata.resource_version
    v2.patch_namespaced_horizontal_pod_autoscaler("from-v2", "default", {"spec": {"minReplicas": 2}})
    stream = urllib3.PoolManager().request(
        "GET", f"{server.url}/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
        fields={"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"})
    events = [json.loads(line) for line in stream.data.splitlines() if line.strip()]
    # (The HPA controller writes status too: every event is v1, and the patch is among them.)
    assert {e["object"]["apiVersion"] for e in events} == {"autoscaling/v1"}
    assert ("MODIFIED", "from-v2", 2) in [(e["type"], e["object"]["metadata"]["name"],
                                           e["object"]["spec"]["minReplicas"]) for e in events]
    v2.delete_namespaced_horizontal_pod_autoscaler("from-v1", "default")
    with pytest.raises(client.ApiException) as gone:
        v1.read_namespaced_horizontal_pod_autoscaler("from-v1", "default")
    assert gone.value.status == 404


def test_core_bindings_assign_a_pod(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "to-bind"},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    # The client cannot decode the Status a Binding create returns (a known client bug): read it raw.
    response = core.create_namespaced_binding("default", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "to-bind"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-7"}}, _preload_content=False)
    assert response.status == 201
    assert core.read_namespaced_pod("to-bind", "default").spec.node_name == "node-7"
    with pytest.raises(client.ApiException) as again:
        core.create_namespaced_binding("default", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "to-bind"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-8"}}, _preload_content=False)
    assert again.value.status == 409
    assert json.loads(again.value.body)["message"].endswith('pod to-bind is already assigned to node "node-7"')


def _csr_pem(tmp_path: Path) -> str:
    key, csr = tmp_path / "key.pem", tmp_path / "csr.pem"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=jane/O=dev"],
                   check=True, capture_output=True)
    return base64.b64encode(csr.read_bytes()).decode()


def test_csr_approval_and_immutable_spec(server: ServerProcess, tmp_path: Path) -> None:
    certificates = client.CertificatesV1Api(api_client(server))
    request = _csr_pem(tmp_path)
    created = certificates.create_certificate_signing_request({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "jane"},
        "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"], "username": "mallory"}})
    # The requester is the caller, whatever the body claims.
    assert created.spec.username == "system:admin"
    assert created.status is None or created.status.conditions is None
    assert "Pending" in server.kubectl("get", "csr", "jane").stdout
    server.kubectl("certificate", "approve", "jane")
    approved = certificates.read_certificate_signing_request("jane")
    assert [(c.type, c.status) for c in approved.status.conditions] == [("Approved", "True")]
    assert "Approved" in server.kubectl("get", "csr", "jane").stdout
    # An update of the main resource keeps spec and status; /status cannot drop the approval.
    certificates.patch_certificate_signing_request("jane", {"spec": {"usages": ["server auth"]}})
    certificates.patch_certificate_signing_request_status("jane", {"status": {"conditions": None}})
    again = certificates.read_certificate_signing_request("jane")
    assert again.spec.usages == ["client auth"]
    assert [c.type for c in again.status.conditions] == ["Approved"]
    assert "already Approved" in server.kubectl("certificate", "deny", "jane", check=False).stderr
    with pytest.raises(client.ApiException) as both:
        certificates.patch_certificate_signing_request_approval("jane", {"status": {"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}})
    assert both.value.status == 422
    assert "Approved and Denied conditions are mutually exclusive" in both.value.body


def test_claim_spec_is_immutable_but_requests(server: ServerProcess) -> None:
    core = client.CoreV1Api(api_client(server))
    core.create_namespaced_persistent_volume_claim("default", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    claim = core.read_namespaced_persistent_volume_claim("data", "default")
    assert claim.status.phase == "Pending" and claim.spec.volume_mode == "Filesystem"
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_persistent_volume_claim("data", "default", {"spec": {"accessModes": ["ReadWriteMany"]}})
    assert refused.value.status == 422
    assert "spec: Forbidden: spec is immutable after creation except resources.requests" in refused.value.body
    # An unbound claim may be given its volume.
    core.patch_namespaced_persistent_volume_claim("data", "default", {"spec": {"volumeName": "pv-9"}})
    assert core.read_namespaced_persistent_volume_claim("data", "default").spec.volume_name == "pv-9"


def test_reviews_and_componentstatuses_through_the_client(server: ServerProcess) -> None:
    api = api_client(server)
    review = client.AuthorizationV1Api(api).create_self_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}})
    assert review.status.allowed is True
    assert review.status.reason == "pilothouse: no authorization yet"
    local = client.AuthorizationV1Api(api).create_namespaced_local_subject_access_review("team", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"user": "jane", "resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}})
    assert local.status.allowed is True and local.metadata.namespace == "team"
    me = client.AuthenticationV1Api(api).create_self_subject_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert me.status.user_info.username == "system:admin"
    token = client.AuthenticationV1Api(api).create_token_review({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "abc"}})
    # TokenReview asks the server's token authenticators, in the loopback model too.
    # (a token no authenticator recognises: not authenticated, and no error, as Kubernetes answers)
    assert token.status.authenticated is None and token.status.error is None
    statuses = {cs.metadata.name: cs.conditions[0] for cs in client.CoreV1Api(api).list_component_status().items}
    assert statuses["sqlite-0"].type == "Healthy" and statuses["sqlite-0"].status == "True"
    assert set(statuses) == {"sqlite-0", "scheduler", "controller-manager"}


def test_verbs_a_resource_lacks_are_405(server: ServerProcess) -> None:
    http = urllib3.PoolManager()
    for method, path in (("DELETE", "/api/v1/namespaces"),
                         ("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
                         ("POST", "/api/v1/componentstatuses"), ("GET", "/api/v1/namespaces/default/bindings")):
        response = http.request(method, server.url + path, body=b"{}" if method == "POST" else None,
                                headers={"Content-Type": "application/json"})
        assert response.status == 405, (method, path, response.data)
        assert json.loads(response.data)["reason"] == "MethodNotAllowed"
