"""The OpenAPI v3 documents, read by the real kubectl: ``explain`` must find and print the schemas."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pilothouse.machinery.kinds.types import ResourceType, ScaleSpec, Strategy
from pilothouse.machinery.openapi import openapi_v3_document_bytes, openapi_v3_index

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")

REQUESTS = web.AppKey("requests", list)
RESOURCES = [
    ResourceType("", "v1", "Pod", "pods", True, status_strategy=Strategy(), short_names=("po",)),
    ResourceType("", "v1", "Namespace", "namespaces", False, status_strategy=Strategy(), short_names=("ns",)),
    ResourceType("apps", "v1", "Deployment", "deployments", True, status_strategy=Strategy(),
                 scale=ScaleSpec(), short_names=("deploy",)),
]


def _resource_list(group_version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rt in RESOURCES:
        if rt.group_version != group_version:
            continue
        resources.append({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                          "kind": rt.kind, "verbs": list(rt.verbs), "shortNames": list(rt.short_names)})
        for sub in rt.subresources:
            kind = "Scale" if sub == "scale" else rt.kind
            entry = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                     "kind": kind, "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1")
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}


def _app() -> web.Application:
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                                  "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
                                  "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})

    async def apis(_: web.Request) -> web.Response:
        gv = {"groupVersion": "apps/v1", "version": "v1"}
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [gv], "preferredVersion": gv}]})

    async def core_v1(_: web.Request) -> web.Response:
        return web.json_response(_resource_list("v1"))

    async def apps_v1(_: web.Request) -> web.Response:
        return web.json_response(_resource_list("apps/v1"))

    async def index(_: web.Request) -> web.Response:
        return web.json_response(openapi_v3_index(RESOURCES))

    async def document(request: web.Request) -> web.Response:
        found = openapi_v3_document_bytes(request.match_info["gv"], RESOURCES)
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type="application/json", headers={"Etag": f'"{found[1]}"'})

    # Just enough of a deployments endpoint for `kubectl apply` (create, then patch).
    stored: dict[str, Any] = {}
    requests: list[tuple[str, str, str]] = []
    app = web.Application()
    app[REQUESTS] = requests

    async def get_deployment(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in stored:
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": f'deployments.apps "{name}" not found', "reason": "NotFound",
                 "details": {"name": name, "group": "apps", "kind": "deployments"}, "code": 404},
                status=404)
        return web.json_response(stored[name])

    async def create_deployment(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(("POST", request.query_string, request.content_type))
        body["metadata"].update(uid="u1", resourceVersion="1", namespace="default")
        stored[body["metadata"]["name"]] = body
        return web.json_response(body, status=201)

    async def patch_deployment(request: web.Request) -> web.Response:
        patch = await request.json()
        requests.append(("PATCH", request.query_string, request.content_type))
        current = stored[request.match_info["name"]]
        current["spec"]["replicas"] = patch.get("spec", {}).get("replicas", current["spec"].get("replicas"))
        return web.json_response(current)

    item = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    app.router.add_get(item, get_deployment)
    app.router.add_patch(item, patch_deployment)
    app.router.add_post("/apis/apps/v1/namespaces/{namespace}/deployments", create_deployment)
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core_v1)
    app.router.add_get("/apis/apps/v1", apps_v1)
    app.router.add_get("/openapi/v3", index)
    app.router.add_get("/openapi/v3/{gv:.+}", document)
    return app


@pytest.fixture
def app() -> web.Application:
    return _app()


@pytest.fixture
async def server_url(app: web.Application) -> Any:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _kubectl(url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + url + "\n"
        "users:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--cache-dir", str(tmp_path / "cache"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_explain_deployment_spec(server_url: str, tmp_path: Path) -> None:
    code, out, err = await _kubectl(server_url, tmp_path, "explain", "deployment.spec")
    assert code == 0, err
    assert "KIND:       Deployment" in out
    assert "replicas\t<integer>" in out
    assert "Number of desired pods" in out
    assert "template\t<PodTemplateSpec> -required-" in out


async def test_explain_follows_refs_into_core_types(server_url: str, tmp_path: Path) -> None:
    code, out, err = await _kubectl(server_url, tmp_path, "explain", "pods.spec.containers.resources")
    assert code == 0, err
    assert "limits\t<map[string]" in out, out
    code, out, err = await _kubectl(server_url, tmp_path, "explain", "ns")
    assert code == 0, err
    assert "Namespace provides a scope for Names." in out


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
"""


async def test_apply_uses_server_side_validation_and_openapi_patches(
        app: web.Application, server_url: str, tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(DEPLOYMENT.format(replicas=1))
    code, out, err = await _kubectl(server_url, tmp_path, "apply", "-f", str(manifest))
    assert code == 0, err
    assert "deployment.apps/web created" in out
    manifest.write_text(DEPLOYMENT.format(replicas=3))
    code, out, err = await _kubectl(server_url, tmp_path, "apply", "-f", str(manifest))
    assert code == 0, err
    # kubectl computed the strategic merge patch from our schemas without falling back.
    assert "error calculating patch" not in err
    assert err == ""
    (post, post_query, _), (patch, patch_query, patch_type) = app[REQUESTS]
    assert post == "POST" and "fieldValidation=Strict" in post_query
    assert patch == "PATCH" and "fieldValidation=Strict" in patch_query
    assert patch_type == "application/strategic-merge-patch+json"
