"""A pod worker's stages: the state machine alone, then one pod driven through all of them.

The second test runs a real API server with the simulated engine (a container whose command is
``exit 0`` ends at once), so that it is about the worker's stages, not about podman.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
from pathlib import Path

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.podcontext import PODS, PodContext
from pilothouse.components.agent.podlifecycle import PodLifecycle, Stage
from pilothouse.components.agent.podworkers import PodWorker
from pilothouse.components.agent.runtime.interface import LABEL_POD_UID
from pilothouse.components.agent.runtime.simulated import SimulatedRuntime
from pilothouse.machinery.meta import Object
from tests.conftest import ServerProcess, create_default_service_account

NODES = resource("", "v1", "nodes")


def _pod(phase: str = "", deleting: bool = False) -> Object:
    metadata: Object = {"name": "p", "uid": "u"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {}, "status": {"phase": phase} if phase else {}}


def _stage(life: PodLifecycle) -> Stage:
    """The stage now (a function call, so that mypy does not keep an earlier assert's narrowing)."""
    return life.stage


def test_a_pod_runs_until_its_phase_is_terminal() -> None:
    life = PodLifecycle()
    life.observe(_pod("Running"))
    assert (life.stage, life.terminal_phase) == (Stage.SYNCING, "")
    life.observe(_pod("Succeeded"))
    assert (life.stage, life.terminal_phase) == (Stage.TERMINAL, "Succeeded")


def test_deletion_asked_then_done() -> None:
    life = PodLifecycle()
    life.observe(_pod("Running", deleting=True))
    assert _stage(life) is Stage.TERMINATING
    life.end("Failed")  # the last report while stopping may decide the phase: the stage stays
    assert _stage(life) is Stage.TERMINATING and life.terminal_phase == "Failed"
    life.gone()
    assert _stage(life) is Stage.TERMINATED
    life.finish()
    assert life.finished


def test_stages_only_move_forward() -> None:
    life = PodLifecycle()
    life.gone()  # the object went without a graceful deletion seen first (grace 0)
    life.observe(_pod("Succeeded"))
    life.observe(_pod("Running", deleting=True))
    assert _stage(life) is Stage.TERMINATED and not life.terminal_phase
    life.end("Succeeded")
    assert _stage(life) is Stage.TERMINATED


def test_a_static_pod_has_no_api_object_to_wait_for() -> None:
    life = PodLifecycle(static=True)
    life.observe(_pod("Failed"))  # its mirror's phase is the worker's own report
    assert _stage(life) is Stage.SYNCING
    life.observe(_pod(deleting=True))
    assert _stage(life) is Stage.TERMINATED


@pytest.mark.timeout(120)
def test_a_worker_takes_pods_through_every_stage(server: ServerProcess, tmp_path: Path) -> None:
    """One pod runs to completion (terminal) and is deleted, which the API server does at once for a
    terminal pod; another is deleted while it runs, which the worker finishes by deleting it with
    grace 0 once its containers are stopped. Either is removed from the engine once it is gone."""
    with contextlib.suppress(urllib.error.HTTPError):  # 409: there already
        create_default_service_account(server.url)

    async def run() -> None:
        runtime = SimulatedRuntime()
        async with APIClient(server.url) as client:
            # the node exists, or the pod GC would take the pods for orphans (after 40 s)
            await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "lifecycle-node"}})
            ctx = PodContext(client=client, runtime=runtime, images=ImageManager(runtime, _nothing, None),
                             node_name="lifecycle-node", host_ip="127.0.0.1", root_dir=tmp_path,
                             scheme="simulated", fetch=_nothing)

            async def worker_until(name: str, command: list[str], stage: Stage) -> PodWorker:
                container = {"name": "c", "image": "registry.local/c:1", "command": command}
                body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                        "spec": {"nodeName": "lifecycle-node", "automountServiceAccountToken": False,
                                 "restartPolicy": "Never", "containers": [container]}}
                worker = PodWorker(ctx, await client.create(PODS, body, "default"))
                for _ in range(10):
                    await worker.sync()
                    if worker.lifecycle.stage is stage and worker.pod["status"].get("phase") != "Pending":
                        return worker
                raise AssertionError(f"{name}: {worker.lifecycle.stage}, {worker.pod['status']}")

            async def engine_has(worker: PodWorker) -> bool:
                return bool(await runtime.list_containers({LABEL_POD_UID: worker.uid}))

            done = await worker_until("done", ["exit", "0"], Stage.TERMINAL)
            assert done.lifecycle.terminal_phase == done.pod["status"]["phase"] == "Succeeded"
            await client.delete(PODS, "done", "default")
            with pytest.raises(errors.NotFoundError):
                await client.get(PODS, "done", "default")
            assert await engine_has(done)  # until the worker hears the pod is gone
            done.mark_deleted()
            await done.sync()
            assert done.lifecycle.finished and not await engine_has(done)

            running = await worker_until("running", ["sleep"], Stage.SYNCING)
            assert running.pod["status"]["phase"] == "Running"
            await client.delete(PODS, "running", "default")
            running.update(await client.get(PODS, "running", "default"))
            await running.sync()
            assert running.lifecycle.stage is Stage.TERMINATING
            assert running.container_states() == ["exited"]
            with pytest.raises(errors.NotFoundError):  # the worker deleted it with grace 0
                await client.get(PODS, "running", "default")
            running.mark_deleted()
            await running.sync()
            assert running.lifecycle.finished and not await engine_has(running)

    asyncio.run(run())


async def _nothing(*args: str) -> Object | None:
    return None
