"""A real server host with ``controlPlane: static-pods``: kubeadm's phases as units.

The seed's server host rendered the static-pods way must pass ``cloud-init schema`` and
``systemd-analyze verify`` like the other hosts; the plan must hold the server's static pod in the
agent's ``--pod-manifest-path``; ``pilothouse control-plane init`` must make credentials a real server
started on that data dir accepts; ``install --control-plane static-pods`` writes and enables the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.cli.cluster.image import PYTHON, SITE
from pilothouse.cli.hostsetup.plan import CLOUD_LAYOUT, CONTROL_PLANE_UNIT, STATIC_IMAGE, Settings, plan_host
from tests.cloudinit.hostroot import CONSOLE_SCRIPT, make_root, verify_unit
from tests.cloudinit.test_cloud_config import SEED, TOKEN, exec_start, host_root, pilothouse, units_of
from tests.cloudinit.test_install import verify_all
from tests.conftest import free_port, terminate, wait_healthy

STATIC_UNITS = {"pilothouse.target", "pilothouse-install.service", CONTROL_PLANE_UNIT, "pilothouse-agent.service"}

needs_tools = pytest.mark.skipif(shutil.which("cloud-init") is None or shutil.which("systemd-analyze") is None,
                                 reason="cloud-init and systemd-analyze are needed (scripts/install-deps --tests)")


def static_topology(tmp_path: Path) -> Path:
    """The seed file with ``controlPlane: static-pods``."""
    document = yaml.safe_load(SEED.read_text())
    document["controlPlane"] = "static-pods"
    path = tmp_path / "static.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def check_user_data(text: str, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "user-data").write_text(text)
    schema = subprocess.run(["cloud-init", "schema", "--config-file", str(tmp_path / "user-data")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert schema.returncode == 0 and "Valid cloud-config" in schema.stdout, schema.stdout + schema.stderr
    config: dict[str, Any] = yaml.safe_load(text)
    units = units_of(config)
    assert set(units) == STATIC_UNITS
    root = host_root(tmp_path, config)
    for name in units:
        result = verify_unit(root, name)
        assert (result.returncode, result.stderr, result.stdout) == (0, "", ""), f"{name}: {result.stderr}"
    enable = next(c for c in config["runcmd"] if c.startswith("systemctl enable"))
    assert set(enable.split()[2:]) == STATIC_UNITS
    return config


@needs_tools
def test_seed_server_static_pods_passes_schema_and_verify(tmp_path: Path) -> None:
    text = pilothouse("cloud-config", "--role", "server", "-f", str(SEED), "--host", "azure-prd-01",
                      "--control-plane", "static-pods").stdout
    config = check_user_data(text, tmp_path)
    units = units_of(config)
    control_plane, agent = units[CONTROL_PLANE_UNIT], units["pilothouse-agent.service"]
    assert "Before=pilothouse-agent.service" in control_plane and "Type=oneshot" in control_plane
    assert "Requires=pilothouse-install.service pilothouse-control-plane.service" in agent
    init = exec_start(control_plane)
    assert init[:3] == ["/opt/pilothouse/venv/bin/pilothouse", "control-plane", "init"]
    assert init[init.index("--image") + 1] == STATIC_IMAGE
    args = exec_start(agent)
    # the agent's credentials are the ones init writes; no join, no wait for a server it starts itself
    for flag in ("--kubeconfig", "--proxy-kubeconfig", "--network-policy-kubeconfig"):
        assert args[args.index(flag) + 1] == init[init.index(flag) + 1]
    assert "--server" not in args and "--token" not in args and "ExecStartPre=/opt/pilothouse/bin/wupiao" not in agent
    # NodeRestriction refuses node-role labels from a kubelet: the taint stays, the label does not
    assert "--node-labels" not in args
    assert args[args.index("--register-with-taints") + 1] == "node-role.kubernetes.io/control-plane:NoSchedule"
    accepted = pilothouse("agent", "--help").stdout
    assert [a for a in args[2:] if a.startswith("--") and a not in accepted] == []
    accepted = pilothouse("control-plane", "init", "--help").stdout
    assert [a for a in init[3:] if a.startswith("--") and a not in accepted] == []
    files = {f["path"]: f for f in config["write_files"]}
    manifest = files[f"{args[args.index('--pod-manifest-path') + 1]}/pilothouse-server.yaml"]
    assert manifest["permissions"] == "0600"
    assert yaml.safe_load(manifest["content"])["spec"]["containers"][0]["image"] == STATIC_IMAGE


@needs_tools
def test_topology_control_plane_is_the_default(tmp_path: Path) -> None:
    topology = static_topology(tmp_path)
    text = pilothouse("cloud-config", "--role", "server", "-f", str(topology), "--host", "azure-prd-01").stdout
    assert set(units_of(yaml.safe_load(text))) == STATIC_UNITS
    forced = pilothouse("cloud-config", "--role", "server", "-f", str(topology), "--host", "azure-prd-01",
                        "--control-plane", "processes").stdout
    assert "pilothouse-server.service" in units_of(yaml.safe_load(forced))
    # an agent host of a static-pods cluster joins as before
    agent = pilothouse("cloud-config", "--role", "agent", "-f", str(topology), "--host", "azure-prd-02",
                       "--token", TOKEN).stdout
    assert set(units_of(yaml.safe_load(agent))) == {"pilothouse.target", "pilothouse-install.service",
                                                   "pilothouse-agent.service"}


def test_plan_holds_the_server_static_pod() -> None:
    settings = Settings(role="server", node_name="cp-1", server_url="https://10.1.0.1:6443", address="10.1.0.1",
                        service_range="10.100.0.0/16", extra_args=("--disable", "scheduler"),
                        control_plane="static-pods")
    plan = plan_host(settings, CLOUD_LAYOUT)
    files = {f.path: f for f in plan.files}
    manifest = yaml.safe_load(files["/etc/kubernetes/manifests/pilothouse-server.yaml"].content)
    assert (manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == ("pilothouse-server", "kube-system")
    spec = manifest["spec"]
    assert spec["hostNetwork"] is True
    (container,) = spec["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (STATIC_IMAGE, "IfNotPresent")
    assert container["command"][:4] == [PYTHON, "-m", "pilothouse", "server"]
    command = container["command"]
    assert command[command.index("--data-dir") + 1] == "/var/lib/pilothouse/server"
    assert command[command.index("--service-cluster-ip-range") + 1] == "10.100.0.0/16"
    assert command[-2:] == ["--disable", "scheduler"] and "--secure" in command
    assert container["env"] == [{"name": "PYTHONPATH", "value": SITE}]
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"host": "10.1.0.1", "path": "/livez", "port": 6443, "scheme": "HTTPS"}
    (volume,) = spec["volumes"]
    assert volume["hostPath"] == {"path": "/var/lib/pilothouse/server", "type": "DirectoryOrCreate"}
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/var/lib/pilothouse/server"}]
    assert "pilothouse-server.service" not in {u.name for u in plan.units}
    assert "podman" in plan.packages
    # a server port other than 6443 reaches the probe
    other = plan_host(Settings(role="server", node_name="cp-1", server_url="https://10.1.0.1:7443",
                               control_plane="static-pods"), CLOUD_LAYOUT)
    text = next(f.content for f in other.files if f.path.endswith("/pilothouse-server.yaml"))
    probe = yaml.safe_load(text)["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    assert (probe["host"], probe["port"]) == ("127.0.0.1", 7443)


def test_control_plane_init_credentials_are_accepted_by_the_server(tmp_path: Path) -> None:
    """init's CA and kubelet.conf, then a real server on that data dir: the agent is system:node:<host>."""
    port, data = free_port(), tmp_path / "server"
    kubeconfigs = {flag: tmp_path / "agent" / name for flag, name in (
        ("--kubeconfig", "kubelet.conf"), ("--proxy-kubeconfig", "proxy.conf"),
        ("--network-policy-kubeconfig", "network-policy.conf"))}
    init = ["control-plane", "init", "--data-dir", str(data), "--address", "127.0.0.1", "--server",
            f"https://127.0.0.1:{port}", "--node-name", "cp-1", "--image", STATIC_IMAGE, "--skip-image"]
    for flag, path in kubeconfigs.items():
        init += [flag, str(path)]
    pilothouse(*init)
    ca = (data / "pki" / "ca.crt").read_bytes()
    assert oct(kubeconfigs["--kubeconfig"].stat().st_mode & 0o777) == "0o600"
    pilothouse(*init)  # again: nothing is replaced
    assert (data / "pki" / "ca.crt").read_bytes() == ca
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data), "--secure",
                                "--bind-address", "127.0.0.1", "--port", str(port), "--authorization-mode",
                                "Node,RBAC", "--disable", "scheduler,controller-manager"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"https://127.0.0.1:{port}", process, ca=data / "pki" / "ca.crt")
        users = {}
        for flag, path in kubeconfigs.items():
            result = subprocess.run(["kubectl", "--kubeconfig", str(path), "auth", "whoami", "-o", "json"],
                                    capture_output=True, text=True, timeout=60, check=False)
            assert result.returncode == 0, result.stderr
            users[flag] = json.loads(result.stdout)["status"]["userInfo"]
        assert users["--kubeconfig"]["username"] == "system:node:cp-1"
        assert "system:nodes" in users["--kubeconfig"]["groups"]
        assert users["--proxy-kubeconfig"]["username"] == "system:kube-proxy"
    finally:
        terminate(process)
        log.close()


@pytest.mark.skipif(shutil.which("systemctl") is None or shutil.which("systemd-analyze") is None,
                    reason="systemd's tools are not installed")
def test_install_static_pods_server_under_root(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    result = subprocess.run([sys.executable, "-m", "pilothouse", "install", "--role", "server", "--address",
                             "10.1.0.1", "--control-plane", "static-pods", "--root", str(root)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    units = root / "etc/systemd/system"
    assert not (units / "pilothouse-server.service").exists()
    init = exec_start((units / CONTROL_PLANE_UNIT).read_text())
    assert init[:3] == [str(CONSOLE_SCRIPT), "control-plane", "init"]
    manifest = yaml.safe_load((root / "etc/kubernetes/manifests/pilothouse-server.yaml").read_text())
    assert manifest["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == "10.1.0.1"
    assert (units / "pilothouse.target.wants" / CONTROL_PLANE_UNIT).is_symlink()
    verify_all(root)
    removed = subprocess.run([sys.executable, "-m", "pilothouse", "uninstall", "--root", str(root)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert removed.returncode == 0 and not (root / "etc/kubernetes/manifests/pilothouse-server.yaml").exists()
