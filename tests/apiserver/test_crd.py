"""CustomResourceDefinitions end to end, with the real kubectl and the official ``kubernetes`` client.

A CRD applied at run time is served at once (discovery, OpenAPI, tables, explain), its instances are
validated, pruned and defaulted from its schema, patched every way Kubernetes allows, watched,
scaled through ``/scale``; deleting it deletes them. Also: pickup after a restart, the CRD's own
conditions and name conflicts, several versions, the garbage collector and namespace deletion.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from tests.conftest import ServerProcess, start_server_process

GROUP = "example.com"


def widget_crd(plural: str = "widgets", kind: str = "Widget", group: str = GROUP,
               short: tuple[str, ...] = ("wd",), scope: str = "Namespaced") -> dict[str, Any]:
    """A CRD with a structural schema, defaults, a CEL rule, status and scale subresources,
    printer columns, a short name, the ``all`` category and a selectable field."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": list(short),
                      "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas",
                                                         "labelSelectorPath": ".status.selector"}},
                "selectableFields": [{"jsonPath": ".spec.size"}],
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "x-kubernetes-validations": [{"rule": "self.replicas <= 50",
                                                          "message": "at most 50 replicas"}],
                            "properties": {
                                "size": {"type": "string", "enum": ["small", "medium", "large"],
                                         "default": "medium", "description": "How big the widget is."},
                                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                          "x-kubernetes-list-map-keys": ["name"],
                                          "items": {"type": "object", "required": ["name"],
                                                    "properties": {"name": {"type": "string"},
                                                                   "port": {"type": "integer"}}}},
                            },
                        },
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                                    "selector": {"type": "string"}}},
                    },
                }},
            }],
        },
    }


def api(server: ServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def apply_crd(server: ServerProcess, crd: dict[str, Any]) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(crd))
    server.kubectl("wait", "--for", "condition=established", "--timeout=20s",
                   f"crd/{crd['metadata']['name']}")


def condition(crd: Any, kind: str) -> dict[str, Any] | None:
    for item in (crd.get("status") or {}).get("conditions") or ():
        if item["type"] == kind:
            return dict(item)
    return None


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except client.ApiException as error:
        return bool(error.status == 404)
    return False


@pytest.fixture(scope="module")
def widgets(server: ServerProcess) -> Iterator[client.CustomObjectsApi]:
    apply_crd(server, widget_crd())
    yield client.CustomObjectsApi(api(server))


