"""helm 3 against a pilothouse server: install, upgrade, rollback and uninstall of an everyday chart.

The chart is written by the test and holds what most published charts hold: a CRD in ``crds/``, a
ServiceAccount with a Role and RoleBinding, a ClusterRole, a Deployment, a Service, a ConfigMap, an
Ingress, a HorizontalPodAutoscaler and a PodDisruptionBudget. helm is the real binary (3.17, installed
by ``scripts/install-deps --tests`` from the npm registry); it stores releases as Secrets, discovers
resources and validates manifests against the server's OpenAPI, as against any cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
HELM = shutil.which("helm") or str(ROOT / ".venv" / "bin" / "helm")

pytestmark = pytest.mark.skipif(not os.access(HELM, os.X_OK),
                                reason="helm is not installed (scripts/install-deps --tests installs it)")

CHART_FILES = {
    "Chart.yaml": """\
        apiVersion: v2
        name: shop
        version: 0.1.0
        appVersion: "1.0"
        """,
    "values.yaml": """\
        replicas: 2
        message: hello
        """,
    "crds/widgets.yaml": """\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: widgets.shop.example.com
        spec:
          group: shop.example.com
          scope: Namespaced
          names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec:
                    type: object
                    properties:
                      size: {type: integer, default: 1}
        """,
    "templates/rbac.yaml": """\
        apiVersion: v1
        kind: ServiceAccount
        metadata:
          name: {{ .Release.Name }}-sa
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata:
          name: {{ .Release.Name }}-reader
        rules:
        - apiGroups: [""]
          resources: [configmaps]
          verbs: [get, list, watch]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata:
          name: {{ .Release.Name }}-reader
        roleRef:
          apiGroup: rbac.authorization.k8s.io
          kind: Role
          name: {{ .Release.Name }}-reader
        subjects:
        - kind: ServiceAccount
          name: {{ .Release.Name }}-sa
          namespace: {{ .Release.Namespace }}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata:
          name: {{ .Release.Name }}-{{ .Release.Namespace }}-widgets
        rules:
        - apiGroups: [shop.example.com]
          resources: [widgets]
          verbs: [get, list, watch]
        """,
    "templates/app.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data:
          message: {{ .Values.message | quote }}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-web
          labels: {app: {{ .Release.Name }}-web}
        spec:
          replicas: {{ .Values.replicas }}
          selector:
            matchLabels: {app: {{ .Release.Name }}-web}
          template:
            metadata:
              labels: {app: {{ .Release.Name }}-web}
              annotations:
                checksum/config: {{ .Values.message | sha256sum }}
            spec:
              serviceAccountName: {{ .Release.Name }}-sa
              containers:
              - name: web
                image: registry.example/web:1.0
                ports: [{containerPort: 8080, name: http}]
                resources: {requests: {cpu: 50m, memory: 32Mi}}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          selector: {app: {{ .Release.Name }}-web}
          ports: [{port: 80, targetPort: http}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          rules:
          - host: shop.example.com
            http:
              paths:
              - path: /
                pathType: Prefix
                backend:
                  service: {name: {{ .Release.Name }}-web, port: {number: 80}}
        ---
        apiVersion: autoscaling/v2
        kind: HorizontalPodAutoscaler
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ .Release.Name }}-web}
          minReplicas: {{ .Values.replicas }}
          maxReplicas: 10
          metrics:
          - type: Resource
            resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
        ---
        apiVersion: policy/v1
        kind: PodDisruptionBudget
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          minAvailable: 1
          selector:
            matchLabels: {app: {{ .Release.Name }}-web}
        """,
}


def write_chart(directory: Path) -> Path:
    chart = directory / "shop"
    for name, text in CHART_FILES.items():
        path = chart / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return chart


