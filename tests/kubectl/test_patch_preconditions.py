"""PATCH preconditions and the client-side → server-side apply upgrade, against a real server with
the real kubectl and the official Python client.

- A resourceVersion that a patch (any of the four types, the scale subresource too) leaves in the
  object is a precondition: stale, the write is a 409 Conflict, as the generic store's ``Update``.
- ``kubectl apply --server-side`` over an object made with plain ``kubectl apply`` takes over what
  the last-applied annotation truthfully describes (``lastAppliedManager``) and kubectl then moves
  the rest of client-side apply's ownership (csaupgrade); other conflicts stand.
- A Role made without rules reads back ``rules: null`` (the field has no ``omitempty``), and a
  ServiceAccount subject's empty apiGroup is omitted (it has).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")

MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")


def core_api(server: ServerProcess) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def rv_patch(content_type: str, rv: str, value: str) -> Any:
    """A patch of ``content_type`` that sets data.a to ``value`` with ``rv`` as resourceVersion."""
    if content_type == "application/json-patch+json":
        return [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "replace", "path": "/data/a", "value": value}]
    body: dict[str, Any] = {"metadata": {"resourceVersion": rv}, "data": {"a": value}}
    if content_type == "application/apply-patch+yaml":
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pre", **body["metadata"]},
                "data": body["data"]}
    return body


@pytest.mark.parametrize("content_type", PATCH_TYPES)
def test_stale_resource_version_in_a_patch_is_a_conflict(server: ServerProcess, content_type: str) -> None:
    core = core_api(server)
    try:
        core.delete_namespaced_config_map("pre", "default")
    except ApiException as error:
        assert error.status == 404
    created = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="pre"), data={"a": "0"}))
    stale = created.metadata.resource_version
    current = core.patch_namespaced_config_map("pre", "default", {"data": {"a": "1"}}).metadata.resource_version
    assert current != stale
    options: dict[str, Any] = {"_content_type": content_type}
    if content_type == "application/apply-patch+yaml":  # forced: only the precondition may refuse it
        options.update(field_manager="precondition-test", force=True)

    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("pre", "default", rv_patch(content_type, stale, "2"), **options)
    assert caught.value.status == 409
    status = json.loads(caught.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == f'Operation cannot be fulfilled on configmaps "pre": {MODIFIED}'
    unchanged = core.read_namespaced_config_map("pre", "default")
    assert (unchanged.data, unchanged.metadata.resource_version) == ({"a": "1"}, current)

    # The current resourceVersion is a precondition that holds.
    patched = core.patch_namespaced_config_map("pre", "default", rv_patch(content_type, current, "3"), **options)
    assert patched.data == {"a": "3"}
    assert patched.metadata.resource_version != current


def test_patch_that_removes_the_resource_version_is_unconditional(server: ServerProcess) -> None:
    core = core_api(server)
    core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="unconditional"), data={"a": "0"}))
    patched = core.patch_namespaced_config_map(
        "unconditional", "default", [{"op": "remove", "path": "/metadata/resourceVersion"},
                                     {"op": "replace", "path": "/data/a", "value": "1"}],
        _content_type="application/json-patch+json")
    assert patched.data == {"a": "1"}
    patched = core.patch_namespaced_config_map("unconditional", "default",
                                               {"metadata": {"resourceVersion": None}, "data": {"a": "2"}},
                                               _content_type="application/merge-patch+json")
    assert patched.data == {"a": "2"}


def test_stale_resource_version_on_the_scale_subresource(server: ServerProcess) -> None:
    server.kubectl("create", "deployment", "scaled", "--image=nginx:1.27")
    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
    stale = apps.read_namespaced_deployment_scale("scaled", "default").metadata.resource_version
    server.kubectl("label", "deployment", "scaled", "touched=yes")
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale("scaled", "default", {"metadata": {"resourceVersion": stale},
                                                                     "spec": {"replicas": 4}},
                                               _content_type="application/merge-patch+json")
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["message"] == (
        f'Operation cannot be fulfilled on deployments.apps "scaled": {MODIFIED}')
    current = apps.read_namespaced_deployment_scale("scaled", "default")
    assert current.spec.replicas == 1
    # A uid is a precondition too, checked by the scale handler itself.
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale("scaled", "default", {"metadata": {"uid": "0000"}},
                                               _content_type="application/merge-patch+json")
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["message"] == (
        'Operation cannot be fulfilled on deployments/scale.apps "scaled": Precondition failed: UID in '
        f"precondition: 0000, UID in object meta: {current.metadata.uid}")
    # The current resourceVersion is accepted. The deployment controller may write the status
    # between the read and the patch (then the version is stale, rightly): read again and retry.
    for _ in range(20):
        current = apps.read_namespaced_deployment_scale("scaled", "default")
        try:
            scaled = apps.patch_namespaced_deployment_scale(
                "scaled", "default", {"metadata": {"resourceVersion": current.metadata.resource_version},
                                      "spec": {"replicas": 4}}, _content_type="application/merge-patch+json")
            break
        except ApiException as error:
            assert error.status == 409, error.body
    else:
        raise AssertionError("the current resourceVersion was refused 20 times")
    assert scaled.spec.replicas == 4


def test_server_side_apply_of_a_scale(server: ServerProcess) -> None:
    server.kubectl("create", "deployment", "applied-scale", "--image=nginx:1.27")
    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "applied-scale"},
             "spec": {"replicas": 3}}

    def apply(**options: Any) -> Any:
        return apps.patch_namespaced_deployment_scale("applied-scale", "default", scale,
                                                      _content_type="application/apply-patch+yaml", **options)

    with pytest.raises(ApiException) as caught:
        apply()
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
    # kubectl create owns replicas (defaulted to 1): the autoscaler must force its way in.
    with pytest.raises(ApiException) as caught:
        apply(field_manager="autoscaler")
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas')
    assert apply(field_manager="autoscaler", force=True).spec.replicas == 3
    live = json.loads(server.kubectl("get", "deployment", "applied-scale", "-o", "json",
                                     "--show-managed-fields").stdout)
    assert live["spec"]["replicas"] == 3
    entry = next(e for e in live["metadata"]["managedFields"] if e["manager"] == "autoscaler")
    assert (entry["operation"], entry["apiVersion"], entry["subresource"]) == ("Apply", "apps/v1", "scale")
    assert entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    scale["apiVersion"] = "apps/v1"
    with pytest.raises(ApiException) as caught:
        apply(field_manager="autoscaler")
    assert caught.value.status == 400


def test_kubectl_apply_of_stale_exported_yaml_fails(server: ServerProcess, tmp_path: Path) -> None:
    manifest = tmp_path / "exported.yaml"
    server.kubectl("create", "configmap", "exported", "--from-literal=a=1")
    manifest.write_text(server.kubectl("get", "configmap", "exported", "-o", "yaml").stdout)
    # Exported and applied back before anyone else wrote: the resourceVersion still holds.
    assert server.kubectl("apply", "-f", str(manifest)).stdout == "configmap/exported configured\n"
    manifest.write_text(server.kubectl("get", "configmap", "exported", "-o", "yaml").stdout)
    server.kubectl("patch", "configmap", "exported", "-p", '{"data":{"a":"2"}}')

    # kubectl's three-way patch carries the file's (now stale) resourceVersion.
    result = server.kubectl("apply", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert f'Operation cannot be fulfilled on configmaps "exported": {MODIFIED}' in result.stderr
    result = server.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert f'error: Operation cannot be fulfilled on configmaps "exported": {MODIFIED}' in result.stderr
    live = json.loads(server.kubectl("get", "configmap", "exported", "-o", "json").stdout)
    assert live["data"] == {"a": "2"}


def test_a_stale_uid_is_refused_as_immutable(server: ServerProcess, tmp_path: Path) -> None:
    """Exported from an object since deleted and made again: without its resourceVersion, the old
    uid still refuses the write (BeforeUpdate fills only a missing uid)."""
    manifest = tmp_path / "recreated.yaml"
    server.kubectl("create", "configmap", "recreated", "--from-literal=a=1")
    exported = yaml.safe_load(server.kubectl("get", "configmap", "recreated", "-o", "yaml").stdout)
    del exported["metadata"]["resourceVersion"]
    manifest.write_text(yaml.safe_dump(exported))
    server.kubectl("delete", "configmap", "recreated")
    server.kubectl("create", "configmap", "recreated", "--from-literal=a=2")
    expected = (f'The ConfigMap "recreated" is invalid: metadata.uid: Invalid value: '
                f'"{exported["metadata"]["uid"]}": field is immutable')
    for command in (("replace",), ("apply", "--server-side", "--force-conflicts")):
        result = server.kubectl(*command, "-f", str(manifest), check=False)
        assert (result.returncode, result.stderr.strip()) == (1, expected)
    # Without a uid the stored one is kept.
    patch = [{"op": "remove", "path": "/metadata/uid"}, {"op": "add", "path": "/data/b", "value": "3"}]
    patched = server.kubectl("patch", "configmap", "recreated", "--type=json", "-o", "json", "-p", json.dumps(patch))
    assert json.loads(patched.stdout)["data"] == {"a": "2", "b": "3"}


def managers(server: ServerProcess, *resource: str) -> dict[str, Any]:
    live = json.loads(server.kubectl("get", *resource, "-o", "json", "--show-managed-fields").stdout)
    return {f'{entry["manager"]}/{entry["operation"]}': entry["fieldsV1"]
            for entry in live["metadata"]["managedFields"]}


def client_side_applied_deployment(server: ServerProcess, tmp_path: Path, name: str) -> tuple[Any, Path]:
    """A Deployment made with plain ``kubectl apply``: its manifest and the file it is in."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name}},
                                        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    server.kubectl("apply", "-f", str(manifest))
    return deployment, manifest


