"""One limited priority level: its seats and its fair queues (``util/flowcontrol/fairqueuing/queueset``).

A request takes a seat at once when one is free and nobody of the level is waiting. Otherwise it is
dealt a hand of queues by its flow (shuffle sharding: ``handSize`` of the level's ``queues``, by a
hash of its FlowSchema and flow distinguisher, so that one heavy flow fills only its own hand) and
waits in the shortest of them, counting the requests of that queue already executing; a full queue
(``queueLengthLimit``) is a rejection. A freed seat goes to the head of the next non-empty queue in
turn, so that every queue with work, and therefore every flow, gets seats at the same rate however
many requests it has queued.

Simplified from kube-apiserver, and why: every request takes one seat (no work estimate widening a
LIST to several seats, no extra latency charged for a write's watch fan-out), and the queues are
served round robin rather than by virtual finish time, which is the same order when requests take a
seat each and last about as long; in this server a request's time is mostly its share of one CPU.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque

__all__ = ["Dealer", "QueueSet", "Rejected", "flow_hash"]


class Rejected(Exception):
    """The level turns the request away; ``reason`` as ``apiserver_flowcontrol_rejected_requests_total``'s."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def flow_hash(schema_name: str, distinguisher: str) -> int:
    """``hashFlowID``: the first 8 bytes, little-endian, of SHA-256 over both names and a NUL between."""
    digest = hashlib.sha256(f"{schema_name}\0{distinguisher}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class Dealer:
    """``shufflesharding.Dealer``: ``hand_size`` distinct queues out of ``deck_size``, from a hash."""

    def __init__(self, deck_size: int, hand_size: int) -> None:
        if not 0 < hand_size <= deck_size:
            raise ValueError(f"handSize {hand_size} must be between 1 and the number of queues {deck_size}")
        self.deck_size, self.hand_size = deck_size, hand_size

    def deal(self, hash_value: int) -> tuple[int, ...]:
        remainders: list[int] = []
        for i in range(self.hand_size):
            step = self.deck_size - i
            remainders.append(hash_value % step)
            hash_value //= step
        hand: list[int] = []
        for i, card in enumerate(remainders):
            for j in range(i, 0, -1):
                if card >= remainders[j - 1]:
                    card += 1
            hand.append(card)
        return tuple(hand)


class QueueSet:
    """The seats (``limit``) and queues of one priority level. ``queues`` 0: the level's limit
    response is Reject, so a request that finds no free seat is turned away at once."""

    def __init__(self, name: str, limit: int, queues: int, hand_size: int, queue_length_limit: int) -> None:
        self.name, self.limit = name, limit
        self.queue_length_limit = queue_length_limit
        self.dealer = Dealer(queues, min(hand_size, queues)) if queues else None
        self._queues: list[deque[asyncio.Future[int]]] = [deque() for _ in range(queues)]
        self._executing_in = [0] * queues
        #: Indexes of the queues holding waiters, in the order they are served.
        self._turns: deque[int] = deque()
        self.executing = self.waiting = 0
        self.dispatched = self.queued = self.rejected = self.timed_out = self.cancelled = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self._queues), self.dealer.hand_size if self.dealer else 0, self.queue_length_limit

    def hand(self, hash_value: int) -> tuple[int, ...]:
        return self.dealer.deal(hash_value) if self.dealer else ()

    def active_queues(self) -> int:
        return len(self._turns)

    def enter(self, hand: tuple[int, ...]) -> int | asyncio.Future[int]:
        """The queue a request executes under (a seat taken now), or a future that yields it when a
        seat is given. Raises :class:`Rejected`."""
        if not hand:
            if self.executing >= self.limit:
                self.rejected += 1
                raise Rejected("concurrency-limit")
            self.executing += 1
            self.dispatched += 1
            return -1
        queues, executing_in = self._queues, self._executing_in
        chosen = min(hand, key=lambda q: len(queues[q]) + executing_in[q])
        if self.executing < self.limit and not self.waiting:
            self._start(chosen)
            return chosen
        queue = queues[chosen]
        if len(queue) >= self.queue_length_limit:
            self.rejected += 1
            raise Rejected("queue-full")
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        if len(queue) == 1:
            self._turns.append(chosen)
        self.waiting += 1
        self.queued += 1
        return waiter

    def _start(self, queue: int) -> None:
        self.executing += 1
        self.dispatched += 1
        self._executing_in[queue] += 1

    def release(self, queue: int) -> None:
        """The request that executed under ``queue`` is done: its seat goes to the next in turn."""
        self.executing -= 1
        if queue >= 0:
            self._executing_in[queue] -= 1
        if self.waiting:
            self.dispatch()

    def dispatch(self) -> None:
        """Give free seats to the heads of the queues with waiters, one queue after the other.

        A waiter already cancelled is dropped, not given the seat: its client left, which cancels
        the future at once, while its :meth:`withdraw` runs only when its task next gets the loop, so
        a seat freed in between finds it still queued. Given the seat, it would hold it for good (no
        one left to release it) and ``set_result`` would raise out of the releasing request's
        callback: under load, every such race took a seat off the level (the density run's
        node-high level lost them this way)."""
        while self.executing < self.limit and self._turns:
            index = self._turns.popleft()
            queue = self._queues[index]
            waiter = queue.popleft()
            self.waiting -= 1
            if queue:
                self._turns.append(index)
            if waiter.done():  # cancelled, its withdraw still to come: it finds the waiter gone
                continue
            self._start(index)
            waiter.set_result(index)

    def withdraw(self, waiter: asyncio.Future[int], reason: str) -> None:
        """A waiter that timed out or whose client left (``reason``: time-out, cancelled). If it was
        given a seat meanwhile, the seat is released instead."""
        if waiter.done() and not waiter.cancelled():
            if waiter.exception() is not None:
                return  # failed by its expiry, which withdrew it already
            self.release(waiter.result())
        else:
            for index, queue in enumerate(self._queues):
                if waiter in queue:
                    queue.remove(waiter)
                    self.waiting -= 1
                    if not queue:
                        self._turns.remove(index)
                    break
        if reason == "time-out":
            self.timed_out += 1
        else:
            self.cancelled += 1
