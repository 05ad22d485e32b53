"""``pilothouse cloud-config`` for every host of the seed cluster, checked by the real tools.

Each host's user-data must pass Debian's ``cloud-init schema --config-file``, and every unit it
writes must pass ``systemd-analyze verify`` in a root where the user-data's files are applied. The
helper scripts run as rendered against a real server, and the server's command line as rendered
starts a real server.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cloudinit.hostroot import exec_programs, make_root, provide_program, verify_unit, write_files
from tests.conftest import free_port, terminate, wait_healthy

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed-cluster.yaml"
TOKEN = "abcdef.0123456789abcdef"
VENV = "/opt/pilothouse/venv/"
KUBECTL = "/opt/pilothouse/bin/kubectl"

pytestmark = [
    pytest.mark.skipif(shutil.which("cloud-init") is None,
                       reason="cloud-init is not installed (scripts/install-deps --tests)"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"),
]


def pilothouse(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pilothouse", *args], capture_output=True, text=True,
                            timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"pilothouse {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


def seed_hosts() -> list[tuple[str, str]]:
    hosts = yaml.safe_load(SEED.read_text())["hosts"]
    cases = [(h["name"], h["role"]) for h in hosts]
    return cases + [(h["name"], "register") for h in hosts if h["role"] == "agent"]


def render(host: str, role: str, topology: Path = SEED) -> str:
    return pilothouse("cloud-config", "--role", role, "-f", str(topology), "--host", host, "--token", TOKEN).stdout


def units_of(config: dict[str, Any]) -> dict[str, str]:
    return {Path(f["path"]).name: f["content"] for f in config["write_files"]
            if f["path"].startswith("/etc/systemd/system/")}


def exec_start(unit_text: str, key: str = "ExecStart") -> list[str]:
    line = next(line for line in unit_text.replace("\\\n", " ").splitlines() if line.startswith(f"{key}="))
    return shlex.split(line.split("=", 1)[1])


def host_root(tmp_path: Path, config: dict[str, Any]) -> Path:
    root = make_root(tmp_path / "root")
    write_files(root, config["write_files"])
    for text in units_of(config).values():
        for program in exec_programs(text):
            provide_program(root, program, (VENV, KUBECTL))
    return root


@pytest.mark.parametrize(("host", "role"), seed_hosts())
def test_seed_host_passes_cloud_init_schema_and_systemd_verify(host: str, role: str, tmp_path: Path) -> None:
    text = render(host, role)
    assert text.startswith("#cloud-config\n")
    (tmp_path / "user-data").write_text(text)
    schema = subprocess.run(["cloud-init", "schema", "--config-file", str(tmp_path / "user-data")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "Valid cloud-config" in schema.stdout

    config = yaml.safe_load(text)
    units = units_of(config)
    expected = {"server": {"pilothouse-server.service"}, "agent": {"pilothouse-agent.service"},
                "register": {"pilothouse-agent.service", "pilothouse-register.service"}}[role]
    assert set(units) == {"pilothouse.target", "pilothouse-install.service", *expected}
    root = host_root(tmp_path, config)
    for name in units:
        result = verify_unit(root, name)
        # verify warns (unknown keys, bad values) on stderr with exit code 0: both must be clean
        assert (result.returncode, result.stderr, result.stdout) == (0, "", ""), f"{name}: {result.stderr}"
    # the runcmd enables every unit the file writes
    enable = next(c for c in config["runcmd"] if c.startswith("systemctl enable"))
    assert set(enable.split()[2:]) == set(units)


def test_seed_agent_units_are_ordered_and_checked() -> None:
    config = yaml.safe_load(render("ded-prd-01", "register"))
    units = units_of(config)
    agent = units["pilothouse-agent.service"]
    assert "Requires=pilothouse-install.service pilothouse-register.service" in agent
    assert "After=network-online.target pilothouse-install.service pilothouse-register.service" in agent
    assert "Restart=always" in agent and "RestartSec=10" in agent
    assert exec_start(agent, "ExecStartPre") == ["/opt/pilothouse/bin/wupiao", "10.1.0.1:6443"]
    assert "ExecStartPre=/opt/pilothouse/bin/wait-healthz https://10.1.0.1:6443" in agent
    args = exec_start(agent)
    labels = "environment=production,host=dedicated,name=ded-prd-01,workload=processing"
    assert args[args.index("--node-labels") + 1] == labels
    assert args[args.index("--register-with-taints") + 1] == "workload=processing:NoSchedule"
    assert args[args.index("--token") + 1] == "${PILOTHOUSE_TOKEN}" and "--register-node=false" in args
    assert args[args.index("--pod-cidr") + 1] == "10.2.4.0/24"  # the fifth host's share of the seed file's 10.2.0.0/16
    register = units["pilothouse-register.service"]
    assert "Before=pilothouse-agent.service" in register
    assert exec_start(register) == ["/opt/pilothouse/bin/register_node.sh", "ded-prd-01", "http://10.1.0.1:8080",
                                    "production"]
    files = {f["path"]: f for f in config["write_files"]}
    assert files["/etc/pilothouse/agent.env"]["content"] == f"PILOTHOUSE_TOKEN={TOKEN}\n"
    assert files["/etc/pilothouse/agent.env"]["permissions"] == "0600"
    dockercfg = yaml.safe_load(files["/var/lib/pilothouse/agent/.dockercfg"]["content"])
    assert dockercfg == {"quay.io": {"auth": "c2VlZDpQQVNTV09SRA==", "email": ""}}  # seed:PASSWORD
    assert "| /opt/pilothouse/bin/kubectl create -s" in files["/opt/pilothouse/bin/register_node.sh"]["content"]


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit that needs a unit the host does not have is refused."""
    config = yaml.safe_load(render("azure-prd-02", "agent"))
    root = host_root(tmp_path, config)
    unit = root / "etc/systemd/system/pilothouse-agent.service"
    unit.write_text(unit.read_text().replace("Requires=pilothouse-install.service", "Requires=missing.service"))
    result = verify_unit(root, "pilothouse-agent.service")
    assert result.returncode != 0 and "missing.service" in result.stderr


