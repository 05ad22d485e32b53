"""The topology reader of host set-up: what it takes from a ``kind: Cluster`` file and what it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.cli.hostsetup.topology import Taint, TopologyError, load_topology, parse_topology

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-cluster.yaml"


def seed() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    return document


def test_seed_cluster_as_the_issue_describes_it() -> None:
    cluster = load_topology(SEED)
    assert [(h.name, h.role, h.address) for h in cluster.hosts] == [
        ("azure-prd-01", "server", "10.1.0.1"), ("azure-prd-02", "agent", "10.1.0.2"),
        ("azure-prd-03", "agent", "10.1.0.3"), ("azure-prd-04", "agent", "10.1.0.4"),
        ("ded-prd-01", "agent", "10.1.0.5")]
    for name in ("azure-prd-02", "azure-prd-03", "azure-prd-04"):
        assert cluster.host(name).labels == {"environment": "production", "host": "azure", "name": name}
    assert cluster.host("ded-prd-01").taints == (Taint("workload", "processing", "NoSchedule"),)
    assert cluster.network.service_range == "10.100.0.0/16" and cluster.server.name == "azure-prd-01"
    assert cluster.registry is not None and cluster.registry.server == "quay.io"
    # every host its own /24 of the pod range, by its place in the file
    assert [cluster.host_pod_cidr(h) for h in cluster.hosts] == [f"10.2.{i}.0/24" for i in range(5)]


def test_taints_in_kubectl_spelling() -> None:
    document = seed()
    document["hosts"][4]["taints"] = ["workload=processing:NoSchedule", "dedicated:NoExecute"]
    host = parse_topology(document).host("ded-prd-01")
    assert host.taints == (Taint("workload", "processing", "NoSchedule"), Taint("dedicated", "", "NoExecute"))
    assert [str(t) for t in host.taints] == ["workload=processing:NoSchedule", "dedicated:NoExecute"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["hosts"][2].update(name="azure-prd-02"), "hosts[2].name: 'azure-prd-02' is used twice"),
    (lambda d: d["hosts"][2].update(address="10.1.0.2"), "hosts[2].address: '10.1.0.2' is used twice"),
    (lambda d: d["hosts"][0].update(role="agent"), "hosts: no host has role server"),
    (lambda d: d["hosts"][1].update(name="Azure_02"), "hosts[1].name: a lowercase RFC 1123 subdomain"),
    (lambda d: d["hosts"][1]["labels"].update({"bad key!": "x"}), "hosts[1].labels.bad key!: name part must"),
    (lambda d: d["registry"].pop("password"), "registry.password: required"),
    (lambda d: d.update(hosts=[]), "hosts: must be a non-empty list of hosts"),
    (lambda d: d.update(components={"server": {"args": "--port 1"}}), "components.server.args: must be a list"),
])
def test_errors_name_the_field(change: Any, message: str) -> None:
    document = seed()
    change(document)
    with pytest.raises(TopologyError) as error:
        parse_topology(document, "cluster.yaml")
    assert str(error.value).startswith("cluster.yaml: ") and message in str(error.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="No such file or directory"):
        load_topology(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("hosts: [\n")
    with pytest.raises(TopologyError, match="not YAML"):
        load_topology(tmp_path / "bad.yaml")
