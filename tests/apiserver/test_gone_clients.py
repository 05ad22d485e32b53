"""Issue 16: work for clients that have gone away stops when they go.

kube-apiserver cancels a request's context when its client disconnects: a watch ends at once and a
read stops. Here the server cancels the handler (aiohttp's ``handler_cancellation``); before, a
watch whose client left without bookmarks stayed registered until its timeout (30-60 minutes), and
an overloaded server went on serving reads whose clients had given up and retried.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def _pod_watches(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "apiserver_longrunning_requests":
            return int(sum(s.value for s in family.samples
                           if s.labels.get("verb") == "WATCH" and s.labels.get("resource") == "pods"))
    return 0


async def test_a_quiet_watch_ends_when_its_client_leaves(server: Any) -> None:
    url = server.url
    async with aiohttp.ClientSession() as session:
        assert await _pod_watches(session, url) == 0
        # no bookmarks, nothing to send: only the disconnect can tell the server
        params = {"watch": "true", "fieldSelector": "spec.nodeName=nowhere"}
        async with aiohttp.ClientSession() as watcher:
            response = await watcher.get(url + "/api/v1/pods", params=params)
            assert response.status == 200
            deadline = time.monotonic() + 10
            while await _pod_watches(session, url) != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            response.close()
        deadline = time.monotonic() + 10
        while (open_watches := await _pod_watches(session, url)) != 0:
            assert time.monotonic() < deadline, f"{open_watches} watch still served after its client left"
            await asyncio.sleep(0.2)
        # the server keeps serving: a new watch and a read work
        async with session.get(url + "/api/v1/pods", params={"limit": "1"}) as listed:
            assert listed.status == 200
