"""The agent's pod address management (pilothouse.components.agent.podnet): no root needed, the
allocation files live in a temp dir. Wiring (veth, routes) is covered end to end in test_agent_pods."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pilothouse.components.agent.podnet import PodNetwork, PodNetworkError


def _network(root: Path, cidr: str) -> PodNetwork:
    network = PodNetwork(cidr, bridge="t0", ipam_root=root)
    network.ipam_dir.mkdir(parents=True, exist_ok=True)  # setup() does this, along with the bridge
    return network


async def test_addresses_are_unique_skip_network_and_gateway_and_run_out(tmp_path: Path) -> None:
    network = _network(tmp_path, "10.9.0.0/29")  # 8 addresses, 5 usable
    taken = [await network.allocate(f"sandbox-{i}") for i in range(5)]
    assert taken == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    with pytest.raises(PodNetworkError, match="no free address"):
        await network.allocate("one-too-many")
    network.release("10.9.0.4", "sandbox-2")
    assert await network.allocate("again") == "10.9.0.4"


async def test_a_second_agent_on_the_host_never_takes_a_held_address(tmp_path: Path) -> None:
    first = _network(tmp_path, "10.9.0.0/29")
    second = _network(tmp_path, "10.9.0.0/29")
    mine = {await first.allocate("a"), await first.allocate("b")}
    theirs = {await second.allocate("c"), await second.allocate("d")}
    assert not mine & theirs


async def test_release_only_frees_what_the_owner_holds(tmp_path: Path) -> None:
    network = _network(tmp_path, "10.9.0.0/29")
    address = await network.allocate("owner")
    network.release(address, "someone-else")
    assert (tmp_path / "t0" / address).exists()
    network.release(address, "owner")
    assert not (tmp_path / "t0" / address).exists()


async def test_addresses_of_gone_sandboxes_are_reclaimed(tmp_path: Path) -> None:
    network = _network(tmp_path, "10.9.0.0/30")  # one usable address
    address = await network.allocate("dead")
    process = subprocess.Popen(["true"])
    process.wait()  # a pid that no longer runs: the sandbox it wired is gone
    (tmp_path / "t0" / address).write_text(f"dead\n{process.pid}")
    assert await network.allocate("new") == address
    # an address claimed but never wired is the claimer's until the grace period has passed
    (tmp_path / "t0" / address).write_text("unwired")
    with pytest.raises(PodNetworkError):
        await network.allocate("newer")
    old = time.time() - 3600
    os.utime(tmp_path / "t0" / address, (old, old))
    assert await network.allocate("newer") == address

