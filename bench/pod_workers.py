"""The pod worker's cost per pod: engine calls, API writes and sync time, against an earlier worker.

Usage: ``.venv/bin/python bench/pod_workers.py [--pods 40] [--rounds 4] [--baseline REV]``. Starts an API
server in a temp dir; for each worker (the current one and, with ``--baseline``, the ``podworkers.py``
of git revision REV loaded beside it) creates N pods on the simulated engine, syncs their workers
(concurrently, as the agent's tasks run) until every pod is Running, then deletes them and syncs until
every worker has finished. The time is the CPU time of this process (the workers and their
client; the API server is another process), which the machine's load disturbs less than wall time.
Both workers run in this one process, in alternating order, so the time
ratio holds under the machine's load; the call counts are exact and should be equal for a refactor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent import podcontext, podworkers
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.runtime.simulated import SimulatedRuntime
from tests.conftest import create_default_service_account, start_server_process, terminate

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
ENGINE_CALLS = ("list_containers", "inspect_container", "create_container", "start_container", "stop_container",
                "remove_container")
API_CALLS = ("create", "patch", "delete")


def _count(target: object, names: tuple[str, ...], counts: Counter[str]) -> None:
    """Count each call of ``target``'s methods ``names`` (the instance's own attributes shadow them)."""
    for name in names:
        method: Callable[..., Awaitable[Any]] = getattr(target, name)

        def counted(*args: Any, _method: Callable[..., Awaitable[Any]] = method, _name: str = name,
                    **kwargs: Any) -> Awaitable[Any]:
            counts[_name] += 1
            return _method(*args, **kwargs)
        setattr(target, name, counted)


def _baseline(revision: str, directory: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{revision}:pilothouse/components/agent/podworkers.py"],
                            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    path = directory / "podworkers_baseline.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("podworkers_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def _nothing(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return None


Phase = tuple[float, Counter[str], Counter[str]]  # CPU seconds of this process, engine calls, API writes


async def _round(url: str, impl: ModuleType, context: Any, label: str, pods: int, root: Path) -> list[Phase]:
    """The pods' way up (to Running) and down (deleted and removed)."""
    engine: Counter[str] = Counter()
    api: Counter[str] = Counter()
    runtime = SimulatedRuntime()
    _count(runtime, ENGINE_CALLS, engine)
    async with APIClient(url) as client:
        ctx = context(client=client, runtime=runtime, images=ImageManager(runtime, _nothing, None),
                      node_name="bench-node", host_ip="127.0.0.1", root_dir=root, scheme="simulated",
                      fetch=_nothing, engine_uids=set())
        # a Node of that name, or the pod GC deletes the pods as orphans after its 40 s
        with contextlib.suppress(errors.AlreadyExistsError):
            await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"}})
        body = {"apiVersion": "v1", "kind": "Pod",
                "spec": {"nodeName": "bench-node", "automountServiceAccountToken": False,
                         "containers": [{"name": "a", "image": "registry.local/a:1"},
                                        {"name": "b", "image": "registry.local/b:1"}]}}
        created = await asyncio.gather(*(client.create(PODS, {**body, "metadata": {"name": f"{label}-{i}"}},
                                                       "default") for i in range(pods)))
        _count(client, API_CALLS, api)
        workers = [impl.PodWorker(ctx, pod) for pod in created]
        began = time.process_time()
        for _ in range(20):
            pending = [w for w in workers if (w.pod.get("status") or {}).get("phase") != "Running"]
            if not pending:
                break
            await asyncio.gather(*(w.sync() for w in pending))
        up: Phase = (time.process_time() - began, engine.copy(), api.copy())
        await asyncio.gather(*(client.delete(PODS, w.pod["metadata"]["name"], "default") for w in workers))
        engine.clear()
        api.clear()
        began = time.process_time()
        for worker in workers:
            worker.update(await client.get(PODS, worker.pod["metadata"]["name"], "default"))
        await asyncio.gather(*(w.sync() for w in workers))  # stop, then delete with grace 0
        for worker in workers:
            worker.mark_deleted()
        await asyncio.gather(*(w.sync() for w in workers))  # remove
        down: Phase = (time.process_time() - began, engine, api)
    return [up, down]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--baseline", help="a git revision whose podworkers.py to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-podworkers-") as tmp:
        directory = Path(tmp)
        impls: dict[str, tuple[ModuleType, Any]] = {"current": (podworkers, podcontext.PodContext)}
        if args.baseline:
            old = _baseline(args.baseline, directory)
            impls = {"baseline": (old, old.PodContext), **impls}
        server = start_server_process(directory / "server")
        try:
            create_default_service_account(server.url)
            phases: dict[str, list[list[Phase]]] = {name: [] for name in impls}
            for n in range(args.rounds):
                order = list(impls) if n % 2 == 0 else list(reversed(impls))
                for name in order:
                    impl, context = impls[name]
                    phases[name].append(asyncio.run(_round(server.url, impl, context, f"{name}-{n}", args.pods,
                                                           directory / f"{name}-{n}")))
            seconds = {name: [statistics.median(r[i][0] for r in rounds) for i in range(2)]
                       for name, rounds in phases.items()}
            for name, rounds in phases.items():
                for index, what in enumerate(("to Running", "deleted and removed")):
                    _, engine, api = rounds[-1][index]
                    print(f"{name:8s} {what:19s} {seconds[name][index]:.3f} CPU s for {args.pods} pods "
                          f"(median of {args.rounds}); per pod: engine "
                          + " ".join(f"{k.split('_')[0]}={engine[k] / args.pods:.2f}" for k in ENGINE_CALLS)
                          + ", API " + " ".join(f"{k}={api[k] / args.pods:.2f}" for k in API_CALLS))
            for name, rounds in phases.items():
                print(f"{name:8s} each round (up/down s): " + " ".join(f"{r[0][0]:.2f}/{r[1][0]:.2f}" for r in rounds))
            if "baseline" in phases:
                # the least of the rounds too: the machine's load only ever adds to CPU time
                least = {name: [min(r[i][0] for r in rounds) for i in range(2)] for name, rounds in phases.items()}
                for index, what in enumerate(("to Running", "deleted and removed")):
                    median = seconds["current"][index] / seconds["baseline"][index]
                    print(f"current / baseline, {what}: median {median:.2f}, "
                          f"least {least['current'][index] / least['baseline'][index]:.2f}")
        finally:
            terminate(server.process)


if __name__ == "__main__":
    main()
