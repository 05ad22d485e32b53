"""client-go's EventSourceObjectSpamFilter, as pilothouse.client.eventspam carries it: 25 events per
source and object at once, then one per 5 minutes; other objects and sources keep their own bucket."""

from __future__ import annotations

from pilothouse.client.eventspam import SpamFilter


def test_burst_then_one_per_five_minutes() -> None:
    now = [1000.0]
    spam = SpamFilter(clock=lambda: now[0])
    replicaset = {"kind": "ReplicaSet", "namespace": "ns", "name": "web-1", "uid": "u1", "apiVersion": "apps/v1"}
    assert [spam.allow("replicaset-controller", "", replicaset) for _ in range(30)] == [True] * 25 + [False] * 5
    other = {**replicaset, "name": "web-2", "uid": "u2"}
    assert spam.allow("replicaset-controller", "", other), "another object has its own bucket"
    assert spam.allow("other-controller", "", replicaset), "another source has its own bucket"
    now[0] += 299.0
    assert not spam.allow("replicaset-controller", "", replicaset)
    now[0] += 2.0  # a token every 300 s
    assert spam.allow("replicaset-controller", "", replicaset)
    assert not spam.allow("replicaset-controller", "", replicaset)
    now[0] += 300.0 * 100
    assert [spam.allow("replicaset-controller", "", replicaset) for _ in range(26)] == [True] * 25 + [False]


def test_least_recently_used_keys_are_forgotten() -> None:
    spam = SpamFilter(burst=1, size=2, clock=lambda: 0.0)
    objects = [{"uid": str(i)} for i in range(3)]
    assert all(spam.allow("c", "", o) for o in objects)
    assert spam.allow("c", "", objects[0]), "evicted from the LRU, so a fresh bucket"
    assert not spam.allow("c", "", objects[2])