def test_server_side_apply_takes_over_from_client_side_apply(server: ServerProcess, tmp_path: Path) -> None:
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "csa"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}
    manifest = tmp_path / "binding.yaml"
    manifest.write_text(yaml.safe_dump(binding))
    server.kubectl("apply", "-f", str(manifest))
    live = json.loads(server.kubectl("get", "rolebinding", "csa", "-o", "json").stdout)
    assert live["subjects"] == binding["subjects"]  # a ServiceAccount's "" apiGroup is omitted
    assert set(managers(server, "rolebinding", "csa")) == {"kubectl-client-side-apply/Update"}

    result = server.kubectl("apply", "--server-side", "-f", str(manifest))
    assert result.stdout == "rolebinding.rbac.authorization.k8s.io/csa serverside-applied\n"
    owners = managers(server, "rolebinding", "csa")
    assert set(owners) == {"kubectl/Apply", "kubectl-last-applied/Apply"}  # kubectl's csaupgrade ran
    assert owners["kubectl/Apply"] == {"f:roleRef": {}, "f:subjects": {}}

    # A Deployment whose image the file changes: client-side apply owned it and the annotation
    # says so truthfully, so kubectl's applier takes it over; defaulted fields do not get in the way.
    deployment, manifest = client_side_applied_deployment(server, tmp_path, "csa")
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    manifest.write_text(yaml.safe_dump(deployment))
    result = server.kubectl("apply", "--server-side", "-f", str(manifest))
    assert result.stdout == "deployment.apps/csa serverside-applied\n"
    live = json.loads(server.kubectl("get", "deployment", "csa", "-o", "json").stdout)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert "kubectl-client-side-apply/Update" not in managers(server, "deployment", "csa")
    # The server keeps the annotation in step with what kubectl applies, so that a later plain
    # kubectl apply diffs against this configuration.
    annotation = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert annotation.endswith("}\n")
    assert json.loads(annotation) == {**deployment, "metadata": {"name": "csa", "namespace": "default"}}


