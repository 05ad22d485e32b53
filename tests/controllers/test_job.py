"""Job controller against a real server: completion, kubectl wait, backoffLimit, deadline, Indexed."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.job import JobController
from pilothouse.components.controllers.jobutil import format_indexes, parse_indexes
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import PODS, create_namespace, mark_pod, pod_template, run_controllers, wait_for

JOBS = resource("batch", "v1", "jobs")
FAST = {"job_backoff_base": 0.05, "job_backoff_max": 0.2}


def _job(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": pod_template({"app": name}, restartPolicy="Never"), **spec}}


async def _pods(client: APIClient, ns: str, *, unfinished: bool = True) -> list[dict[str, Any]]:
    items = (await client.list(PODS, ns))["items"]
    return [p for p in items if not unfinished or (
        (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        and not p["metadata"].get("deletionTimestamp"))]


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition["type"] == kind and condition["status"] == "True":
            return dict(condition)
    return None


def test_indexes_round_trip() -> None:
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_indexes("") == set()


async def test_job_completes_and_kubectl_wait_returns(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    async with run_controllers(server.url, JobController, options=FAST):
        await client.create(JOBS, _job("pi", completions=3, parallelism=2), ns)
        waiter = asyncio.create_task(asyncio.to_thread(
            server.kubectl, "wait", "--for=condition=complete", "job/pi", "-n", ns, "--timeout=30s"))
        done = 0
        while done < 3:
            pods = await wait_for(lambda: _pods(client, ns), what="running job pods")
            assert len(pods) <= 2  # parallelism
            pod = pods[0]
            assert "batch.kubernetes.io/job-tracking" in pod["metadata"]["finalizers"]
            assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
            await mark_pod(client, ns, pod["metadata"]["name"], phase="Succeeded", ready=False, exit_code=0)
            done += 1

        async def complete() -> dict[str, Any] | None:
            job = await client.get(JOBS, "pi", ns)
            return job if _condition(job, "Complete") else None

        job = await wait_for(complete, what="Complete condition")
        status = job["status"]
        assert status["succeeded"] == 3 and not status.get("failed") and not status.get("active")
        assert _condition(job, "SuccessCriteriaMet") is not None
        assert status["completionTime"] and status["startTime"]
        assert status["uncountedTerminatedPods"] == {}
        result = await waiter
        assert "condition met" in result.stdout
        # finalizers are gone from every pod of the job
        for pod in await _pods(client, ns, unfinished=False):
            assert "batch.kubernetes.io/job-tracking" not in (pod["metadata"].get("finalizers") or [])
    await client.close()


async def test_failing_job_stops_at_backoff_limit(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    async with run_controllers(server.url, JobController, options=FAST):
        await client.create(JOBS, _job("flaky", backoffLimit=2), ns)
        failures = 0
        while failures < 3:
            pods = await wait_for(lambda: _pods(client, ns), what="a job pod")
            await mark_pod(client, ns, pods[0]["metadata"]["name"], phase="Failed", ready=False, exit_code=1)
            failures += 1

        async def failed() -> dict[str, Any] | None:
            job = await client.get(JOBS, "flaky", ns)
            return job if _condition(job, "Failed") else None

        job = await wait_for(failed, what="Failed condition")
        condition = _condition(job, "Failed")
        assert condition is not None and condition["reason"] == "BackoffLimitExceeded"
        assert _condition(job, "FailureTarget") is not None
        assert job["status"]["failed"] == 3
        await asyncio.sleep(0.3)
        assert await _pods(client, ns) == []  # no replacement after the limit
        result = server.kubectl("wait", "--for=condition=failed", "job/flaky", "-n", ns, "--timeout=5s")
        assert "condition met" in result.stdout
    await client.close()


async def test_a_failed_finalizer_removal_is_retried_and_counted_once(server: ServerProcess) -> None:
    """The API refuses the first removal of the tracking finalizer (a 429, as priority and fairness
    answers under load; injected, since nothing else refuses it at will). The pod stays recorded in
    ``uncountedTerminatedPods`` and a later sync releases it while the Job still runs, counting it once.
    The removal deletes only the Job's own finalizer: another one on the pod stays."""
    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    template = pod_template({"app": "twice"}, restartPolicy="Never")
    template["metadata"]["finalizers"] = ["example.com/keep"]
    job_body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "twice"},
                "spec": {"template": template, "completions": 2, "parallelism": 1}}
    async with run_controllers(server.url, JobController, options=FAST) as harness:
        controller = harness.get(JobController)
        real_patch = controller.client.patch
        refused: list[str] = []

        async def refuse_first_release(r: Any, name: str, patch: Any, namespace: str | None = None,
                                       **options: Any) -> Any:
            if "$deleteFromPrimitiveList/finalizers" in patch.get("metadata", {}) and not refused:
                refused.append(name)
                raise errors.TooManyRequestsError(429, "TooManyRequests", "Too many requests, please try again later.")
            return await real_patch(r, name, patch, namespace, **options)

        controller.client.patch = refuse_first_release  # type: ignore[method-assign]
        await client.create(JOBS, job_body, ns)
        first = (await wait_for(lambda: _pods(client, ns), what="the first job pod"))[0]
        await mark_pod(client, ns, first["metadata"]["name"], phase="Succeeded", ready=False, exit_code=0)

        async def released() -> dict[str, Any] | None:
            pod = await client.get(PODS, first["metadata"]["name"], ns)
            return pod if "batch.kubernetes.io/job-tracking" not in pod["metadata"]["finalizers"] else None

        pod = await wait_for(released, what="the refused finalizer removed by a later sync")
        assert refused == [first["metadata"]["name"]]
        assert pod["metadata"]["finalizers"] == ["example.com/keep"]

        async def counted() -> dict[str, Any] | None:
            job = await client.get(JOBS, "twice", ns)
            status = job.get("status") or {}
            return job if status.get("succeeded") == 1 and not status.get("uncountedTerminatedPods") else None

        job = await wait_for(counted, what="the pod counted once, nothing left uncounted")
        assert _condition(job, "Complete") is None  # released while the Job still runs, not by its end
        second = await wait_for(lambda: _pods(client, ns), what="the second job pod")
        await mark_pod(client, ns, second[0]["metadata"]["name"], phase="Succeeded", ready=False, exit_code=0)

        async def complete() -> dict[str, Any] | None:
            job = await client.get(JOBS, "twice", ns)
            return job if _condition(job, "Complete") else None

        job = await wait_for(complete, what="Complete condition")
        assert job["status"]["succeeded"] == 2 and not job["status"].get("failed")
    for pod in await _pods(client, ns, unfinished=False):  # let the namespace go
        await client.patch(PODS, pod["metadata"]["name"], {"metadata": {"finalizers": None}}, ns)
    await client.close()


