"""The agent keeps collecting orphaned containers after its engine was away (issue 15, chaos).

A real-agent chaos round (``CHAOS_SEED=1555179043``) ended with a deleted pod's sandbox left in podman
for good: podman was SIGKILLed while the pod's worker removed it, so the removal failed (the worker
leaves what it cannot remove to the orphan collection, as the kubelet leaves it to its container
GC) and podman's record stayed ``removing`` (a later ``DELETE ?force=true`` removes it). The orphan
collection never came back to it: its loop had met the dead engine once (aiodocker's
``DockerError``, not the ``RuntimeError_`` it expected) and ended for good. The kubelet's container
GC logs a failed pass and tries again on the next one; so does the agent's relist loop now.

A kill a little later in the removal leaves the record without its storage, and podman's Docker-compatible
list then fails whole (500, "getting container from store ...: container not known", podman issue
15526), for every list that includes it: the agent could list none of its containers again. The
runtime now finishes that removal (a ``DELETE ?force=true`` of the container the error names removes
it) and lists again. A kill a little earlier still leaves the container's storage record without its
read-write layer: the list fails whole the same way (500, "reading information about layer ...: layer
not known", CI, chaos seed 1275735066), naming only the layer, and so does the container's inspect.
podman's own list still answers; the runtime finds the container by it, checks that its inspect fails
on the same layer, removes it (``DELETE ?force=true`` does) and lists again.

A podman service of the tests' own (SIGKILLed, as the chaos does), a real agent process, a real API server.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.components.agent.runtime.docker import DockerRuntime
from tests.agent.conftest import PodmanFixture, import_busybox, remove_podman, start_ready_agent, wait_for
from tests.conftest import ServerProcess

NODE = "engine-outage-node"
ORPHAN_UID = "0rphan00-0000-4000-8000-000000000000"
ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]


@pytest.fixture(scope="module")
def own_podman() -> Iterator[tuple[PodmanFixture, str]]:
    """A podman service of this module's own (its tests kill it) and the busybox image in it."""
    # A short path: podman refuses a --runroot longer than 50 characters.
    directory = Path(tempfile.mkdtemp(prefix="gc-podman-"))
    podman = PodmanFixture(directory, directory / "podman.sock")
    podman.start()
    try:
        yield podman, import_busybox(podman)
    finally:
        remove_podman(podman)
        shutil.rmtree(directory, ignore_errors=True)


def create(podman: PodmanFixture, image: str, name: str, labels: dict[str, str]) -> str:
    status, body = podman.api("POST", f"/containers/create?name={name}", {
        "Image": image, "Entrypoint": ["sleep", "1000"], "Labels": labels, "HostConfig": {"Ulimits": ULIMITS}})
    assert status == 201, body
    container_id: str = json.loads(body)["Id"]
    return container_id


def test_orphans_are_collected_after_the_engine_was_killed(server: ServerProcess, tmp_path: Path,
                                                           own_podman: tuple[PodmanFixture, str]) -> None:
    podman, image = own_podman
    agent_dir = tmp_path / "agent"
    agent = start_ready_agent(server, podman, agent_dir, NODE, relist_period=0.5)
    try:
        assert podman.process is not None
        podman.process.kill()
        podman.process.wait()
        time.sleep(3)  # several relist passes meet the dead engine
        podman.start()
        # What the killed removal left: a container of this agent's whose pod is gone.
        orphan = create(podman, image, "orphaned-sandbox", {
            "io.kubernetes.pod.uid": ORPHAN_UID, "io.kubernetes.pod.name": "gone", "io.pilothouse.role": "sandbox",
            "io.pilothouse.agent": f"{NODE}@{agent_dir / 'root'}"})
        status, body = podman.api("POST", f"/containers/{orphan}/start")
        assert status == 204, body
        try:
            wait_for(lambda: not podman.containers(f"io.kubernetes.pod.uid={ORPHAN_UID}"), 30, "the orphan collected")
        except AssertionError:
            raise AssertionError(agent.log()) from None
    finally:
        agent.stop()


async def test_a_list_finishes_a_removal_the_engine_left_half_done(own_podman: tuple[PodmanFixture, str]) -> None:
    podman, image = own_podman
    labels = {"io.kubernetes.pod.uid": "half0000-0000-4000-8000-000000000000"}
    kept = create(podman, image, "kept", labels)
    half = create(podman, image, "half-removed", labels)
    # podman removes a container's storage before its record: a kill between the two leaves the
    # record alone. Made here without the race: the storage's record dropped while the service is down.
    podman.stop()
    records = podman.directory / "storage" / "overlay-containers" / "containers.json"
    records.write_text(json.dumps([r for r in json.loads(records.read_text()) if r["id"] != half]))
    podman.start()
    runtime = DockerRuntime(podman.endpoint)
    await runtime.start()
    try:
        assert [s.id for s in await runtime.list_containers(labels)] == [kept]
    finally:
        await runtime.close()
        podman.api("DELETE", f"/containers/{kept}?force=true")


async def test_a_list_removes_a_container_the_engine_left_without_its_layer(
        own_podman: tuple[PodmanFixture, str]) -> None:
    podman, image = own_podman
    labels = {"io.kubernetes.pod.uid": "layer000-0000-4000-8000-000000000000"}
    kept = create(podman, image, "kept-beside-layerless", labels)
    broken = create(podman, image, "layerless", labels)
    stranger = create(podman, image, "stranger", {"io.kubernetes.pod.uid": "other000-0000-4000-8000-000000000000"})
    # podman removes a container's layer before its storage record: a kill between the two (reproduced
    # by hand, SIGKILL 24 ms into a DELETE) leaves the record alone. Made here without the race.
    podman.stop()
    storage = podman.directory / "storage"
    layer = next(r["layer"] for r in json.loads((storage / "overlay-containers" / "containers.json").read_text())
                 if r["id"] == broken)
    layers = storage / "overlay-layers" / "layers.json"
    layers.write_text(json.dumps([r for r in json.loads(layers.read_text()) if r["id"] != layer]))
    podman.start()
    assert b"layer not known" in podman.api("GET", f"/containers/{broken}/json")[1]
    runtime = DockerRuntime(podman.endpoint)
    await runtime.start()
    try:
        assert [s.id for s in await runtime.list_containers(labels)] == [kept]
        assert podman.api("GET", f"/containers/{broken}/json")[0] == 404
        assert podman.api("GET", f"/containers/{stranger}/json")[0] == 200
    finally:
        await runtime.close()
        for container in (kept, stranger):
            podman.api("DELETE", f"/containers/{container}?force=true")
