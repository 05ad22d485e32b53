"""An address the agent holds on its bridge for its DNS (pilothouse.components.agent.podnet
``hold_on_bridge``): held while the agent's process lives, never a pod's meanwhile, taken back (and
taken off the bridge) once that process is gone. Needs no root: the IPAM files live in a temp dir and
the ``ip`` calls fail harmlessly on a bridge that does not exist."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pilothouse.components.agent.podnet import HOST_OWNER, PodNetwork, PodNetworkError


async def test_held_address_is_kept_from_pods_until_its_process_is_gone(tmp_path: Path) -> None:
    network = PodNetwork("10.9.0.0/30", bridge="t-none", ipam_root=tmp_path)  # one usable address
    network.ipam_dir.mkdir(parents=True)
    address = await network.hold_on_bridge("dns:node@/root")
    assert (network.ipam_dir / address).read_text() == f"{HOST_OWNER}dns:node@/root\n{os.getpid()}"
    with pytest.raises(PodNetworkError):
        await network.allocate("a-pod")  # this process lives: the address is the DNS's
    gone = subprocess.Popen(["true"])
    gone.wait()
    (network.ipam_dir / address).write_text(f"{HOST_OWNER}dns:node@/root\n{gone.pid}")
    assert await network.allocate("a-pod") == address


async def test_the_same_address_again_after_a_restart(tmp_path: Path) -> None:
    network = PodNetwork("10.9.0.0/29", bridge="t-none", ipam_root=tmp_path)
    network.ipam_dir.mkdir(parents=True)
    first = await network.hold_on_bridge("dns:n")
    await network.drop_from_bridge(first, "dns:n")
    assert not (network.ipam_dir / first).exists()
    await network.allocate("pod-elsewhere")
    assert await network.hold_on_bridge("dns:n", preferred=first) == first
