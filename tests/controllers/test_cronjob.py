"""CronJob controller against a real server, with an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.cronjob import CronJobController, most_recent_schedule_time
from pilothouse.machinery import meta
from pilothouse.machinery.kinds.cron import parse_schedule
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import create_namespace, pod_template, run_controllers, wait_for

CRONJOBS = resource("batch", "v1", "cronjobs")
JOBS = resource("batch", "v1", "jobs")


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def _cronjob(name: str, schedule: str, **extra: Any) -> dict[str, Any]:
    template = pod_template({"app": name}, restartPolicy="Never")
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"metadata": {"labels": {"from": name}},
                                                           "spec": {"template": template}}, **extra}}


def test_most_recent_schedule_time() -> None:
    schedule = parse_schedule("*/5 * * * *")
    created = datetime.fromisoformat("2024-05-01T10:02:00+00:00")
    cj = {"metadata": {"creationTimestamp": meta.format_time(created)}, "spec": {}}
    assert most_recent_schedule_time(cj, created + timedelta(minutes=2), schedule) == (None, 0)
    when, missed = most_recent_schedule_time(cj, created + timedelta(minutes=14), schedule)
    assert when == datetime.fromisoformat("2024-05-01T10:15:00+00:00") and missed == 3
    cj["spec"]["startingDeadlineSeconds"] = 200  # only 10:15 is within the window
    assert most_recent_schedule_time(cj, created + timedelta(minutes=14), schedule)[1] == 1
    cj["status"] = {"lastScheduleTime": "2024-05-01T10:15:00Z"}
    assert most_recent_schedule_time(cj, created + timedelta(minutes=14), schedule)[0] is None


async def test_creates_job_when_due_and_replaces(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "cj")
    clock = Clock(meta.now() - timedelta(minutes=5))
    async with run_controllers(server.url, CronJobController, options={"clock": clock}) as harness:
        controller = harness.get(CronJobController)
        cj = await client.create(CRONJOBS, _cronjob("tick", "* * * * *", concurrencyPolicy="Replace"), ns)
        created = meta.parse_time(cj["metadata"]["creationTimestamp"])
        assert created is not None
        await wait_for(lambda: _synced(controller), what="first sync")
        assert (await client.list(JOBS, ns))["items"] == []  # not due yet by the clock

        # the first schedule after creation, and 5 s past it: created + 65 s would be past the
        # second schedule too when the object was created in a minute's last 5 seconds
        due = created.replace(second=0) + timedelta(minutes=1)
        clock.moment = due + timedelta(seconds=5)
        controller.enqueue_key(f"{ns}/tick")
        expected = f"tick-{int(due.timestamp()) // 60}"

        async def job_named(name: str) -> dict[str, Any] | None:
            items = (await client.list(JOBS, ns))["items"]
            return next((j for j in items if j["metadata"]["name"] == name
                         and not j["metadata"].get("deletionTimestamp")), None)

        job = await wait_for(lambda: job_named(expected), what=expected)
        assert job["metadata"]["labels"]["from"] == "tick"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in job["metadata"]["annotations"]

        async def status() -> dict[str, Any] | None:
            current = (await client.get(CRONJOBS, "tick", ns)).get("status") or {}
            return current if current.get("active") else None

        current = await wait_for(status, what="active job in status")
        assert current["active"][0]["name"] == expected
        assert current["lastScheduleTime"] == meta.format_time(due)

        # a minute later with Replace: the running job is deleted and the next one created
        clock.moment += timedelta(minutes=1)
        controller.enqueue_key(f"{ns}/tick")
        following = f"tick-{int(due.timestamp()) // 60 + 1}"
        await wait_for(lambda: job_named(following), what=following)
        await wait_for(lambda: _gone(client, ns, expected), what="replaced job deleted")

        # suspended: nothing new even when due
        await client.patch(CRONJOBS, "tick", {"spec": {"suspend": True}}, ns)

        async def cached_suspended() -> bool:
            return bool(((controller.cronjobs.get(f"{ns}/tick") or {}).get("spec") or {}).get("suspend"))

        await wait_for(cached_suspended, what="informer sees suspend")
        clock.moment += timedelta(minutes=3)
        controller.enqueue_key(f"{ns}/tick")
        await wait_for(lambda: _synced(controller), what="sync")
        names = {j["metadata"]["name"] for j in (await client.list(JOBS, ns))["items"]}
        assert names <= {expected, following}
    await client.close()


async def test_forbid_skips_while_active(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "cj")
    clock = Clock(meta.now())
    async with run_controllers(server.url, CronJobController, options={"clock": clock}) as harness:
        controller = harness.get(CronJobController)
        cj = await client.create(CRONJOBS, _cronjob("once", "*/2 * * * *", concurrencyPolicy="Forbid"), ns)
        created = meta.parse_time(cj["metadata"]["creationTimestamp"])
        assert created is not None
        clock.moment = created + timedelta(minutes=2, seconds=1)
        controller.enqueue_key(f"{ns}/once")
        await wait_for(lambda: _jobs(client, ns, 1), what="one job")
        clock.moment += timedelta(minutes=2)
        controller.enqueue_key(f"{ns}/once")
        await wait_for(lambda: _synced(controller), what="sync")
        assert len((await client.list(JOBS, ns))["items"]) == 1
    await client.close()


async def _synced(controller: CronJobController) -> bool:
    await controller.recorder.flush()
    return len(controller.queue) == 0 and not controller.queue._processing


async def _jobs(client: APIClient, ns: str, count: int) -> bool:
    return len((await client.list(JOBS, ns))["items"]) == count


async def _gone(client: APIClient, ns: str, name: str) -> bool:
    items = (await client.list(JOBS, ns))["items"]
    return all(j["metadata"]["name"] != name or j["metadata"].get("deletionTimestamp") for j in items)
