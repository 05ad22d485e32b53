"""The topology file (``kind: Cluster``), read by ``cluster create`` and ``cloud-config`` alike: the seed
example reads as the seed describes it, and bad files are refused with every problem named by its field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.machinery.topology import Taint, TopologyError, load_cluster, load_cluster_file, parse_cluster

EXAMPLE = Path(__file__).parents[2] / "examples" / "seed-cluster.yaml"


def _file(**changes: object) -> str:
    document = yaml.safe_load(EXAMPLE.read_text())
    document.update(changes)
    return yaml.safe_dump(document)


def test_seed_example_is_the_seeds_cluster() -> None:
    cluster = load_cluster(EXAMPLE.read_text())
    assert cluster.server.name == "azure-prd-01" and cluster.server.address == "10.1.0.1"
    assert cluster.network.service_range == "10.100.0.0/16"
    for name in ("azure-prd-02", "azure-prd-03", "azure-prd-04"):
        host = cluster.host(name)
        assert host.role == "agent"
        assert host.labels == {"environment": "production", "host": "azure", "name": name}
    ded = cluster.host("ded-prd-01")
    assert ded.labels["name"] == "ded-prd-01" and [str(t) for t in ded.taints] == ["workload=processing:NoSchedule"]
    # one pod range slice per host, none overlapping
    slices = [h.pod_cidr for h in cluster.hosts]
    assert slices == [f"10.2.{i}.0/24" for i in range(5)]
    assert '"quay.io"' in cluster.dockercfg()


def test_every_problem_is_named_by_its_field() -> None:
    text = _file(network={"hostSubnet": "10.1.0.0/24", "podCIDR": "10.2.0.0/30", "podSubnetPrefix": 30,
                          "serviceRange": "10.1.0.0/16"},
                 hosts=[{"name": "Azure_1", "role": "server", "address": "10.9.0.1"},
                        {"name": "b", "role": "server", "address": "10.1.0.254",
                         "taints": ["k=v:Sometimes"], "labels": {"bad key!": "x"}},
                        {"name": "b", "role": "agent", "address": "10.1.0.3"}])
    with pytest.raises(TopologyError) as caught:
        load_cluster(text)
    message = str(caught.value)
    for expected in ("network.serviceRange: 10.1.0.0/16 overlaps network.hostSubnet",
                     "hosts[0].name: 'Azure_1' must be a lowercase DNS subdomain",
                     "hosts[0].address: 10.9.0.1 must be a host address of network.hostSubnet",
                     "hosts[1].address: 10.1.0.254 must be a host address",  # the bridge's
                     "hosts[1].taints[0]: effect 'Sometimes'",
                     "hosts[1].labels[bad key!]",
                     "hosts[2].name: 'b' is listed twice",
                     "hosts[2]: network.podCIDR 10.2.0.0/30 has no /30 left",
                     "exactly one host must have role server (found 2"):
        assert expected in message, message


def test_shape_errors_come_from_the_schema() -> None:
    with pytest.raises(TopologyError) as caught:
        load_cluster(_file(apiVersion="v1", hosts=[{"name": "a", "role": "boss", "address": "10.1.0.1", "cpu": 2}]))
    message = str(caught.value)
    assert "apiVersion: 'pilothouse.io/v1alpha1' was expected" in message
    assert "hosts[0].role: 'boss' is not one of ['server', 'agent']" in message
    assert "'cpu' was unexpected" in message


def test_cluster_create_refuses_a_bad_file_before_touching_the_machine(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_file(hosts=[{"name": "a", "role": "agent", "address": "10.1.0.2"}]))
    result = subprocess.run([sys.executable, "-m", "pilothouse", "cluster", "create", "-f", str(bad),
                             "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "exactly one host must have role server (found 0" in result.stderr
    assert not (tmp_path / "state").exists()


def test_agent_register_with_taints_takes_kubelets_spelling() -> None:
    from pilothouse.components.agent.agent import parse_taints

    assert parse_taints("workload=processing:NoSchedule, node-role.kubernetes.io/control-plane:NoExecute") == [
        {"key": "workload", "value": "processing", "effect": "NoSchedule"},
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoExecute"}]
    with pytest.raises(ValueError, match="want key=value:Effect"):
        parse_taints("workload=processing")


def test_taints_in_kubectl_spelling_or_as_objects() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["hosts"][4]["taints"] = ["workload=processing:NoSchedule", "dedicated:NoExecute",
                                      {"key": "gpu", "effect": "PreferNoSchedule"}]
    host = parse_cluster(document).host("ded-prd-01")
    assert host.taints == (Taint("workload", "processing", "NoSchedule"), Taint("dedicated", "", "NoExecute"),
                           Taint("gpu", "", "PreferNoSchedule"))
    assert [str(t) for t in host.taints] == ["workload=processing:NoSchedule", "dedicated:NoExecute",
                                             "gpu:PreferNoSchedule"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["hosts"][2].update(address="10.1.0.2"), "hosts[2].address: 10.1.0.2 is used twice"),
    (lambda d: d["hosts"][0].update(role="agent"), "exactly one host must have role server (found 0"),
    (lambda d: d["registry"].pop("password"), "registry: give username and password, or auth"),
    (lambda d: d.update(hosts=[]), "hosts: [] should be non-empty"),
    (lambda d: d.update(components={"server": {"args": "--port 1"}}), "components.server.args: '--port 1' is not of"),
])
def test_more_problems_named_by_field(change: Any, message: str) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    change(document)
    with pytest.raises(TopologyError) as caught:
        parse_cluster(document)
    assert message in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"missing\.yaml: No such file or directory"):
        load_cluster_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("hosts: [\n")
    with pytest.raises(TopologyError, match="not YAML"):
        load_cluster_file(tmp_path / "bad.yaml")
