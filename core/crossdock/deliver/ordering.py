"""Per-user ordering: hold a user's later events while an earlier one waits for retry.

The hold key is ``userId``, else ``anonymousId`` (events without either are not ordered).
:class:`UserOrder` remembers, in memory, which of each user's events wait in the retry table and
when they are due; after a restart only counts per user are known (``queue.held_keys``), and
they are "seeded" here. See :class:`~.worker.DestinationWorker` for the promise and its limits.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import define, field

from crossdock.queue import QueuedEvent, Retry
from crossdock.types import Event

__all__ = ["HELD_REASON", "UNKNOWN_HOLD_DUE", "UserOrder", "hold_key"]

UNKNOWN_HOLD_DUE = 5.0
"""Seconds a held event waits when its blocker's schedule is unknown (seeded after a restart)."""

HELD_REASON = "held: an earlier event of this user waits for retry"


def hold_key(event: Event) -> str | None:
    """The user an event is ordered by: ``userId``, else ``anonymousId``, else ``None``."""
    key = event.get("userId") or event.get("anonymousId")
    return key if isinstance(key, str) and key else None


@define
class UserOrder:
    """Which events of each user wait for retry (``seq`` → due time), and seeded counts."""

    max_held_per_user: int
    _waiting: dict[str, dict[int, float]] = field(init=False, factory=dict)
    _seeded: dict[str, int] = field(init=False, factory=dict)

    def seed(self, counts: Mapping[str, int]) -> None:
        """Start from the per-user counts of waiting events the queue reports."""
        self._seeded = {k: n for k, n in counts.items() if n > 0}

    @property
    def held_users(self) -> int:
        """Users with at least one event waiting."""
        return len(self._waiting.keys() | self._seeded.keys())

    def hold(self, q: QueuedEvent, now: float) -> Retry | None:
        """Take ``q`` out of its user's waiting set; if an earlier event of that user still
        waits, the retry that holds ``q`` until that event is due (else ``None``)."""
        key = hold_key(q.event)
        if key is None:
            return None
        waiting = self._waiting.get(key)
        seeded = self._seeded.get(key, 0)
        from_retry = q.first_attempt_at is not None
        if waiting is not None and q.seq in waiting:
            del waiting[q.seq]
        elif from_retry and seeded:
            seeded -= 1
            self._set_seeded(key, seeded)
        earlier_due: float | None = None
        if waiting:
            for seq, due in waiting.items():
                if seq < q.seq and (earlier_due is None or due > earlier_due):
                    earlier_due = due
        elif waiting is not None:
            del self._waiting[key]
        blocked = earlier_due is not None or (seeded > 0 and not from_retry)
        if not blocked:
            return None
        total = (len(waiting) if waiting else 0) + seeded
        if total > self.max_held_per_user:
            return None
        if earlier_due is None:
            due = now + UNKNOWN_HOLD_DUE
        else:
            due = earlier_due if earlier_due > now else now
        first = q.first_attempt_at if from_retry else now
        self.mark_waiting(key, q.seq, due)
        return Retry(q.seq, q.event, due, q.attempts, first, HELD_REASON, key)

    def mark_waiting(self, key: str, seq: int, due: float) -> None:
        """Remember that event ``seq`` of user ``key`` waits until ``due``."""
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = {}
        waiting[seq] = due

    def _set_seeded(self, key: str, count: int) -> None:
        if count > 0:
            self._seeded[key] = count
        else:
            self._seeded.pop(key, None)
