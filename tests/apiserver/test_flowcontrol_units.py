"""API Priority and Fairness' parts without a server: the dealer's hands, one level's seats and fair
queues, and the classification of requests by the bootstrap configuration."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.flowcontrol.controller import PriorityAndFairness
from pilothouse.apiserver.flowcontrol.queueset import Dealer, QueueSet, Rejected, flow_hash
from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.store.sqlite import SQLiteStore


def test_a_hand_is_distinct_queues_of_the_deck_and_the_same_for_the_same_flow() -> None:
    dealer = Dealer(128, 6)
    hands = [dealer.deal(flow_hash("global-default", f"user-{i}")) for i in range(2000)]
    assert all(len(set(hand)) == 6 and all(0 <= card < 128 for card in hand) for hand in hands)
    assert dealer.deal(flow_hash("global-default", "user-7")) == hands[7]
    # Every queue is dealt about as often as any other (2000 * 6 / 128 = 94 each).
    dealt = [sum(card == queue for hand in hands for card in hand) for queue in range(128)]
    assert min(dealt) > 50 and max(dealt) < 150, dealt
    with pytest.raises(ValueError):
        Dealer(4, 5)


async def test_a_freed_seat_goes_to_each_waiting_flow_in_turn() -> None:
    level = QueueSet("level", limit=1, queues=8, hand_size=1, queue_length_limit=50)
    heavy, light = (0,), (1,)
    held = level.enter(heavy)
    assert held == 0 and level.executing == 1
    heavy_waiters = [level.enter(heavy) for _ in range(10)]
    light_waiter = level.enter(light)
    assert level.waiting == 11 and all(isinstance(w, asyncio.Future) for w in [*heavy_waiters, light_waiter])
    order = []
    running = held
    for _ in range(3):
        level.release(running)  # type: ignore[arg-type]
        done = [w for w in [*heavy_waiters, light_waiter] if isinstance(w, asyncio.Future) and w.done()
                and w not in order]
        assert len(done) == 1
        order.append(done[0])
        running = done[0].result()
    # The light flow came second, not eleventh: queues are served in turn, not in arrival order.
    assert order[1] is light_waiter and order[0] is heavy_waiters[0] and order[2] is heavy_waiters[1]


async def test_a_full_queue_and_a_reject_level_turn_requests_away() -> None:
    level = QueueSet("level", limit=1, queues=2, hand_size=1, queue_length_limit=2)
    level.enter((0,))
    level.enter((0,)), level.enter((0,))
    with pytest.raises(Rejected) as full:
        level.enter((0,))
    assert full.value.reason == "queue-full"
    rejecting = QueueSet("catch-all", limit=1, queues=0, hand_size=0, queue_length_limit=0)
    assert rejecting.enter(()) == -1
    with pytest.raises(Rejected) as limited:
        rejecting.enter(())
    assert limited.value.reason == "concurrency-limit"
    rejecting.release(-1)
    assert rejecting.enter(()) == -1


async def test_a_withdrawn_waiter_leaves_its_queue_or_gives_back_the_seat_it_got() -> None:
    level = QueueSet("level", limit=1, queues=4, hand_size=2, queue_length_limit=5)
    first = level.enter((0, 1))
    assert isinstance(first, int)
    gone = level.enter((0, 1))
    assert isinstance(gone, asyncio.Future)
    level.withdraw(gone, "cancelled")
    assert (level.waiting, level.cancelled) == (0, 1)
    late = level.enter((2, 3))
    assert isinstance(late, asyncio.Future)
    level.release(first)
    assert late.done() and level.executing == 1
    level.withdraw(late, "time-out")  # it had been given the seat: the seat comes back
    assert (level.executing, level.timed_out) == (0, 1)


@pytest.mark.parametrize(("user", "method", "path", "schema"), [
    (UserInfo("system:node:n1", ("system:nodes", "system:authenticated")), "PUT",
     "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", "system-node-high"),
    (UserInfo("system:node:n1", ("system:nodes", "system:authenticated")), "PATCH",
     "/api/v1/nodes/n1/status", "system-node-high"),
    (UserInfo("system:node:n1", ("system:nodes", "system:authenticated")), "GET", "/api/v1/pods", "system-nodes"),
    (UserInfo("system:kube-controller-manager", ("system:authenticated",)), "PUT",
     "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
     "system-leader-election"),
    (UserInfo("system:kube-controller-manager", ("system:authenticated",)), "POST",
     "/api/v1/namespaces/default/pods", "kube-controller-manager"),
    (UserInfo("system:kube-scheduler", ("system:authenticated",)), "POST",
     "/api/v1/namespaces/default/pods/p/binding", "kube-scheduler"),
    (UserInfo("system:serviceaccount:kube-system:coredns", ("system:serviceaccounts", "system:authenticated")),
     "GET", "/api/v1/services", "kube-system-service-accounts"),
    (UserInfo("system:serviceaccount:default:app", ("system:serviceaccounts", "system:authenticated")),
     "GET", "/api/v1/namespaces/default/pods", "service-accounts"),
    (UserInfo("alice", ("system:authenticated",)), "GET", "/api/v1/namespaces/default/pods", "global-default"),
    (UserInfo("system:anonymous", ("system:unauthenticated",)), "GET", "/readyz", "probes"),
    (UserInfo("system:anonymous", ("system:unauthenticated",)), "GET", "/version", "global-default"),
    (UserInfo("root", ("system:masters", "system:authenticated")), "DELETE", "/api/v1/nodes/n1", "exempt"),
])
async def test_the_bootstrap_configuration_classifies_as_kubernetes(tmp_path: object, user: UserInfo, method: str,
                                                                     path: str, schema: str) -> None:
    store = SQLiteStore(f"{tmp_path}/state.db")
    flow_control = PriorityAndFairness(store, 600)  # not started: the bootstrap objects until it lists
    found = flow_control.classify(user, parse_request_info(method, path))
    assert found.schema_name == schema
    if schema in ("exempt", "probes"):
        assert found.queues is None
    else:
        assert found.queues is not None and found.queues.name == found.level_name
    # 600 seats shared by the shares (30+40+10+40+100+20+5 = 245), rounded up.
    assert {name: q.limit for name, q in flow_control.queue_sets.items()} == {
        "system": 74, "node-high": 98, "leader-election": 25, "workload-high": 98, "workload-low": 245,
        "global-default": 49, "catch-all": 13}


async def test_a_queued_request_is_turned_away_at_its_wait_limit_or_leaves_when_cancelled(tmp_path: object) -> None:
    from pilothouse.apiserver.auth import CALLER, Caller
    from pilothouse.machinery.errors import StatusError

    flow_control = PriorityAndFairness(SQLiteStore(f"{tmp_path}/state.db"), 3)  # one seat a level
    info = parse_request_info("GET", "/api/v1/namespaces/default/pods")
    request = {CALLER: Caller(UserInfo("alice", ("system:authenticated",)), None)}  # type: ignore[arg-type]
    held = await flow_control.acquire(request, info, 60.0)  # type: ignore[arg-type]
    level = flow_control.queue_sets["global-default"]
    started = asyncio.get_running_loop().time()
    with pytest.raises(StatusError) as refused:
        await flow_control.acquire(request, info, 0.4)  # type: ignore[arg-type]  # waits 0.1 s
    assert refused.value.code == 429 and asyncio.get_running_loop().time() - started >= 0.09
    assert (level.waiting, level.timed_out) == (0, 1)
    leaving = asyncio.ensure_future(flow_control.acquire(request, info, 60.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert level.waiting == 1
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert (level.waiting, level.cancelled, level.executing) == (0, 1, 1)
    staying = asyncio.ensure_future(flow_control.acquire(request, info, 60.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    held()  # the seat goes to the one still waiting
    release = await staying
    assert level.executing == 1
    release()
    assert (level.executing, level.waiting) == (0, 0)


async def test_a_seat_freed_between_a_cancel_and_its_withdraw_goes_to_the_next_waiter() -> None:
    """The client of a queued request leaves (its future cancelled at once, its withdraw to run on its
    task's next turn) and a seat is freed before that turn: the seat goes to the next waiter, none is
    lost, and the release raises nothing (before: InvalidStateError, and the seat held for good)."""
    level = QueueSet("node-high", limit=1, queues=4, hand_size=2, queue_length_limit=10)
    held = level.enter(level.hand(1))
    assert isinstance(held, int)  # the free seat, taken at once
    leaving, staying = level.enter(level.hand(1)), level.enter(level.hand(2))
    assert isinstance(leaving, asyncio.Future) and isinstance(staying, asyncio.Future)
    leaving.cancel()  # what Task.cancel does to the future its task awaits
    level.release(held)  # no InvalidStateError
    assert staying.done() and not staying.cancelled()
    level.withdraw(leaving, "cancelled")  # the cancelled task's turn comes
    assert (level.executing, level.waiting, level.cancelled) == (1, 0, 1)
    level.release(staying.result())
    assert (level.executing, level.waiting) == (0, 0)
