"""The event recorders against a real server, read back with the real kubectl.

The correlator's rules (client-go's events_cache.go) are checked on a controlled clock; the writes
(create, then a strategic-merge PATCH of count/lastTimestamp, or of an events.k8s.io ``series``) go
to a real ``pilothouse server`` and are read back through core/v1, ``kubectl describe`` and
``kubectl events``, which must read as they do on Kubernetes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pilothouse.client import errors
from pilothouse.client.events import EventCorrelator, EventRecorder, SeriesRecorder
from pilothouse.client.rest import APIClient, resource

PODS = resource("", "v1", "pods")
EVENTS = resource("", "v1", "events")
EVENTS_V1 = resource("events.k8s.io", "v1", "events")

Object = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _pod(name: str, uid: str = "uid-1") -> Object:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": uid}}


def _event(recorder: EventRecorder, obj: Object, reason: str, message: str, kind: str = "Normal") -> Object:
    return recorder.make_event(obj, kind, reason, message)


# ------------------------------------------------------------------ the correlator, on a clock


def test_identical_events_count_up_one_event() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock)
    recorder = EventRecorder(None, "kubelet", "node-1", correlator=correlator, clock=clock)  # type: ignore[arg-type]
    first = correlator.correlate(_event(recorder, _pod("web"), "BackOff", "Back-off restarting"))
    assert first is not None and first.patch is None and first.event["count"] == 1
    correlator.update_state({**first.event, "metadata": {**first.event["metadata"], "resourceVersion": "7"}})
    clock.now += 30
    second = correlator.correlate(_event(recorder, _pod("web"), "BackOff", "Back-off restarting"))
    assert second is not None and second.event["count"] == 2
    assert second.event["metadata"]["name"] == first.event["metadata"]["name"]
    assert second.event["firstTimestamp"] == first.event["firstTimestamp"]
    assert second.patch == {"count": 2, "lastTimestamp": second.event["lastTimestamp"],
                            "message": "Back-off restarting"}
    assert second.event["lastTimestamp"] != first.event["lastTimestamp"]


def test_ten_messages_for_one_reason_are_combined() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock)
    recorder = EventRecorder(None, "replicaset-controller", correlator=correlator, clock=clock)  # type: ignore[arg-type]
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default",
                                                                         "uid": "rs-uid"}}
    results = []
    for i in range(12):
        clock.now += 1
        result = correlator.correlate(_event(recorder, owner, "SuccessfulCreate", f"Created pod: rs-{i}"))
        assert result is not None
        results.append(result.event)
    assert [e["message"] for e in results[:9]] == [f"Created pod: rs-{i}" for i in range(9)]
    combined = results[9:]
    assert all(e["message"].startswith("(combined from similar events): Created pod: rs-") for e in combined)
    # the combined events are one Event whose count rises
    assert [e["count"] for e in combined] == [1, 2, 3]
    assert len({e["metadata"]["name"] for e in combined}) == 1
    # after 10 quiet minutes a message is its own event again
    clock.now += 601
    fresh = correlator.correlate(_event(recorder, owner, "SuccessfulCreate", "Created pod: rs-99"))
    assert fresh is not None and fresh.event["message"] == "Created pod: rs-99"


def test_the_spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock)
    recorder = EventRecorder(None, "kubelet", "node-1", correlator=correlator, clock=clock)  # type: ignore[arg-type]
    accepted = sum(correlator.correlate(_event(recorder, _pod("web"), "Unhealthy", f"probe {i % 3}")) is not None
                   for i in range(40))
    assert accepted == 25
    clock.now += 299
    assert correlator.correlate(_event(recorder, _pod("web"), "Unhealthy", "probe 0")) is None
    clock.now += 2
    assert correlator.correlate(_event(recorder, _pod("web"), "Unhealthy", "probe 0")) is not None
    # another object from the same source has its own bucket
    assert correlator.correlate(_event(recorder, _pod("db", "uid-2"), "Unhealthy", "probe 0")) is not None


# ------------------------------------------------------------------ against a real server


async def _create_pod(client: APIClient, name: str) -> Object:
    """A pod, once the controller manager has made the ``default`` ServiceAccount admission wants."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    for _ in range(300):
        try:
            created: Object = await client.create(PODS, body, "default")
            return {**created, "kind": "Pod", "apiVersion": "v1"}
        except errors.ClientError as error:
            if "service account" not in error.message:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("no default ServiceAccount")


async def _series_events(client: APIClient) -> list[Object]:
    items = (await client.list(EVENTS_V1, "default", field_selector="reportingController=test-scheduler"))["items"]
    return list(items)


async def _events_for(client: APIClient, uid: str) -> list[Object]:
    items = (await client.list(EVENTS, "default", field_selector=f"involvedObject.uid={uid}"))["items"]
    return list(items)