async def test_active_deadline_and_backoff_delay(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    async with run_controllers(server.url, JobController, options={"job_backoff_base": 30}):
        await client.create(JOBS, _job("slow", activeDeadlineSeconds=2, backoffLimit=5), ns)
        pods = await wait_for(lambda: _pods(client, ns), what="a job pod")
        await mark_pod(client, ns, pods[0]["metadata"]["name"], phase="Failed", ready=False, exit_code=1)
        await asyncio.sleep(0.5)
        assert await _pods(client, ns) == []  # 30 s backoff before the replacement

        async def failed() -> dict[str, Any] | None:
            job = await client.get(JOBS, "slow", ns)
            return job if _condition(job, "Failed") else None

        job = await wait_for(failed, timeout=6, what="deadline")
        assert _condition(job, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    await client.close()


async def test_indexed_job(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    async with run_controllers(server.url, JobController, options=FAST):
        await client.create(JOBS, _job("idx", completions=3, parallelism=3, completionMode="Indexed"), ns)

        async def three() -> list[dict[str, Any]] | None:
            pods = await _pods(client, ns)
            return pods if len(pods) == 3 else None

        pods = await wait_for(three, what="3 indexed pods")
        indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
        assert indexes == ["0", "1", "2"]
        assert {p["spec"]["hostname"] for p in pods} == {"idx-0", "idx-1", "idx-2"}
        for pod in pods:
            await mark_pod(client, ns, pod["metadata"]["name"], phase="Succeeded", ready=False, exit_code=0)

        async def complete() -> dict[str, Any] | None:
            job = await client.get(JOBS, "idx", ns)
            return job if _condition(job, "Complete") else None

        job = await wait_for(complete, what="indexed job complete")
        assert job["status"]["completedIndexes"] == "0-2"
    await client.close()


async def test_ttl_after_finished_deletes_job(server: ServerProcess) -> None:
    from pilothouse.components.controllers.ttlafterfinished import TTLAfterFinishedController

    client = APIClient(server.url)
    ns = await create_namespace(client, "job")
    async with run_controllers(server.url, JobController, TTLAfterFinishedController, options=FAST):
        await client.create(JOBS, _job("brief", ttlSecondsAfterFinished=0), ns)
        pods = await wait_for(lambda: _pods(client, ns), what="a job pod")
        await mark_pod(client, ns, pods[0]["metadata"]["name"], phase="Succeeded", ready=False, exit_code=0)

        async def deleted() -> bool:
            items = (await client.list(JOBS, ns))["items"]
            return not items or bool(items[0]["metadata"].get("deletionTimestamp"))

        await wait_for(deleted, what="job deleted after its TTL")
    await client.close()