def test_topology_errors_name_the_field(tmp_path: Path) -> None:
    document = yaml.safe_load(SEED.read_text())
    cases = [
        (("hosts", 2, "address"), "10.1.0.x", "hosts[2].address: '10.1.0.x' is not an IPv4 address"),
        (("hosts", 4, "taints", 0, "effect"), "Sometimes", "hosts[4].taints[0]: effect 'Sometimes': must be one of"),
        (("hosts", 1, "role"), "worker", "hosts[1].role: 'worker' is not one of ['server', 'agent']"),
        (("network", "serviceRange"), "10.100.0.0/33", "network.serviceRange: '10.100.0.0/33' is not an IPv4 CIDR"),
        (("kind",), "Pod", "kind: 'Cluster' was expected"),
    ]
    for path, value, message in cases:
        broken = yaml.safe_load(yaml.safe_dump(document))
        node = broken
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        topology = tmp_path / "cluster.yaml"
        topology.write_text(yaml.safe_dump(broken))
        result = pilothouse("cloud-config", "--role", "agent", "-f", str(topology), "--host", "azure-prd-02",
                            "--token", TOKEN, check=False)
        assert result.returncode == 1 and f"Error: {topology}: invalid cluster file:" in result.stderr
        assert f"\n  {message}" in result.stderr, result.stderr
    result = pilothouse("cloud-config", "--role", "agent", "-f", str(SEED), "--host", "nowhere", "--token", TOKEN,
                        check=False)
    assert "no host 'nowhere' in cluster 'seed' (hosts: azure-prd-01, azure-prd-02" in result.stderr
    result = pilothouse("cloud-config", "--role", "agent", "-f", str(SEED), "--host", "azure-prd-02", check=False)
    assert result.returncode == 1 and "an agent joins with a token: pass --token" in result.stderr
    result = pilothouse("cloud-config", "--role", "server", "-f", str(SEED), "--host", "azure-prd-02", check=False)
    assert "host 'azure-prd-02' has role agent in the topology, not server" in result.stderr


