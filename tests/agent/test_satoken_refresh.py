"""The agent's token manager and atomic volume writer, without containers.

Tokens come from a real API server's TokenRequest API; only the clock is injected, to cross the 80%
refresh point of a token the server will not issue for less than 10 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.error
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.podcontext import PodContext
from pilothouse.components.agent.podworkers import PodWorker
from pilothouse.components.agent.runtime.simulated import SimulatedRuntime
from pilothouse.components.agent.satoken import TokenManager, TokenRequester, requester_for
from pilothouse.components.agent.volumes import _write_files, pod_dir, prepare_volumes
from tests.conftest import ServerProcess, create_default_service_account

PODS = resource("", "v1", "pods")
REVIEWS = resource("authentication.k8s.io", "v1", "tokenreviews")


def _default_account(server: ServerProcess) -> None:
    with contextlib.suppress(urllib.error.HTTPError):  # 409: there already (another test, the controller)
        create_default_service_account(server.url)


async def _fetch(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return None


def _counting(real: TokenRequester, calls: list[dict[str, Any]]) -> TokenRequester:
    """The real requester, recording each TokenRequest it sends."""
    async def request(namespace: str, account: str, body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body)
        return await real(namespace, account, body)

    return request


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_token_requested_bound_and_refreshed_after_80_percent(server: ServerProcess, tmp_path: Path) -> None:
    async def run() -> None:
        _default_account(server)
        async with APIClient(server.url) as client:
            pod = await client.create(PODS, _pod("token-refresh"), "default")
            now = [datetime.now(UTC)]
            calls: list[dict[str, Any]] = []
            counting = _counting(requester_for(client), calls)
            tokens = TokenManager(counting, clock=lambda: now[0])
            volume = pod["spec"]["volumes"][0]  # ServiceAccount admission's kube-api-access-*
            assert volume["name"].startswith("kube-api-access-")
            paths = await prepare_volumes(pod, tmp_path, _fetch, pod_ip="10.0.0.1", host_ip="10.0.0.1",
                                          allocatable={}, tokens=tokens)
            token = (paths[volume["name"]] / "token").read_text()
            review = await client.create(REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                   "spec": {"token": token}})
            assert review["status"]["authenticated"], review
            user = review["status"]["user"]
            assert user["username"] == "system:serviceaccount:default:default"
            assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
            assert calls[0]["spec"]["boundObjectRef"]["uid"] == pod["metadata"]["uid"]
            assert calls[0]["spec"]["expirationSeconds"] == 3607
            source = volume["projected"]["sources"][0]["serviceAccountToken"]
            due = tokens.next_refresh(pod["metadata"]["uid"])
            assert due is not None
            # 3607 s of life: due after 80% of it, not before
            assert abs((due - now[0]).total_seconds() - 0.8 * 3607) < 60
            now[0] = due - timedelta(seconds=1)
            assert await tokens.token(pod, source) == token and len(calls) == 1
            now[0] = due + timedelta(seconds=1)
            await prepare_volumes(pod, tmp_path, _fetch, pod_ip="10.0.0.1", host_ip="10.0.0.1", allocatable={},
                                  tokens=tokens)
            assert len(calls) == 2
            # the file now holds the second answer (the server may issue the same JWT within a second)
            second = await tokens.token(pod, source)
            assert (paths[volume["name"]] / "token").read_text() == second and len(calls) == 2
            next_due = tokens.next_refresh(pod["metadata"]["uid"])
            assert next_due is not None and next_due > due
            tokens.forget(pod["metadata"]["uid"])
            assert tokens.next_refresh(pod["metadata"]["uid"]) is None

    asyncio.run(run())


def test_user_projection_with_its_own_audience_and_path(server: ServerProcess, tmp_path: Path) -> None:
    async def run() -> None:
        _default_account(server)
        async with APIClient(server.url) as client:
            body = _pod("token-audience")
            body["spec"]["volumes"] = [{"name": "vault", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "vault/token"}}]}}]
            pod = await client.create(PODS, body, "default")
            paths = await prepare_volumes(pod, tmp_path, _fetch, pod_ip="10.0.0.1", host_ip="10.0.0.1",
                                          allocatable={}, tokens=TokenManager(requester_for(client)))
            token = (paths["vault"] / "vault" / "token").read_text()

            async def review(audiences: list[str]) -> dict[str, Any]:
                answer: dict[str, Any] = await client.create(REVIEWS, {
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token, "audiences": audiences}})
                return answer["status"]

            assert (await review(["vault"]))["authenticated"]
            assert not (await review([])).get("authenticated")  # not the API server audience

    asyncio.run(run())


def test_atomic_writer_swaps_data_link(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    _write_files(target, {"a": (b"one", 0o644), "dir/b": (b"two", 0o600)})
    first = os.readlink(target / "..data")
    assert first.startswith("..") and (target / first).is_dir()
    assert os.readlink(target / "a") == "..data/a"
    assert (target / "a").read_bytes() == b"one" and (target / "dir" / "b").read_bytes() == b"two"
    assert (target / "dir" / "b").stat().st_mode & 0o777 == 0o600
    _write_files(target, {"a": (b"uno", 0o644)})
    second = os.readlink(target / "..data")
    assert second != first and not (target / first).exists()  # the old version is gone
    assert (target / "a").read_bytes() == b"uno"
    assert not (target / "dir").exists()  # no longer projected
    assert sorted(p.name for p in target.iterdir()) == sorted(["..data", second, "a"])


def test_pod_worker_rewrites_the_token_when_due(server: ServerProcess, tmp_path: Path) -> None:
    """The worker's own loop: it wakes for the due time and swaps the volume's ``..data`` to a new
    token (containers on the simulated runtime: this is about the files, not the engine)."""

    async def run() -> None:
        _default_account(server)
        async with APIClient(server.url) as client:
            body = _pod("token-worker")
            body["spec"]["nodeName"] = "token-worker-node"
            pod = await client.create(PODS, body, "default")
            now = [datetime.now(UTC)]
            calls: list[dict[str, Any]] = []
            counting = _counting(requester_for(client), calls)
            runtime = SimulatedRuntime()
            ctx = PodContext(client=client, runtime=runtime,
                             images=ImageManager(runtime, lambda ns, name: _fetch("secrets", ns, name), None),
                             node_name="token-worker-node", host_ip="127.0.0.1", root_dir=tmp_path,
                             scheme="simulated", fetch=_fetch, tokens=TokenManager(counting, clock=lambda: now[0]))
            worker = PodWorker(ctx, pod)
            await worker.sync()
            volume = pod["spec"]["volumes"][0]["name"]
            target = pod_dir(tmp_path, pod["metadata"]["uid"]) / "volumes" / "kubernetes.io~projected" / volume
            first_version = os.readlink(target / "..data")
            assert len(calls) == 1 and (target / "token").read_text().count(".") == 2
            assert ctx.tokens is not None
            due = ctx.tokens.next_refresh(pod["metadata"]["uid"])
            assert due is not None
            await worker.sync()
            assert len(calls) == 1 and os.readlink(target / "..data") == first_version
            now[0] = due + timedelta(seconds=1)
            await worker.sync()
            assert len(calls) == 2
            assert os.readlink(target / "..data") != first_version
            assert (target / "token").read_text() == await ctx.tokens.token(
                pod, pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"])

    asyncio.run(run())
