"""``/openapi/v2`` as kubectl reads it: gnostic protobuf, and the commands that depend on it.

kubectl validates a ``kind: List`` (what ``kubectl get -o yaml`` writes) on the client against the v2
document, so ``create -f``/``apply -f`` of a List only work when v2 is served as kubectl expects. The
protobuf is decoded here with the ``protobuf`` package over gnostic's descriptor taken straight from
the kubectl binary (not from the copy the server ships), so a wrong field number would show.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from tests.conftest import ServerProcess

KUBECTL_132 = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.32")
pytestmark = pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")

PROTOBUF_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what kubectl 1.32 sends


def list_manifest(suffix: str, extra_configmap_field: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: ConfigMap
          metadata:
            name: settings-{suffix}
          data:
            mode: fast
        {extra_configmap_field}
        - apiVersion: apps/v1
          kind: Deployment
          metadata:
            name: web-{suffix}
            labels: {{app: web-{suffix}}}
          spec:
            replicas: 2
            selector:
              matchLabels: {{app: web-{suffix}}}
            template:
              metadata:
                labels: {{app: web-{suffix}}}
              spec:
                containers:
                - name: app
                  image: busybox:1.36
                  ports:
                  - containerPort: 8080
        """)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def fetch(server: ServerProcess, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(server.url + "/openapi/v2", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def gnostic_document_class() -> Any:
    """``openapi.v2.Document`` built from the descriptor compiled into kubectl 1.32."""
    tool = Path(__file__).resolve().parents[2] / "tools" / "gen_openapiv2_descriptor.py"
    spec = importlib.util.spec_from_file_location("gen_openapiv2_descriptor", tool)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = module.extract(KUBECTL_132.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))


def test_create_list_with_configmap_and_deployment(server: ServerProcess, tmp_path: Path) -> None:
    out = server.kubectl("create", "-f", write(tmp_path, "list.yaml", list_manifest("c"))).stdout
    assert "configmap/settings-c created" in out
    assert "deployment.apps/web-c created" in out
    assert server.kubectl("get", "cm", "settings-c", "-o", "jsonpath={.data.mode}").stdout == "fast"
    assert server.kubectl("get", "deploy", "web-c", "-o", "jsonpath={.spec.replicas}").stdout == "2"


def test_apply_list_creates_then_unchanged(server: ServerProcess, tmp_path: Path) -> None:
    path = write(tmp_path, "list.yaml", list_manifest("a"))
    first = server.kubectl("apply", "-f", path).stdout
    assert "configmap/settings-a created" in first
    assert "deployment.apps/web-a created" in first
    again = server.kubectl("apply", "-f", path).stdout
    assert "configmap/settings-a unchanged" in again
    assert "deployment.apps/web-a unchanged" in again
    changed = server.kubectl("apply", "-f", write(tmp_path, "list2.yaml",
                                                  list_manifest("a").replace("replicas: 2", "replicas: 3"))).stdout
    assert "deployment.apps/web-a configured" in changed
    assert server.kubectl("get", "deploy", "web-a", "-o", "jsonpath={.spec.replicas}").stdout == "3"


@pytest.mark.parametrize("verb", ["create", "apply"])
def test_list_with_unknown_field_is_refused_by_kubectl(server: ServerProcess, tmp_path: Path, verb: str) -> None:
    path = write(tmp_path, "bad.yaml", list_manifest(f"bad-{verb}", "  bogus: true"))
    result = server.kubectl(verb, "-f", path, check=False)
    assert result.returncode == 1
    # kubectl's own client-side validation message, made from the v2 definitions.
    assert ('error validating data: ValidationError(ConfigMap): unknown field "bogus" in '
            "io.k8s.api.core.v1.ConfigMap") in result.stderr
    assert "turn validation off with --validate=false" in result.stderr
    # Validation happens before anything is sent: the valid Deployment was not created either.
    assert "NotFound" in server.kubectl("get", "deploy", f"web-bad-{verb}", check=False).stderr

    nested = write(tmp_path, "nested.yaml", list_manifest(f"bad-{verb}").replace(
        "image: busybox:1.36", "image: busybox:1.36\n          imagePolicy: Always"))
    result = server.kubectl(verb, "-f", nested, check=False)
    assert result.returncode == 1
    assert ('ValidationError(Deployment.spec.template.spec.containers[0]): unknown field "imagePolicy" in '
            "io.k8s.api.core.v1.Container") in result.stderr


def test_get_yaml_round_trips_through_apply(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "namespace", "round-trip")
    server.kubectl("create", "-n", "round-trip", "-f", write(tmp_path, "list.yaml", list_manifest("r")))
    server.kubectl("create", "-n", "round-trip", "service", "clusterip", "web-r", "--tcp=80:8080")
    exported = server.kubectl("get", "-n", "round-trip", "cm,deploy,svc", "-o", "yaml").stdout
    before = yaml.safe_load(exported)
    assert before["kind"] == "List"
    kinds = {item["kind"] for item in before["items"]}
    assert {"ConfigMap", "Deployment", "Service"} <= kinds

    applied = server.kubectl("apply", "-f", "-", input=exported)
    assert "deployment.apps/web-r configured" in applied.stdout
    assert "service/web-r configured" in applied.stdout

    after = yaml.safe_load(server.kubectl("get", "-n", "round-trip", "cm,deploy,svc", "-o", "yaml").stdout)
    by_name = {(i["kind"], i["metadata"]["name"]): i for i in after["items"]}
    for item in before["items"]:
        again = by_name[(item["kind"], item["metadata"]["name"])]
        assert again["metadata"]["uid"] == item["metadata"]["uid"]
        for field in ("data", "spec"):
            assert again.get(field) == item.get(field), (item["kind"], field)
        assert "kubectl.kubernetes.io/last-applied-configuration" in again["metadata"]["annotations"]


def test_protobuf_document_decodes_with_kubectl_descriptor(server: ServerProcess) -> None:
    if not KUBECTL_132.exists():
        pytest.skip("the bundled kubectl 1.32 binary is not installed")
    status, body, headers = fetch(server, {"Accept": PROTOBUF_ACCEPT})
    assert status == 200
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    document = gnostic_document_class().FromString(body)
    assert document.swagger == "2.0"
    assert document.info.title == "Kubernetes"
    definitions = {named.name: named.value for named in document.definitions.additional_properties}
    pod = definitions["io.k8s.api.core.v1.Pod"]
    extensions = {named.name: yaml.safe_load(named.value.yaml) for named in pod.vendor_extension}
    assert extensions["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    properties = {named.name: named.value for named in pod.properties.additional_properties}
    assert properties["spec"]._ref == "#/definitions/io.k8s.api.core.v1.PodSpec"
    assert list(properties["kind"].type.value) == ["string"]
    containers = {n.name: n.value for n in definitions["io.k8s.api.core.v1.PodSpec"].properties
                  .additional_properties}["containers"]
    assert containers.items.schema[0]._ref == "#/definitions/io.k8s.api.core.v1.Container"
    assert {n.name: yaml.safe_load(n.value.yaml) for n in containers.vendor_extension}[
        "x-kubernetes-patch-merge-key"] == "name"

    # Every reference resolves: kubectl's parser refuses a document with a dangling one.
    refs: list[str] = []

    def collect(schema: Any) -> None:
        if schema._ref:
            refs.append(schema._ref)
        for named in schema.properties.additional_properties:
            collect(named.value)
        for item in schema.items.schema:
            collect(item)
        if schema.additional_properties.HasField("schema"):
            collect(schema.additional_properties.schema)

    for schema in definitions.values():
        collect(schema)
    assert refs
    assert {ref.removeprefix("#/definitions/") for ref in refs} <= set(definitions)

    # apply falls back to the patch operation's consumes to pick a patch type.
    paths = {named.name: named.value for named in document.paths.path}
    patch = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].patch
    assert "application/strategic-merge-patch+json" in patch.consumes
    gvk = {n.name: yaml.safe_load(n.value.yaml) for n in patch.vendor_extension}["x-kubernetes-group-version-kind"]
    assert gvk == {"group": "apps", "kind": "Deployment", "version": "v1"}
    body_param = patch.parameters[0].parameter.body_parameter
    assert body_param.name == "body"
    assert body_param.schema._ref == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"


def test_json_negotiation_etag_and_not_acceptable(server: ServerProcess) -> None:
    status, body, headers = fetch(server, {"Accept": "application/json"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["swagger"] == "2.0"
    assert document["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    etag = headers["ETag"]
    _, _, proto_headers = fetch(server, {"Accept": PROTOBUF_ACCEPT})
    assert proto_headers["ETag"] == etag  # one ETag for both encodings; the response varies by Accept
    assert proto_headers["Vary"] == "Accept"
    status, body, _ = fetch(server, {"Accept": PROTOBUF_ACCEPT, "If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert fetch(server, {"Accept": "*/*"})[2]["Content-Type"] == "application/json"
    # As goautoneg orders clauses: q first, then a specific type before a wildcard.
    assert fetch(server, {"Accept": f"*/*, {PROTOBUF_ACCEPT}"})[2]["Content-Type"].endswith("+protobuf")
    assert fetch(server, {"Accept": f"{PROTOBUF_ACCEPT};q=0.5, application/json"})[2]["Content-Type"] == \
        "application/json"
    assert fetch(server, {"Accept": "text/html"})[0] == 406
    _, plain, _ = fetch(server, {"Accept": PROTOBUF_ACCEPT})
    _, packed, gz_headers = fetch(server, {"Accept": PROTOBUF_ACCEPT, "Accept-Encoding": "gzip"})
    assert gz_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed) == plain and len(packed) < len(plain) / 4


def test_explain_plaintext_openapiv2(server: ServerProcess) -> None:
    out = server.kubectl("explain", "deployment.spec.replicas", "--output", "plaintext-openapiv2").stdout
    assert "KIND:     Deployment" in out
    assert "FIELD:    replicas <integer>" in out
    # The default explain still reads OpenAPI v3.
    assert "FIELD: replicas <integer>" in server.kubectl("explain", "deployment.spec.replicas").stdout