def script(config: dict[str, Any], name: str, tmp_path: Path) -> Path:
    entry = next(f for f in config["write_files"] if f["path"].endswith(f"/bin/{name}"))
    path = tmp_path / name
    path.write_text(entry["content"])
    path.chmod(0o755)
    return path


def test_wupiao_waits_for_the_port(tmp_path: Path) -> None:
    wupiao = script(yaml.safe_load(render("azure-prd-02", "agent")), "wupiao", tmp_path)
    port = free_port()
    closed = subprocess.run([str(wupiao), f"127.0.0.1:{port}", "2"], capture_output=True, text=True, timeout=30)
    assert closed.returncode == 1 and f"wupiao: 127.0.0.1:{port} is not open" in closed.stderr
    listener = socket.socket()

    def open_later() -> None:
        time.sleep(1.5)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    thread = threading.Thread(target=open_later)
    started = time.monotonic()
    thread.start()
    try:
        opened = subprocess.run([str(wupiao), f"127.0.0.1:{port}", "30"], capture_output=True, text=True, timeout=40)
    finally:
        thread.join()
        listener.close()
    assert opened.returncode == 0 and time.monotonic() - started >= 1.5


def test_rendered_server_command_serves_and_wait_healthz_sees_ok(tmp_path: Path) -> None:
    """The server unit's command line, as rendered, starts a real server that its own ExecStartPost
    (wait-healthz over HTTPS) finds healthy; an agent's wait-healthz on a stopped server gives up."""
    config = yaml.safe_load(render("azure-prd-01", "server"))
    units = units_of(config)
    args = exec_start(units["pilothouse-server.service"])
    assert args[:2] == ["/opt/pilothouse/venv/bin/pilothouse", "server"]
    port, insecure = free_port(), free_port()
    local = {"--data-dir": str(tmp_path / "data"), "--bind-address": "127.0.0.1", "--insecure-port": str(insecure),
             "--insecure-bind-address": "127.0.0.1", "--tls-san": "127.0.0.1"}
    argv = [local.get(args[i - 1], a) for i, a in enumerate(args)][2:]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", *argv, "--port", str(port),
                                "--disable", "scheduler,controller-manager"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{insecure}", process)
        healthz = exec_start(units["pilothouse-server.service"], "ExecStartPost")
        assert healthz == ["/opt/pilothouse/bin/wait-healthz", "https://10.1.0.1:6443"]
        waiter = script(config, "wait-healthz", tmp_path)
        result = subprocess.run([str(waiter), f"https://127.0.0.1:{port}", "30"], capture_output=True, text=True,
                                timeout=60)
        assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    finally:
        terminate(process)
        log.close()
    result = subprocess.run([str(waiter), f"https://127.0.0.1:{port}", "3"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "answered '', not 'ok'" in result.stderr


def test_rendered_agent_flags_are_agent_flags() -> None:
    config = yaml.safe_load(render("ded-prd-01", "register"))
    args = exec_start(units_of(config)["pilothouse-agent.service"])
    accepted = pilothouse("agent", "--help").stdout
    missing = [a.split("=")[0] for a in args[2:] if a.startswith("--") and a.split("=")[0] not in accepted]
    assert missing == []


def test_server_unit_for_the_seed_master_is_start_means_healthy() -> None:
    server = units_of(yaml.safe_load(render("azure-prd-01", "server")))["pilothouse-server.service"]
    args = exec_start(server)
    assert args[args.index("--service-cluster-ip-range") + 1] == "10.100.0.0/16"
    assert "--secure" in args and args[args.index("--insecure-port") + 1] == "8080"
    assert "Requires=pilothouse-install.service" in server and "Restart=always" in server


def test_install_unit_pins_the_rendering_version() -> None:
    from pilothouse import __version__

    install = units_of(yaml.safe_load(render("azure-prd-01", "server")))["pilothouse-install.service"]
    assert "ConditionPathExists=!/opt/pilothouse/venv/bin/pilothouse" in install
    assert exec_start(install) == ["/usr/bin/python3", "-m", "venv", "/opt/pilothouse/venv"]
    assert f"-m pip install --upgrade pilothouse=={__version__}" in install