def test_custom_resource_end_to_end(server: ServerProcess, widgets: client.CustomObjectsApi) -> None:
    crds = client.ApiextensionsV1Api(api(server))
    status = crds.read_custom_resource_definition("widgets.example.com").to_dict()["status"]
    assert status["accepted_names"]["kind"] == "Widget" and status["stored_versions"] == ["v1"]

    # Create: defaults applied, unknown fields pruned (and warned about).
    created = widgets.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
         "spec": {"replicas": 2, "colour": "red"}, "status": {"replicas": 9}},
        field_validation="Warn")
    assert created["spec"] == {"replicas": 2, "size": "medium"}
    assert "status" not in created  # the main resource never sets status when /status exists
    assert created["metadata"]["generation"] == 1

    # Strict refuses the unknown field with Kubernetes' words.
    with pytest.raises(client.ApiException) as strict:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"},
             "spec": {"colour": "red"}}, field_validation="Strict")
    with pytest.raises(client.ApiException) as strict_meta:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2", "colour": "red"}},
            field_validation="Strict")
    assert 'unknown field "metadata.colour"' in json.loads(strict_meta.value.body)["message"]
    assert strict.value.status == 400
    assert 'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field ' \
           '"spec.colour"' in json.loads(strict.value.body)["message"]

    # A bad instance is a 422 naming the field.
    with pytest.raises(client.ApiException) as bad:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"},
             "spec": {"size": "huge", "replicas": -1}})
    assert bad.value.status == 422
    body = json.loads(bad.value.body)
    fields = sorted(cause["field"] for cause in body["details"]["causes"])
    assert fields == ["spec.replicas", "spec.size"]
    assert "spec.replicas in body should be greater than or equal to 0" in body["message"]
    with pytest.raises(client.ApiException) as rule:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "many"},
             "spec": {"replicas": 51}})
    assert rule.value.status == 422 and "at most 50 replicas" in rule.value.body

    # Watch from here on.
    events: list[tuple[str, str, int]] = []
    stream = watch.Watch()

    def follow() -> None:
        for event in stream.stream(widgets.list_namespaced_custom_object, GROUP, "v1", "default", "widgets",
                                   resource_version=created["metadata"]["resourceVersion"], timeout_seconds=5):
            obj = event["object"]
            events.append((event["type"], obj["metadata"]["name"], obj["spec"]["replicas"]))

    watcher = threading.Thread(target=follow)
    watcher.start()

    # Merge patch, JSON patch, server-side apply; strategic merge patch is refused as Kubernetes does.
    merged = widgets.patch_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w1",
                                                    {"spec": {"size": "large"}})
    assert merged["spec"]["size"] == "large" and merged["metadata"]["generation"] == 2
    patched = json.loads(server.kubectl("patch", "widget", "w1", "--type=json", "-o", "json", "-p",
                                        '[{"op": "replace", "path": "/spec/replicas", "value": 3}]').stdout)
    assert patched["spec"]["replicas"] == 3
    strategic = server.kubectl("patch", "widget", "w1", "--type=strategic", "-p", '{"spec":{"replicas":4}}',
                               check=False)
    assert strategic.returncode != 0
    assert "the body of the request was in an unknown format - accepted media types include: " \
           "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml" \
           in strategic.stderr
    manifest = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
                "spec": {"ports": [{"name": "http", "port": 80}]}}
    server.kubectl("apply", "--server-side", "--field-manager=ssa-test", "-f", "-", input=json.dumps(manifest))
    manifest["spec"]["ports"] = [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
    server.kubectl("apply", "--server-side", "--field-manager=ssa-test", "-f", "-", input=json.dumps(manifest))
    applied = widgets.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w1")
    # The list is a map keyed by name (from the schema): entries merge by key, other fields stay.
    assert applied["spec"]["ports"] == [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
    assert applied["spec"]["size"] == "large" and applied["spec"]["replicas"] == 3
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert "ssa-test" in managers

    # Status only through /status; generation moves with spec changes only.
    generation = applied["metadata"]["generation"]
    with_status = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", "default", "widgets", "w1",
        {"status": {"replicas": 3, "selector": "app=w1"}, "spec": {"size": "small"}})
    assert with_status["status"] == {"replicas": 3, "selector": "app=w1"}
    assert with_status["spec"]["size"] == "large"  # spec is ignored on /status
    assert with_status["metadata"]["generation"] == generation
    ignored = widgets.patch_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w1",
                                                     {"status": {"replicas": 7}})
    assert ignored["status"]["replicas"] == 3
    # /status changes nothing but status (custom resources: not even annotations).
    only_status = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", "default", "widgets", "w1", {"metadata": {"annotations": {"a": "b"}}})
    assert "a" not in (only_status["metadata"].get("annotations") or {})

    # Scale through the scale subresource (kubectl and the client).
    server.kubectl("scale", "widget", "w1", "--replicas=5")
    scale = widgets.get_namespaced_custom_object_scale(GROUP, "v1", "default", "widgets", "w1")
    assert scale["spec"]["replicas"] == 5
    assert scale["status"] == {"replicas": 3, "selector": "app=w1"}
    watcher.join()
    assert ("MODIFIED", "w1", 3) in events and ("MODIFIED", "w1", 5) in events
    assert all(name == "w1" for _, name, _ in events)

    # kubectl get: printer columns, short name, category all, field selector on a selectable field.
    table = server.kubectl("get", "wd").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "REPLICAS", "AGE"]
    assert table[1].split()[:3] == ["w1", "large", "5"]
    assert "widget.example.com/w1" in server.kubectl("get", "all").stdout
    assert server.kubectl("get", "widgets", "--field-selector", "spec.size=large", "-o", "name").stdout.split() \
        == ["widget.example.com/w1"]
    assert server.kubectl("get", "widgets", "--field-selector", "spec.size=small", "-o", "name").stdout == ""
    explained = server.kubectl("explain", "widget.spec.size").stdout
    assert "How big the widget is." in explained and "<string>" in explained

    # Delete the CRD: its instances go, then the type.
    widgets.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w3"}})
    server.kubectl("delete", "crd", "widgets.example.com", "--timeout=30s")
    listing = server.kubectl("get", "--raw", "/apis/example.com/v1/namespaces/default/widgets", check=False)
    assert listing.returncode != 0 and "NotFound" in listing.stderr
    assert "widgets" not in server.kubectl("api-resources", "--api-group=example.com").stdout
    # Created again, it starts empty: the instances were deleted, not hidden.
    apply_crd(server, widget_crd())
    assert widgets.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")["items"] == []