def test_client_side_apply_upgrade_keeps_other_conflicts(server: ServerProcess, tmp_path: Path) -> None:
    deployment, manifest = client_side_applied_deployment(server, tmp_path, "patched-csa")
    server.kubectl("patch", "deployment", "patched-csa", "-p", '{"spec":{"replicas":3}}')
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    manifest.write_text(yaml.safe_dump(deployment))

    # kubectl patch, not client-side apply, owns replicas now: that conflict stands, alone.
    result = server.kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl-patch" '
                                    "using apps/v1: .spec.replicas\n"), result.stderr
    # Another field manager opts out of the upgrade: client-side apply's fields conflict too.
    result = server.kubectl("apply", "--server-side", "--field-manager=other", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert "Apply failed with 2 conflicts" in result.stderr
    assert 'conflicts with "kubectl-client-side-apply" using apps/v1:\n' in result.stderr
    live = json.loads(server.kubectl("get", "deployment", "patched-csa", "-o", "json").stdout)
    assert (live["spec"]["replicas"], live["spec"]["template"]["spec"]["containers"][0]["image"]) == (3, "nginx:1.25")


def test_kubectl_scale_owns_replicas_through_the_scale_subresource(server: ServerProcess, tmp_path: Path) -> None:
    deployment, manifest = client_side_applied_deployment(server, tmp_path, "scaled-csa")
    server.kubectl("scale", "deployment", "scaled-csa", "--replicas=3")
    owners = managers(server, "deployment", "scaled-csa")
    live = json.loads(server.kubectl("get", "deployment", "scaled-csa", "-o", "json", "--show-managed-fields").stdout)
    scale_entry = next(e for e in live["metadata"]["managedFields"] if e.get("subresource") == "scale")
    assert (scale_entry["manager"], scale_entry["operation"], scale_entry["apiVersion"]) == ("kubectl", "Update",
                                                                                             "apps/v1")
    assert scale_entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners["kubectl-client-side-apply/Update"]["f:spec"]

    deployment["spec"]["replicas"] = 2
    manifest.write_text(yaml.safe_dump(deployment))
    result = server.kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl" with subresource '
                                    '"scale" using apps/v1: .spec.replicas\n'), result.stderr


