"""Pausing a destination whose credentials the vendor refused, and probing it again.

While paused, a destination sends nothing but one probe batch after 5 s, 10 s, ... (capped at
5 minutes, :data:`~.pacing.PAUSE_BACKOFF`); it resumes when a probe is not refused for
credentials.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from attrs import define, field

from crossdock.deliver.pacing import PAUSE_BACKOFF, Backoff

__all__ = ["PauseState"]


@define
class PauseState:
    """Whether a destination is paused, why, and when its next probe is due (monotonic)."""

    backoff: Backoff = PAUSE_BACKOFF
    rng: Callable[[], float] = random.random
    paused: bool = field(init=False, default=False)
    reason: str | None = field(init=False, default=None)
    count: int = field(init=False, default=0)
    probe_at: float = field(init=False, default=0.0)

    def pause(self, reason: str) -> bool:
        """Pause (again) with ``reason``; the next probe waits one more backoff step.
        True when the destination was running until now."""
        self.count += 1
        self.probe_at = time.monotonic() + self.backoff.delay(self.count, self.rng)
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