def test_discovery_and_openapi_follow_a_new_crd(server: ServerProcess) -> None:
    apply_crd(server, widget_crd("gadgets", "Gadget", short=("gd",)))
    resources = server.kubectl("api-resources", "--api-group=example.com", "-o", "wide").stdout
    row = next(line for line in resources.splitlines() if line.startswith("gadgets"))
    assert row.split()[:5] == ["gadgets", "gd", "example.com/v1", "true", "Gadget"]
    document = json.loads(server.kubectl("get", "--raw", "/openapi/v3/apis/example.com/v1").stdout)
    assert "com.example.v1.Gadget" in document["components"]["schemas"]
    assert "/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}/scale" in document["paths"]
    server.kubectl("delete", "crd", "gadgets.example.com")
    wait_for(lambda: "gadgets" not in server.kubectl("api-resources", "--api-group=example.com").stdout,
             what="gadgets to leave discovery")


def test_crd_validation(server: ServerProcess) -> None:
    crds = client.ApiextensionsV1Api(api(server))
    crd = widget_crd("things", "Thing", short=())
    crd["metadata"]["name"] = "wrong.example.com"
    crd["spec"]["versions"][0]["storage"] = False
    crd["spec"]["group"] = "nodots"
    with pytest.raises(client.ApiException) as invalid:
        crds.create_custom_resource_definition(crd)
    assert invalid.value.status == 422
    message = json.loads(invalid.value.body)["message"]
    assert 'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group' in message
    assert 'spec.group: Invalid value: "nodots": should be a domain with at least one dot' in message
    assert "must have exactly one version marked as storage version" in message
    crd = widget_crd("things", "Thing", short=())
    del crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"]["type"]
    with pytest.raises(client.ApiException) as structural:
        crds.create_custom_resource_definition(crd)
    assert "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: Required value: " \
           "must not be empty for specified object fields" in json.loads(structural.value.body)["message"]


