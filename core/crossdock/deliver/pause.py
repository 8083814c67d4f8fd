"""Pausing a destination that cannot take events now, and probing it again.

Two reasons, one mechanism (a :class:`PauseState` each):

- the vendor refused the credentials: one probe batch after 5 s, 10 s, ... (capped at
  5 minutes, :data:`~.pacing.PAUSE_BACKOFF`); it resumes when a probe is not refused for
  credentials;
- the vendor is down (a whole batch answered "retry later": refused connections, timeouts,
  5xx, 429): one probe batch after ``max(Retry-After, 1 s, 2 s, 4 s ...)`` capped at 30 s
  (:data:`OUTAGE_BACKOFF`); it resumes when a probe is not answered "retry later" as a whole.
  While down, the backlog is not fetched, so an outage costs one batch of retry records per
  probe instead of one per queued event.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from attrs import define, field

from crossdock.deliver.pacing import PAUSE_BACKOFF, Backoff

__all__ = ["OUTAGE_BACKOFF", "PauseState"]

OUTAGE_BACKOFF = Backoff(base=1.0, factor=2.0, cap=30.0, jitter=False)
"""Probing a destination that is down: 1 s, 2 s, 4 s ... capped at 30 s (so a recovered
vendor is noticed within 30 s)."""


@define
class PauseState:
    """Whether a destination is paused, why, and when its next probe is due (monotonic)."""

    backoff: Backoff = PAUSE_BACKOFF
    rng: Callable[[], float] = random.random
    paused: bool = field(init=False, default=False)
    reason: str | None = field(init=False, default=None)
    count: int = field(init=False, default=0)
    probe_at: float = field(init=False, default=0.0)

    def pause(self, reason: str, at_least: float = 0.0) -> bool:
        """Pause (again) with ``reason``; the next probe waits one more backoff step, and at
        least ``at_least`` seconds (a vendor's ``Retry-After``).
        True when the destination was running until now."""
        self.count += 1
        delay = max(at_least, self.backoff.delay(self.count, self.rng))
        self.probe_at = time.monotonic() + delay
        started = not self.paused
        self.paused = True
        self.reason = reason
        return started

    def resume(self) -> bool:
        """Resume; True when the destination was paused until now."""
        was = self.paused
        self.paused = False
        self.reason = None
        self.count = 0
        return was

    def probe_delay(self) -> float:
        """Seconds until the next probe is due (0 when it is)."""
        return max(0.0, self.probe_at - time.monotonic())
