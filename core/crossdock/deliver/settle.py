"""Settling outcomes: the retry and dead-letter rule, and the record of one ``queue.settle``.

:class:`RetryRule` is the one rule the daemon and ``crossdock backfill`` apply to an event the
vendor asked to retry: wait ``max(Retry-After, backoff)``, and give up (dead letter, or a failed
line) once *both* ``max_attempts`` attempts were made and ``max_age`` has passed since the first.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from attrs import define, field, frozen

from crossdock.deliver.pacing import RETRY_BACKOFF, Backoff
from crossdock.queue import DeadLetter, Retry
from crossdock.types import DeliverySettings, RetryLater

__all__ = ["RetryRule", "Settlement"]


@frozen
class RetryRule:
    """When to try an event again, and when to give up on it (see the module docstring)."""

    max_attempts: int
    max_age: float
    backoff: Backoff = RETRY_BACKOFF

    @classmethod
    def of(cls, delivery: DeliverySettings, backoff: Backoff = RETRY_BACKOFF) -> RetryRule:
        """The rule of ``[destinations.delivery]``."""
        return cls(max(1, delivery.max_attempts), max(0.0, delivery.max_age), backoff)

    def gives_up(self, attempts: int, first_attempt_at: float, now: float) -> bool:
        """Whether an event that failed its ``attempts``-th attempt is not tried again."""
        return attempts >= self.max_attempts and now - first_attempt_at >= self.max_age

    def delay(
        self, outcome: RetryLater, attempts: int, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds until the next attempt after the ``attempts``-th failed with ``outcome``."""
        return max(outcome.after or 0.0, self.backoff.delay(attempts, rng))


@define(slots=True)
class Settlement:
    """Outcomes waiting for one ``queue.settle`` call: done seqs, retries and dead letters."""

    done: list[int] = field(factory=list)
    retries: list[Retry] = field(factory=list)
    dead: list[DeadLetter] = field(factory=list)

    def __bool__(self) -> bool:
        return bool(self.done or self.retries or self.dead)