def helm(server: ServerProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir / "home"),
               HELM_CACHE_HOME=str(server.data_dir / "helm-cache"),
               HELM_CONFIG_HOME=str(server.data_dir / "helm-config"),
               HELM_DATA_HOME=str(server.data_dir / "helm-data"))
    result = subprocess.run([HELM, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def get_json(server: ServerProcess, *args: str) -> dict[str, object]:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)  # type: ignore[no-any-return]


def config_message(server: ServerProcess) -> object:
    return get_json(server, "configmap", "shop-config", "-n", "charts")["data"]["message"]  # type: ignore[index]


def test_chart_installs_upgrades_rolls_back_and_uninstalls(server: ServerProcess, tmp_path: Path) -> None:
    chart = write_chart(tmp_path)

    helm(server, "install", "shop", str(chart), "--namespace", "charts", "--create-namespace")
    # Every template's object exists, with helm's ownership labels and annotations.
    for kind in ("serviceaccount/shop-sa", "role/shop-reader", "rolebinding/shop-reader", "configmap/shop-config",
                 "deployment/shop-web", "service/shop-web", "ingress/shop-web", "hpa/shop-web", "pdb/shop-web"):
        obj = get_json(server, kind, "-n", "charts")
        metadata = obj["metadata"]
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm", kind  # type: ignore[index]
        assert metadata["annotations"]["meta.helm.sh/release-name"] == "shop", kind  # type: ignore[index]
    get_json(server, "clusterrole", "shop-charts-widgets")
    # The CRD from crds/ is installed first, and its kind is usable at once.
    crd = get_json(server, "crd", "widgets.shop.example.com")
    assert crd["spec"]["names"]["kind"] == "Widget"  # type: ignore[index]
    server.kubectl("apply", "-n", "charts", "-f", "-",
                   input="apiVersion: shop.example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {}\n")
    assert get_json(server, "wdg", "w1", "-n", "charts")["spec"] == {"size": 1}
    assert config_message(server) == "hello"
    listed = json.loads(helm(server, "list", "-n", "charts", "-o", "json").stdout)
    assert [(r["name"], r["revision"], r["status"]) for r in listed] == [("shop", "1", "deployed")]

    helm(server, "upgrade", "shop", str(chart), "-n", "charts", "--set", "message=upgraded", "--set", "replicas=3")
    assert config_message(server) == "upgraded"
    assert get_json(server, "deployment", "shop-web", "-n", "charts")["spec"]["replicas"] == 3  # type: ignore[index]

    helm(server, "rollback", "shop", "1", "-n", "charts")
    assert config_message(server) == "hello"
    assert get_json(server, "deployment", "shop-web", "-n", "charts")["spec"]["replicas"] == 2  # type: ignore[index]
    history = json.loads(helm(server, "history", "shop", "-n", "charts", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                               (3, "deployed")]
    # The release records are Secrets of helm's own type.
    secrets = get_json(server, "secrets", "-n", "charts", "-l", "owner=helm")
    assert sorted(s["type"] for s in secrets["items"]) == ["helm.sh/release.v1"] * 3  # type: ignore[index]

    helm(server, "uninstall", "shop", "-n", "charts")
    remaining = server.kubectl("get", "deployment,service,configmap,role,rolebinding,ingress,hpa,pdb",
                               "-n", "charts", "-l", "app.kubernetes.io/managed-by=Helm", "-o", "name").stdout
    assert remaining.strip() == ""
    for kind in ("deployment/shop-web", "configmap/shop-config", "role/shop-reader"):
        result = server.kubectl("get", kind, "-n", "charts", check=False)
        assert result.returncode != 0 and "NotFound" in result.stderr, kind
    assert server.kubectl("get", "clusterrole", "shop-charts-widgets", check=False).returncode != 0
    # helm keeps CRDs (and so their objects) on uninstall, as documented.
    get_json(server, "crd", "widgets.shop.example.com")
    assert helm(server, "list", "-n", "charts", "-o", "json").stdout.strip() == "[]"
