"""Two clusters side by side on this machine, each with its own bridge, subnet and namespaces; a third
that would reuse a range, or a name, is refused before it touches anything. Simulated-engine hosts
(no containers) keep this quick."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pilothouse.cli.cluster.layout import Layout
from tests.conftest import KUBECTL

pytestmark = pytest.mark.timeout(600)


def _topology(directory: Path, name: str, octet: int) -> Path:
    document = {
        "apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "network": {"hostSubnet": f"10.{octet}.0.0/24", "podCIDR": f"10.{octet + 1}.0.0/16",
                    "serviceRange": f"10.{octet + 2}.0.0/16"},
        "hosts": [{"name": "control", "role": "server", "address": f"10.{octet}.0.1", "agent": False},
                  {"name": "node-1", "role": "agent", "address": f"10.{octet}.0.2", "engine": "simulated",
                   "labels": {"cluster": name}},
                  {"name": "node-2", "role": "agent", "address": f"10.{octet}.0.3", "engine": "simulated"}],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilothouse", "cluster", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("network namespaces need root and nsenter")
    directory = Path(tempfile.mkdtemp(prefix="pilothouse-sbs-"))  # outside pytest's pruned basetemp
    yield directory
    for topology in directory.glob("state/*/cluster.yaml"):
        _cli(directory / "state", "delete", topology.parent.name)
    shutil.rmtree(directory, ignore_errors=True)


def test_two_clusters_side_by_side(state_dir: Path) -> None:
    state = state_dir / "state"
    suffix = os.urandom(2).hex()
    names = [f"left-{suffix}", f"right-{suffix}"]
    for name, octet in zip(names, (221, 225), strict=True):
        result = _cli(state, "create", "-f", str(_topology(state_dir, name, octet)), "--wait", "120")
        assert result.returncode == 0, result.stderr
        assert "node-1: node Ready" in result.stderr and "node-2: node Ready" in result.stderr

    listing = _cli(state, "list").stdout
    for name in names:
        assert f"{name:<20} running  3/3" in listing, listing
    layouts = [Layout(state / name) for name in names]
    assert layouts[0].bridge != layouts[1].bridge
    for name in names:
        kubeconfig = state_dir / f"{name}.kubeconfig"
        kubeconfig.write_text(_cli(state, "kubeconfig", name).stdout)
        assert yaml.safe_load(kubeconfig.read_text())["current-context"] == f"pilothouse-{name}"
        nodes = json.loads(subprocess.run([KUBECTL, "get", "nodes", "-o", "json"], capture_output=True, text=True,
                                          check=True, env={**os.environ, "KUBECONFIG": str(kubeconfig),
                                                           "HOME": str(state_dir)}).stdout)["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2"]
        assert [n["metadata"]["labels"].get("cluster") for n in nodes] == [name, None]

    # a third cluster on the first one's subnet, and a second cluster of the same name, are refused
    clash = _cli(state, "create", "-f", str(_topology(state_dir, f"clash-{suffix}", 221)), "--wait", "0")
    assert clash.returncode == 1
    assert "network.hostSubnet 10.221.0.0/24 overlaps the route to 10.221.0.0/24" in clash.stderr, clash.stderr
    assert not (state / f"clash-{suffix}").exists()
    again = _cli(state, "create", "-f", str(_topology(state_dir, names[0], 229)), "--wait", "0")
    assert again.returncode == 1 and f"cluster {names[0]} already exists" in again.stderr

    for name, layout in zip(names, layouts, strict=True):
        assert _cli(state, "delete", name).returncode == 0
        assert layout.bridge not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        assert f"pilothouse-{name}-" not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert _cli(state, "list").stdout.strip().splitlines()[1:] == []