def test_conditions_and_name_conflicts(server: ServerProcess) -> None:
    crds = client.ApiextensionsV1Api(api(server))
    apply_crd(server, widget_crd("sprockets", "Sprocket", group="conflict.example.com", short=("sp",)))
    # Same kind in the same group under another plural: the older CRD keeps its names.
    second = widget_crd("sprocketz", "Sprocket", group="conflict.example.com", short=("sz",))
    second["spec"]["names"]["singular"] = "sprocketz"
    server.kubectl("apply", "-f", "-", input=json.dumps(second))

    def decided() -> dict[str, Any] | None:
        crd = crds.read_custom_resource_definition("sprocketz.conflict.example.com").to_dict()
        found = condition({"status": {"conditions": [
            {"type": c["type"], "status": c["status"], "reason": c["reason"], "message": c["message"]}
            for c in crd["status"]["conditions"] or ()]}}, "NamesAccepted")
        return found if found else None

    names = wait_for(decided, what="NamesAccepted on the second CRD")
    assert names["status"] == "False" and names["reason"] == "KindConflict"
    assert names["message"] == '"Sprocket" is already in use'
    stored = server.kubectl("get", "crd", "sprocketz.conflict.example.com", "-o", "json").stdout
    established = condition(json.loads(stored), "Established")
    assert established is not None and established["status"] == "False"
    assert established["reason"] == "NotAccepted"
    first = json.loads(server.kubectl("get", "crd", "sprockets.conflict.example.com", "-o", "json").stdout)
    assert condition(first, "NamesAccepted")["reason"] == "NoConflicts"  # type: ignore[index]
    assert condition(first, "Established")["reason"] == "InitialNamesAccepted"  # type: ignore[index]
    resources = server.kubectl("api-resources", "--api-group=conflict.example.com").stdout
    assert "sprockets" in resources and "sprocketz" not in resources
    # An established CRD asking for a name another holds keeps serving under its accepted names.
    apply_crd(server, widget_crd("cogs", "Cog", group="conflict.example.com", short=("cg",)))
    server.kubectl("patch", "crd", "sprockets.conflict.example.com", "--type=json", "-p",
                   '[{"op": "add", "path": "/spec/names/shortNames/-", "value": "cg"}]')

    def short_name_clash() -> dict[str, Any] | None:
        crd = json.loads(server.kubectl("get", "crd", "sprockets.conflict.example.com", "-o", "json").stdout)
        found = condition(crd, "NamesAccepted")
        return crd if found is not None and found["reason"] == "ShortNamesConflict" else None

    clashed = wait_for(short_name_clash, what="ShortNamesConflict on the established CRD")
    assert condition(clashed, "NamesAccepted")["message"] == '"cg" is already in use'  # type: ignore[index]
    assert condition(clashed, "Established")["status"] == "True"  # type: ignore[index]
    assert clashed["status"]["acceptedNames"]["shortNames"] == ["sp"]
    assert server.kubectl("get", "sp", "-o", "name").returncode == 0
    # The first one goes: the second is accepted and served.
    server.kubectl("delete", "crd", "sprockets.conflict.example.com")
    server.kubectl("wait", "--for", "condition=established", "--timeout=20s", "crd/sprocketz.conflict.example.com")


def test_several_versions_with_none_conversion(server: ServerProcess) -> None:
    crd = widget_crd("doohickeys", "Doohickey", short=())
    beta = copy.deepcopy(crd["spec"]["versions"][0])
    beta["name"], beta["storage"] = "v1beta1", False
    crd["spec"]["versions"].insert(0, beta)
    apply_crd(server, crd)
    objects = client.CustomObjectsApi(api(server))
    objects.create_namespaced_custom_object(
        GROUP, "v1beta1", "default", "doohickeys",
        {"apiVersion": "example.com/v1beta1", "kind": "Doohickey", "metadata": {"name": "d1"},
         "spec": {"size": "small"}})
    as_v1 = objects.get_namespaced_custom_object(GROUP, "v1", "default", "doohickeys", "d1")
    assert as_v1["apiVersion"] == "example.com/v1" and as_v1["spec"] == {"size": "small", "replicas": 1}
    listed = objects.list_namespaced_custom_object(GROUP, "v1beta1", "default", "doohickeys")
    assert [item["apiVersion"] for item in listed["items"]] == ["example.com/v1beta1"]
    # kubectl picks the preferred version, v1 over v1beta1.
    assert json.loads(server.kubectl("get", "doohickey", "d1", "-o", "json").stdout)["apiVersion"] \
        == "example.com/v1"
    group = json.loads(server.kubectl("get", "--raw", "/apis/example.com").stdout)
    assert group["preferredVersion"]["version"] == "v1"
    stored = json.loads(server.kubectl("get", "crd", "doohickeys.example.com", "-o", "json").stdout)
    assert stored["status"]["storedVersions"] == ["v1"]


def test_cluster_scoped_custom_resource(server: ServerProcess) -> None:
    crd = widget_crd("realms", "Realm", short=(), scope="Cluster")
    crd["spec"]["names"]["listKind"] = "RealmCatalog"
    apply_crd(server, crd)
    server.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "example.com/v1", "kind": "Realm", "metadata": {"name": "north"}, "spec": {}}))
    realm = json.loads(server.kubectl("get", "realm", "north", "-o", "json").stdout)
    assert "namespace" not in realm["metadata"] and realm["spec"]["size"] == "medium"
    listed = json.loads(server.kubectl("get", "--raw", "/apis/example.com/v1/realms").stdout)
    assert listed["kind"] == "RealmCatalog" and [i["metadata"]["name"] for i in listed["items"]] == ["north"]


