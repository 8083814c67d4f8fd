"""Pacing for delivery: a token-bucket :class:`RateLimiter` and the :class:`Backoff` policy.

Both are per destination (one of each per :class:`~.worker.DestinationWorker`), which
is what keeps destinations isolated: a slow vendor only waits on its own bucket.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from attrs import define, field, frozen


@frozen
class Backoff:
    """Exponential backoff: attempt ``n`` (1-based) waits ``min(cap, base * factor**(n-1))``.

    With ``jitter`` ("full jitter"), the wait is a uniform draw in ``[0, that)`` using the ``rng``
    passed to :meth:`delay`, so tests get a deterministic schedule by injecting the rng.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: bool = True

    def ceiling(self, attempt: int) -> float:
        """The un-jittered wait before attempt ``attempt + 1``."""
        exponent = max(0, attempt - 1)
        # Guard the power: huge attempt counts must not overflow before the cap applies.
        if exponent > 64:
            return self.cap
        return min(self.cap, self.base * self.factor**exponent)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``attempt``-th failure."""
        ceiling = self.ceiling(attempt)
        return rng() * ceiling if self.jitter else ceiling


RETRY_BACKOFF = Backoff(base=1.0, factor=2.0, cap=600.0, jitter=True)
"""Retries: 1 s, 2 s, 4 s ... capped at 10 minutes, full jitter."""

PAUSE_BACKOFF = Backoff(base=5.0, factor=2.0, cap=300.0, jitter=False)
"""Probing a paused destination: 5 s, 10 s, 20 s ... capped at 5 minutes."""


@define
class RateLimiter:
    """A token bucket: at most ``rate`` acquisitions per second on average, bursts up to ``burst``.

    :meth:`acquire` reserves its tokens at once (the bucket may go into debt) and then sleeps for
    the debt, so concurrent callers queue fairly without a lock: over any window of ``w``
    seconds at most ``burst + rate * w`` tokens are handed out. ``rate=None`` means unlimited.
    """

    rate: float | None
    burst: float = field(default=None)
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False, default=0.0)
    _last: float = field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        if self.burst is None:
            self.burst = 1.0 if self.rate is None else max(1.0, self.rate / 10.0)
        self._tokens = self.burst
        self._last = self.clock()

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` may be spent (immediately when there is no limit)."""
        rate = self.rate
        if rate is None or rate <= 0:
            return
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * rate)
        self._last = now
        self._tokens -= tokens
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / rate)