def test_server_side_apply_through_status_owns_status(server: ServerProcess, tmp_path: Path) -> None:
    server.kubectl("create", "service", "clusterip", "applied-status", "--tcp=80:80")
    manifest = tmp_path / "status.yaml"

    def apply_condition(manager: str, message: str, *extra: str) -> Any:
        status = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "applied-status"},
                  "spec": {"type": "NodePort"},  # not the status subresource's to change: ignored
                  "status": {"conditions": [{"type": "Probed", "status": "True", "reason": "Seen",
                                             "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
        manifest.write_text(yaml.safe_dump(status))
        return server.kubectl("apply", "--server-side", "--subresource=status", f"--field-manager={manager}",
                              "-f", str(manifest), *extra, check=False)

    assert apply_condition("prober", "one").stdout == "service/applied-status serverside-applied\n"
    live = json.loads(server.kubectl("get", "service", "applied-status", "-o", "json",
                                     "--show-managed-fields").stdout)
    assert live["spec"]["type"] == "ClusterIP"
    assert live["status"]["conditions"][0]["message"] == "one"
    entry = next(e for e in live["metadata"]["managedFields"] if e["manager"] == "prober")
    assert (entry["operation"], entry.get("subresource")) == ("Apply", "status")
    assert list(entry["fieldsV1"]) == ["f:status"]
    result = apply_condition("another", "two")
    assert result.returncode == 1
    assert result.stderr.startswith('error: Apply failed with 1 conflict: conflict with "prober" with subresource '
                                    '"status": .status.conditions[type="Probed"].message\n'), result.stderr


def test_roles_without_rules_read_back_null(server: ServerProcess) -> None:
    for kind, name in (("Role", "norules"), ("ClusterRole", "norules")):
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name}}
        server.kubectl("create", "-f", "-", input=json.dumps(role))
        out = server.kubectl("get", kind.lower(), name, "-o", "json").stdout
        assert '"rules": null' in out
        assert yaml.safe_load(server.kubectl("get", kind.lower(), name, "-o", "yaml").stdout)["rules"] is None
    # An explicit empty list stays one.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "emptyrules"},
            "rules": []}
    assert json.loads(server.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(role)).stdout)["rules"] == []