def test_garbage_collector_and_namespace_deletion(server: ServerProcess) -> None:
    apply_crd(server, widget_crd("owners", "Owner", short=()))
    objects = client.CustomObjectsApi(api(server))
    core = client.CoreV1Api(api(server))
    owner = objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "owners",
        {"apiVersion": "example.com/v1", "kind": "Owner", "metadata": {"name": "o1"}})
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="owned", owner_references=[client.V1OwnerReference(
            api_version="example.com/v1", kind="Owner", name="o1", uid=owner["metadata"]["uid"])])))
    objects.delete_namespaced_custom_object(GROUP, "v1", "default", "owners", "o1")
    wait_for(lambda: gone(lambda: core.read_namespaced_config_map("owned", "default")), timeout=30,
             what="the garbage collector to delete the owned ConfigMap")

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="crd-ns")))
    objects.create_namespaced_custom_object(
        GROUP, "v1", "crd-ns", "owners",
        {"apiVersion": "example.com/v1", "kind": "Owner", "metadata": {"name": "inside",
                                                                     "finalizers": ["example.com/hold"]}})
    core.delete_namespace("crd-ns")

    def terminating_on_owner() -> bool:
        ns = core.read_namespace("crd-ns")
        return any(c.type == "NamespaceContentRemaining" and c.status == "True" and "owners.example.com" in c.message
                   for c in ns.status.conditions or ())

    wait_for(terminating_on_owner, timeout=30, what="the namespace controller to wait for the custom resource")
    objects.patch_namespaced_custom_object(GROUP, "v1", "crd-ns", "owners", "inside",
                                           {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(lambda: core.read_namespace("crd-ns")), timeout=30, what="the namespace to go")


def test_restart_serves_stored_crds(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("crd-restart")
    first = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    try:
        apply_crd(first, widget_crd())
        first.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "kept"}, "spec": {}}))
    finally:
        first.stop()
    second = start_server_process(data_dir, port=first.port, extra=("--disable", "scheduler,controller-manager"))
    try:
        # Served as soon as the server is ready: no waiting for the CRD controller.
        kept = json.loads(second.kubectl("get", "widget", "kept", "-o", "json").stdout)
        assert kept["spec"] == {"size": "medium", "replicas": 1}
    finally:
        second.stop()


def test_every_api_server_over_one_etcd_serves_a_new_crd(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.store.etcd_server import EtcdCluster, etcd_binary

    if etcd_binary() is None:
        pytest.skip("etcd binary not found (apt-get install etcd-server)")
    base = tmp_path_factory.mktemp("crd-etcd")
    with EtcdCluster(1, base_dir=base / "etcd") as etcd:
        extra = ("--datastore-endpoint", etcd.endpoint, "--disable", "scheduler,controller-manager")
        a = start_server_process(base / "a", extra=extra)
        b = start_server_process(base / "b", extra=extra)
        try:
            apply_crd(a, widget_crd())  # written and decided through A
            # B picks it up from the store's watch, not from its own writes.
            wait_for(lambda: "widgets" in b.kubectl("api-resources", "--api-group=example.com").stdout,
                     what="the second server to serve the CRD")
            b.kubectl("apply", "-f", "-", input=json.dumps(
                {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "via-b"}, "spec": {}}))
            assert json.loads(a.kubectl("get", "widget", "via-b", "-o", "json").stdout)["spec"]["size"] == "medium"
            a.kubectl("delete", "crd", "widgets.example.com", "--timeout=30s")
            wait_for(lambda: "widgets" not in b.kubectl("api-resources", "--api-group=example.com").stdout,
                     what="the second server to stop serving the CRD")
        finally:
            a.stop()
            b.stop()