async def test_a_repeated_event_is_one_event_with_a_count(server: Any) -> None:
    async with APIClient(server.url) as client:
        pod = await _create_pod(client, "counted")
        recorder = EventRecorder(client, "kubelet", "node-1")
        for _ in range(3):
            recorder.event(pod, "Warning", "BackOff",
                           "Back-off restarting failed container c in pod counted_default(x)")
            await asyncio.sleep(1.1)  # lastTimestamp has second precision
        recorder.event(pod, "Normal", "Pulling", 'Pulling image "busybox"')
        await recorder.flush()
        events = [e for e in await _events_for(client, pod["metadata"]["uid"])
                  if (e.get("source") or {}).get("host") == "node-1"]
        by_reason = {e["reason"]: e for e in events}
        assert sorted(by_reason) == ["BackOff", "Pulling"] and len(events) == 2
        backoff = by_reason["BackOff"]
        assert backoff["count"] == 3 and backoff["lastTimestamp"] > backoff["firstTimestamp"]
        assert backoff["metadata"]["name"].startswith("counted.")
        assert backoff["source"] == {"component": "kubelet", "host": "node-1"}
        # an Event deleted meanwhile is created again by the next repeat, with the count so far
        await client.delete(EVENTS, backoff["metadata"]["name"], "default")
        recorder.event(pod, "Warning", "BackOff",
                       "Back-off restarting failed container c in pod counted_default(x)")
        await recorder.flush()
        again = [e for e in await _events_for(client, pod["metadata"]["uid"])
                 if e["reason"] == "BackOff" and (e.get("source") or {}).get("host") == "node-1"]
        assert len(again) == 1 and again[0]["count"] == 4
        await recorder.close()

    described = server.kubectl("describe", "pod", "counted").stdout
    events_part = described[described.index("Events:"):]
    assert re.search(r"Warning\s+BackOff\s+\S+ \(x4 over \S+\)\s+kubelet\s+Back-off restarting failed container c",
                     events_part), events_part
    assert re.search(r"Normal\s+Pulling\s+\S+\s+kubelet\s+Pulling image \"busybox\"", events_part), events_part
    listed = server.kubectl("events", "--for", "pod/counted").stdout
    header, *rows = listed.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(re.search(r"\(x4 over \S+\)\s+Warning\s+BackOff\s+Pod/counted\s+Back-off", row) for row in rows), listed


async def test_the_series_recorder_writes_a_series(server: Any) -> None:
    async with APIClient(server.url) as client:
        pod = await _create_pod(client, "pending")
        clock = Clock()
        recorder = SeriesRecorder(client, "test-scheduler", clock=clock)
        message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        obj = pod
        recorder.event(obj, "Warning", "FailedScheduling", message, action="Scheduling")
        await recorder.flush()
        (single,) = await _series_events(client)
        assert single.get("series") is None and single["note"] == message
        assert single["reportingInstance"].startswith("test-scheduler-")
        for _ in range(4):
            clock.now += 1
            recorder.event(obj, "Warning", "FailedScheduling", message, action="Scheduling")
        await recorder.flush()
        (series,) = await _series_events(client)
        # upstream writes count 2 at once; later repeats wait for the series to finish (6 min)
        assert series["series"]["count"] == 2 and series["metadata"]["name"] == single["metadata"]["name"]
        # six quiet minutes finish the series: its final count is written and it is forgotten
        clock.now += 300
        recorder.finish_series()
        await recorder.flush()
        assert (await client.get(EVENTS_V1, single["metadata"]["name"], "default"))["series"]["count"] == 2
        clock.now += 61
        recorder.finish_series()
        await recorder.flush()
        assert (await client.get(EVENTS_V1, single["metadata"]["name"], "default"))["series"]["count"] == 5
        # one storage for both APIs: core/v1 serves the same Event in its own shape
        (core,) = [e for e in await _events_for(client, pod["metadata"]["uid"])
                   if e.get("reportingComponent") == "test-scheduler"]
        assert core["apiVersion"] == "v1" and core["message"] == message
        assert core["metadata"]["name"] == single["metadata"]["name"] and core["series"]["count"] == 5
        assert core["involvedObject"]["uid"] == pod["metadata"]["uid"] and "note" not in core
        await recorder.close()

    described = server.kubectl("describe", "pod", "pending").stdout
    events_part = described[described.index("Events:"):]
    assert re.search(r"Warning\s+FailedScheduling\s+\S+ \(x5 over \S+\)\s+test-scheduler\s+0/3 nodes are available",
                     events_part), events_part


async def test_the_proxy_says_it_started_as_kube_proxy_does(server: Any) -> None:
    from pilothouse.components.proxy import _record_start

    async with APIClient(server.url) as client:
        await _record_start(client, "proxy-node")
        items = (await client.list(EVENTS, "default", field_selector="involvedObject.name=proxy-node"))["items"]
    (started,) = items
    assert (started["reason"], started["action"], started["reportingComponent"]) == \
        ("Starting", "StartKubeProxy", "kube-proxy")
    assert started["involvedObject"] == {"kind": "Node", "name": "proxy-node", "uid": "proxy-node"}
    assert started["type"] == "Normal" and not started.get("message")


async def test_an_unreachable_server_does_not_hold_up_a_flush() -> None:
    from tests.conftest import free_port

    async with APIClient(f"http://127.0.0.1:{free_port()}") as client:
        recorder = EventRecorder(client, "kubelet", "node-1")
        recorder.event(_pod("web"), "Normal", "Pulling", 'Pulling image "busybox"')
        started = asyncio.get_running_loop().time()
        # the write is retried 10 s apart, as client-go does; a flush (a shutdown) drops it at once
        await recorder.flush(timeout=5)
        assert asyncio.get_running_loop().time() - started < 1
        await recorder.close()
