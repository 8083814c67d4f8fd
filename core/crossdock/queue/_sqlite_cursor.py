"""A destination's read progress: what is in flight, and how far the durable position may move.

Pure bookkeeping, no I/O. The queue keeps one :class:`Cursor` per registered destination and
touches it only on the event loop. Fetches take ``lock``, settles ``settle_lock``: a settle
waits for its commit (behind ingest's group commits, an fsync each) without holding up the
next fetch, and plans only from what it settles (a fetch meanwhile only hands out later seqs,
which a plan already counts as not settled). Settles of one destination never interleave with
each other.

``read_pos`` runs ahead of ``durable``: events after ``durable`` and up to ``read_pos`` were
handed out; those not settled yet are in ``inflight_new``. ``durable`` only moves over a
contiguous prefix of settled seqs, so a crash re-delivers what was in flight (duplicates),
never skips it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from attrs import define, field, frozen


@frozen
class SettlePlan:
    """What one settle changes: which seqs were new events and which were retries, the new
    durable position, and the new-event seqs settled beyond it (kept in ``settled``)."""

    new: frozenset[int]
    retried: frozenset[int]
    durable: int
    beyond: tuple[int, ...]


@define
class Cursor:
    """In-memory progress of one destination (see the module docstring)."""

    durable: int
    read_pos: int
    skip: set[int] = field(factory=set)
    inflight_new: dict[int, float] = field(factory=dict)
    order: deque[int] = field(factory=deque)
    inflight_retry: dict[int, float | None] = field(factory=dict)
    lock: asyncio.Lock = field(factory=asyncio.Lock)
    settle_lock: asyncio.Lock = field(factory=asyncio.Lock)

    def plan(self, seqs: set[int]) -> SettlePlan:
        """Work out a settle of ``seqs`` without changing anything (applied after commit)."""
        new = frozenset(self.inflight_new.keys() & seqs)
        retried = frozenset(seqs - new)
        durable = self.read_pos
        for seq in self.order:
            if seq in self.inflight_new and seq not in new:
                durable = seq - 1
                break
        durable = max(durable, self.durable)
        beyond = tuple(sorted(s for s in new if s > durable))
        return SettlePlan(new=new, retried=retried, durable=durable, beyond=beyond)

    def apply(self, plan: SettlePlan) -> None:
        """Record a committed settle."""
        for seq in plan.new:
            del self.inflight_new[seq]
        for seq in plan.retried:
            self.inflight_retry.pop(seq, None)
        order = self.order
        while order and order[0] not in self.inflight_new:
            order.popleft()
        if plan.durable > self.durable:
            self.durable = plan.durable
            if self.skip:
                self.skip = {s for s in self.skip if s > plan.durable}

    def hand_out_new(self, seqs: list[int], times: list[float], read_pos: int) -> None:
        """Record new events handed to the worker (their seqs, ascending, and enqueue times);
        ``read_pos`` is the last seq looked at."""
        self.inflight_new.update(zip(seqs, times, strict=True))
        self.order.extend(seqs)
        self.read_pos = max(self.read_pos, read_pos)

    def hand_out_retries(self, seqs_and_times: list[tuple[int, float | None]]) -> None:
        """Record retries handed to the worker."""
        for seq, enqueued_at in seqs_and_times:
            self.inflight_retry[seq] = enqueued_at

    def enqueued_at(self, seq: int) -> float | None:
        """Enqueue time of an in-flight event, if known."""
        if seq in self.inflight_new:
            return self.inflight_new[seq]
        return self.inflight_retry.get(seq)