def test_a_terminating_crd_waits_for_its_instances_and_refuses_creates(server: ServerProcess) -> None:
    apply_crd(server, widget_crd("holders", "Holder", short=()))
    objects = client.CustomObjectsApi(api(server))
    crds = client.ApiextensionsV1Api(api(server))
    objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "holders",
        {"apiVersion": "example.com/v1", "kind": "Holder", "metadata": {"name": "h1",
                                                                      "finalizers": ["example.com/hold"]}})
    server.kubectl("delete", "crd", "holders.example.com", "--wait=false")

    def terminating() -> bool:
        crd = json.loads(server.kubectl("get", "crd", "holders.example.com", "-o", "json").stdout)
        found = condition(crd, "Terminating")
        return found is not None and found["reason"] == "InstanceDeletionInProgress"

    wait_for(terminating, what="the CRD to wait for its instance")
    stored = crds.read_custom_resource_definition("holders.example.com")
    assert "customresourcecleanup.apiextensions.k8s.io" in stored.metadata.finalizers
    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object(
            GROUP, "v1", "default", "holders",
            {"apiVersion": "example.com/v1", "kind": "Holder", "metadata": {"name": "h2"}})
    assert refused.value.status == 405
    assert json.loads(refused.value.body)["message"] == \
        'create is not supported on resources of kind "holders.example.com"'
    held = objects.get_namespaced_custom_object(GROUP, "v1", "default", "holders", "h1")
    assert held["metadata"]["deletionTimestamp"]  # deleted, waiting for its own finalizer
    objects.patch_namespaced_custom_object(GROUP, "v1", "default", "holders", "h1",
                                           {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(lambda: crds.read_custom_resource_definition("holders.example.com")),
             what="the CRD to go once its last instance went")


def test_transition_rules_see_the_old_object(server: ServerProcess) -> None:
    crd = widget_crd("locks", "Lock", short=())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["id"] = {"type": "string", "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "id is immutable"}]}
    apply_crd(server, crd)
    objects = client.CustomObjectsApi(api(server))
    objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "locks",
        {"apiVersion": "example.com/v1", "kind": "Lock", "metadata": {"name": "l1"}, "spec": {"id": "a"}})
    assert objects.patch_namespaced_custom_object(GROUP, "v1", "default", "locks", "l1",
                                                  {"spec": {"size": "small"}})["spec"]["id"] == "a"
    with pytest.raises(client.ApiException) as changed:
        objects.patch_namespaced_custom_object(GROUP, "v1", "default", "locks", "l1", {"spec": {"id": "b"}})
    assert changed.value.status == 422
    assert "spec.id: Invalid value: \"string\": id is immutable" in json.loads(changed.value.body)["message"]


def test_defaults_apply_on_read_after_the_schema_changes(server: ServerProcess) -> None:
    crd = widget_crd("paints", "Paint", short=())
    apply_crd(server, crd)
    objects = client.CustomObjectsApi(api(server))
    objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "paints",
        {"apiVersion": "example.com/v1", "kind": "Paint", "metadata": {"name": "p1"}, "spec": {}})
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["colour"] = {"type": "string", "default": "blue"}
    server.kubectl("apply", "-f", "-", input=json.dumps(crd))

    def defaulted() -> bool:
        obj = objects.get_namespaced_custom_object(GROUP, "v1", "default", "paints", "p1")
        return bool(obj["spec"].get("colour") == "blue")

    # Stored before the new default existed: served with it (get, list), without a write.
    wait_for(defaulted, what="the new default on read")
    listed = objects.list_namespaced_custom_object(GROUP, "v1", "default", "paints")["items"]
    assert [item["spec"]["colour"] for item in listed] == ["blue"]


def test_a_version_added_later_becomes_preferred_by_priority(server: ServerProcess) -> None:
    crd = widget_crd("levers", "Lever", group="levers.example.org", short=())
    crd["spec"]["versions"][0]["name"] = "v1beta1"
    apply_crd(server, crd)
    ga = copy.deepcopy(crd["spec"]["versions"][0])
    ga["name"] = "v1"
    crd["spec"]["versions"][0]["storage"] = False
    crd["spec"]["versions"].append(ga)
    server.kubectl("apply", "-f", "-", input=json.dumps(crd))

    def preferred() -> str:
        for group in json.loads(server.kubectl("get", "--raw", "/apis").stdout)["groups"]:
            if group["name"] == "levers.example.org":
                return str(group["preferredVersion"]["version"])
        return ""

    wait_for(lambda: preferred() == "v1", what="v1 to be the preferred version")
    stored = json.loads(server.kubectl("get", "crd", "levers.levers.example.org", "-o", "json").stdout)
    assert stored["status"]["storedVersions"] == ["v1beta1", "v1"]
