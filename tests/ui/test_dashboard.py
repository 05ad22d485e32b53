"""The web dashboard at /ui/ (issue 14) in a real headless Chromium against a real server on the secure
defaults (HTTPS, Node,RBAC) with simulated nodes: it refuses without credentials, signs in with a bearer
token, shows the nodes and their pods, follows a Deployment's scale through watch within a second, shows
an object's YAML, and shows only what RBAC allows."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.ui.conftest import ADMIN_TOKEN, SIMULATED_NODES, VIEWER_TOKEN, DashboardCluster, sign_in

COUNT_PODS = "(prefix) => [...document.querySelectorAll('#map .pod')].filter(e => e.dataset.key.startsWith(prefix))"


def _api_pods(cluster: DashboardCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(cluster.server.data_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"{cluster.server.url}/api/v1/namespaces/{namespace}/pods?labelSelector={selector}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return list(json.load(response)["items"])


def test_static_files_public_api_refused_without_credentials(cluster: DashboardCluster, page: Any) -> None:
    response = page.goto(cluster.ui)
    assert response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#login:not([hidden])")
    assert "refused the request without credentials" in page.inner_text("#login-reason")
    assert page.is_hidden("#main")
    # The API itself: no credentials, no data (anonymous gets nothing past RBAC either).
    context = ssl.create_default_context(cafile=str(cluster.server.data_dir / "pki" / "ca.crt"))
    try:
        urllib.request.urlopen(f"{cluster.server.url}/api/v1/pods", context=context, timeout=10)
        raise AssertionError("listing pods without credentials succeeded")
    except urllib.error.HTTPError as error:
        assert error.code in (401, 403)
    # Only the dashboard's own files skip the chain: any other path under /ui/ is an API request.
    with urllib.request.urlopen(f"{cluster.server.url}/ui/app.js", context=context, timeout=10) as script:
        assert script.headers["Content-Type"].startswith("text/javascript")
    try:
        urllib.request.urlopen(f"{cluster.server.url}/ui/secrets.json", context=context, timeout=10)
        raise AssertionError("an unknown /ui/ path was served without credentials")
    except urllib.error.HTTPError as error:
        assert error.code in (401, 403)
    # A wrong token is refused too, and the page says so.
    page.fill("#token", "not-a-token")
    page.press("#token", "Enter")
    page.wait_for_function("document.querySelector('#login-reason').textContent.includes('refused this token')")


def test_nodes_and_pods_live_and_scale(cluster: DashboardCluster, page: Any) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2")
    sign_in(page, cluster.ui, ADMIN_TOKEN)
    assert "signed in as dash-admin" in page.inner_text("#whoami")
    page.wait_for_function(f"document.querySelectorAll('#map .node.ready').length === {SIMULATED_NODES}",
                           timeout=10_000)
    names = sorted(page.eval_on_selector_all("#map .node.ready", "els => els.map(e => e.dataset.name)"))
    assert names == [f"sim-{i:04d}" for i in range(SIMULATED_NODES)]
    page.wait_for_function(f"({COUNT_PODS})('default/web-').filter(e => e.matches('.running.ready')).length === 2",
                           timeout=30_000)
    page.wait_for_selector("#workloads tr[data-key='Deployment/default/web'] td:nth-child(3):text('2/2')")

    cluster.kubectl("scale", "deployment", "web", "--replicas=5")
    # From the moment the API has five pods, the page shows them within a second (through its watch).
    deadline = time.monotonic() + 30
    while len(_api_pods(cluster, "default", "app=web")) < 5:
        assert time.monotonic() < deadline, "the deployment never got 5 pods"
        time.sleep(0.02)
    seen_api = time.monotonic()
    page.wait_for_function(f"({COUNT_PODS})('default/web-').length === 5", timeout=1_000)
    assert time.monotonic() - seen_api < 1.0
    # Their placement: each pod inside the box of the node the API says it runs on.
    page.wait_for_function(f"({COUNT_PODS})('default/web-').filter(e => e.matches('.ready')).length === 5",
                           timeout=30_000)
    placed = page.eval_on_selector_all(
        "#map .pod", "els => els.map(e => [e.dataset.key, e.closest('.node').dataset.name])")
    for pod in _api_pods(cluster, "default", "app=web"):
        assert [f"default/{pod['metadata']['name']}", pod["spec"]["nodeName"]] in placed
    page.wait_for_selector("#workloads tr[data-key='Deployment/default/web'] td:nth-child(3):text('5/5')")

    cluster.kubectl("scale", "deployment", "web", "--replicas=1")
    page.wait_for_function(f"({COUNT_PODS})('default/web-').length === 1", timeout=30_000)
    page.wait_for_selector("#events li .reason:text('ScalingReplicaSet')", timeout=10_000)


def test_keyboard_filter_and_yaml(cluster: DashboardCluster, page: Any, tmp_path: Path) -> None:
    cluster.kubectl("create", "deployment", "kbd", "--image=busybox", "--replicas=1")
    sign_in(page, cluster.ui, ADMIN_TOKEN)
    page.wait_for_function(f"({COUNT_PODS})('default/kbd-').length === 1", timeout=30_000)
    page.keyboard.press("/")
    page.keyboard.type("kbd-")
    page.wait_for_function("[...document.querySelectorAll('#map .pod:not(.filtered)')].length === 1")
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('kind: Pod')")
    name = page.get_attribute("#map .pod.selected", "data-key").split("/")[1]
    # The page's YAML reads back (PyYAML) as the very object the API serves.
    shown = yaml.safe_load(page.inner_text("#detail-body"))
    served = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)
    assert shown["metadata"]["name"] == name and shown["spec"] == served["spec"]
    assert shown["metadata"]["labels"] == served["metadata"]["labels"]
    page.screenshot(path=str(tmp_path / "yaml.png"))
    page.click("#show-json")
    page.wait_for_function("document.querySelector('#detail-body').dataset.format === 'json'")
    assert json.loads(page.inner_text("#detail-body"))["metadata"]["name"] == name
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")


def test_shows_only_what_rbac_allows(cluster: DashboardCluster, page: Any) -> None:
    cluster.kubectl("create", "namespace", "team-a")
    cluster.kubectl("create", "rolebinding", "viewer", "--clusterrole=view", "--user=viewer", "-n", "team-a")
    cluster.kubectl("create", "deployment", "mine", "--image=busybox", "-n", "team-a")
    sign_in(page, cluster.ui, VIEWER_TOKEN)
    # Cluster-wide lists are refused: the page says so instead of showing anything.
    page.wait_for_function("document.querySelector('#map-problem').textContent.includes('403 Forbidden')")
    assert page.eval_on_selector_all("#map .pod", "els => els.length") == 0
    page.once("dialog", lambda dialog: dialog.accept("team-a"))
    page.select_option("#namespace", "?")
    page.wait_for_function(f"({COUNT_PODS})('team-a/mine-').length === 1", timeout=30_000)
    assert page.eval_on_selector_all("#map .pod", "els => els.length") == 1
    page.wait_for_selector("#workloads tr[data-key='Deployment/team-a/mine']")
    # Signing out leaves nothing of this user's view behind.
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.eval_on_selector_all("#map .pod, #workloads tbody tr", "els => els.length") == 0
    assert page.evaluate("sessionStorage.length") == 0


def test_namespace_filter(cluster: DashboardCluster, page: Any) -> None:
    cluster.kubectl("create", "namespace", "team-b")
    cluster.kubectl("create", "deployment", "only-b", "--image=busybox", "-n", "team-b")
    cluster.kubectl("create", "deployment", "other", "--image=busybox")
    sign_in(page, cluster.ui, ADMIN_TOKEN)
    page.wait_for_function(f"({COUNT_PODS})('team-b/only-b-').length === 1 && "
                           f"({COUNT_PODS})('default/other-').length === 1", timeout=30_000)
    page.keyboard.press("n")
    page.select_option("#namespace", "team-b")
    # The watches restart on team-b alone: the other namespaces' pods and workloads leave the page.
    page.wait_for_function("[...document.querySelectorAll('#map .pod')].every(e => e.dataset.key.startsWith('team-b/'))"
                           f" && ({COUNT_PODS})('team-b/only-b-').length === 1", timeout=10_000)
    page.wait_for_function("JSON.stringify([...document.querySelectorAll('#workloads tbody tr')]"
                           ".map(r => r.dataset.key)) === '[\"Deployment/team-b/only-b\"]'", timeout=10_000)
