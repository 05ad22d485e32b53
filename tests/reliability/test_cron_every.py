"""One cron grammar (issue 15): the API accepted ``@every 1h`` while the CronJob controller's own parser
rejected it (an ``UnparseableSchedule`` event, no Job ever). Both now use robfig/cron's parser from
``machinery/kinds/cron.py``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.cronjob import CronJobController
from pilothouse.machinery import meta
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import create_namespace, pod_template, run_controllers, wait_for

CRONJOBS = resource("batch", "v1", "cronjobs")
JOBS = resource("batch", "v1", "jobs")
EVENTS = resource("", "v1", "events")


def cronjob(name: str, schedule: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": pod_template(
                {"app": name}, restartPolicy="Never")}}}}


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


async def test_every_schedule_accepted_by_the_api_runs(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        ns = await create_namespace(client, "every")
        clock = Clock(meta.now())
        async with run_controllers(server.url, CronJobController, options={"clock": clock}) as harness:
            controller = harness.get(CronJobController)
            created = await client.create(CRONJOBS, cronjob("hourly", "@every 1h"), ns)
            start = meta.parse_time(created["metadata"]["creationTimestamp"])
            assert start is not None
            clock.moment = start + timedelta(hours=1, seconds=5)  # robfig: creation time + 1h
            controller.enqueue_key(f"{ns}/hourly")
            due = start + timedelta(hours=1)
            expected = f"hourly-{int(due.timestamp()) // 60}"

            async def job() -> dict[str, Any] | None:
                try:
                    return await client.get(JOBS, expected, ns)
                except errors.NotFoundError:
                    return None

            async def unparseable() -> list[str]:
                return [e["message"] for e in (await client.list(EVENTS, ns))["items"]
                        if e["reason"] == "UnparseableSchedule"]

            try:
                await wait_for(job, what=expected)
            finally:
                assert await unparseable() == []
            status = (await client.get(CRONJOBS, "hourly", ns))["status"]
            assert status.get("lastScheduleTime") in (None, meta.format_time(due))


@pytest.mark.parametrize("schedule", ["0 0 * * 7", "@every", "@every 1x"])
async def test_schedules_robfig_rejects_are_refused_by_the_api(server: ServerProcess, schedule: str) -> None:
    async with APIClient(server.url) as client:
        with pytest.raises(errors.InvalidError, match=r"spec\.schedule"):
            await client.create(CRONJOBS, cronjob("bad", schedule), "default")
