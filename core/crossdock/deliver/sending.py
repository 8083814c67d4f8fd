"""Sending one destination's batches: rate limit, concurrency, the deliver contract, isolation.

One :class:`Sender` per destination, used by the daemon's worker and by ``crossdock backfill``
alike. Every request (every ``deliver`` call) first takes ``request_cost(items)`` tokens (1 when
the deliverer declares no cost) from the destination's :class:`~.pacing.RateLimiter`, and runs
in one of ``concurrency`` slots. A batch whose items come back :class:`~crossdock.BatchRejected`
is isolated here: when the whole request was refused its items are resent in halves; when only
some items were (their batch-mates got other outcomes, e.g. the vendor named the bad ones), those
are resent together, as they are likely innocent. This goes on until each refused event was
refused alone, then it becomes :class:`~crossdock.Rejected` with the vendor's answer. The
caller settles plain outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from attrs import define, field

from crossdock.deliver.outcomes import clean_text
from crossdock.deliver.pacing import RateLimiter
from crossdock.metrics import Metrics
from crossdock.types import (
    BatchItem,
    BatchRejected,
    CredentialsRejected,
    Delivered,
    Deliverer,
    Destination,
    Outcome,
    Rejected,
    RetryLater,
)

__all__ = ["Sender", "call_deliverer", "request_word"]

log = logging.getLogger("crossdock.delivery")


@define(eq=False)
class Sender:
    """Sends batches of one destination (see the module docstring).

    ``slots`` bounds the requests in flight: a caller holds one slot per batch (the worker
    takes it before forming the batch; :meth:`deliver` takes it itself); isolating a refused
    batch sends its second half in a free slot when there is one, else after the first half.
    ``metrics`` (optional) counts requests by outcome and observes their duration.
    """

    deliverer: Deliverer
    destination_id: str
    limiter: RateLimiter
    concurrency: int
    timeout: float
    secrets: tuple[Any, ...] = ()
    metrics: Metrics | None = None
    plugin: str = ""
    slots: asyncio.Semaphore = field(init=False)
    requests: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.slots = asyncio.Semaphore(max(1, self.concurrency))

    @classmethod
    def of(
        cls,
        destination: Destination,
        deliverer: Deliverer,
        *,
        secrets: tuple[Any, ...] = (),
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
    ) -> Sender:
        """The sender of ``destination``: its rate limit and concurrency (``[destinations.
        delivery]`` over the vendor's :class:`~crossdock.Limits`) and its timeout."""
        limits, delivery = destination.limits, destination.delivery
        rate = delivery.rate_limit if delivery.rate_limit is not None else limits.rate_limit
        return cls(
            deliverer,
            destination.id,
            limiter if limiter is not None else RateLimiter(rate),
            max(1, delivery.concurrency or limits.concurrency),
            delivery.timeout,
            secrets,
            metrics,
            destination.plugin,
        )

    async def deliver(self, items: Sequence[BatchItem]) -> list[Outcome]:
        """:meth:`send` in a slot of its own (for callers that do not hold one)."""
        async with self.slots:
            return await self.send(items)

    async def send(self, items: Sequence[BatchItem]) -> list[Outcome]:
        """Send ``items`` (the caller holds a slot); one outcome per item, none of them
        :class:`~crossdock.BatchRejected`."""
        if not items:
            return []
        outcomes = list(await self._request(items))
        refused = [i for i, o in enumerate(outcomes) if isinstance(o, BatchRejected)]
        if not refused:
            return outcomes
        if len(items) == 1:
            outcomes[0] = _alone(outcomes[0], self.secrets)
            return outcomes
        if len(refused) == len(items):
            middle = len(refused) // 2
            parts = [refused[:middle], refused[middle:]]
        else:
            parts = [refused]
        results = await self._send_parts([[items[i] for i in part] for part in parts])
        for part, result in zip(parts, results, strict=True):
            for i, outcome in zip(part, result, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _send_parts(self, parts: list[list[BatchItem]]) -> list[list[Outcome]]:
        if len(parts) == 2 and not self.slots.locked():
            await self.slots.acquire()
            first, second = await asyncio.gather(self.send(parts[0]), self._in_slot(parts[1]))
            return [first, second]
        return [await self.send(part) for part in parts]

    async def _in_slot(self, items: list[BatchItem]) -> list[Outcome]:
        try:
            return await self.send(items)
        finally:
            self.slots.release()

    async def _request(self, items: Sequence[BatchItem]) -> Sequence[Outcome]:
        """One ``deliver`` call, after the rate limiter; counted and timed."""
        cost = getattr(self.deliverer, "request_cost", None)
        await self.limiter.acquire(float(cost(items)) if callable(cost) else 1.0)
        self.requests += 1
        started = time.monotonic()
        outcomes, failure, detail = await call_deliverer(
            self.deliverer, items, timeout=self.timeout, secrets=self.secrets
        )
        if failure == "error":
            log.warning(
                "deliver raised; the batch will be retried",
                extra={"destination": self.destination_id, "error": detail, "events": len(items)},
            )
        elif failure == "plugin_error":
            log.error(
                "plugin bug: deliver returned the wrong number of outcomes; retrying the batch",
                extra={"destination": self.destination_id, "plugin": self.plugin,
                       "expected": len(items), "got": detail},
            )  # fmt: skip
        if self.metrics is not None:
            word = failure or request_word(outcomes)
            labels = (self.destination_id,)
            self.metrics.inc("crossdock_delivery_requests_total", (self.destination_id, word))
            self.metrics.observe(
                "crossdock_delivery_duration_seconds", labels, time.monotonic() - started
            )
        return outcomes


async def call_deliverer(
    deliverer: Deliverer, items: Sequence[BatchItem], *, timeout: float, secrets: Sequence[Any]
) -> tuple[Sequence[Outcome], str | None, str]:
    """Call ``deliver`` under the hook's contract: one outcome per item, or retry-later for all.

    Returns the outcomes, what went wrong (``None``, ``"timeout"``, ``"error"``: ``deliver``
    raised, ``"plugin_error"``: the wrong number of outcomes) and a detail for the log (the
    masked error text, or the number of outcomes received).
    """
    try:
        async with asyncio.timeout(timeout):
            outcomes = await deliverer.deliver(items)
    except TimeoutError:
        return [RetryLater(f"timeout after {timeout:g} s")] * len(items), "timeout", ""
    except Exception as exc:
        reason = clean_text(f"{type(exc).__name__}: {exc}", secrets, 500) or ""
        return [RetryLater(reason)] * len(items), "error", reason
    if not isinstance(outcomes, Sequence) or len(outcomes) != len(items):
        got = len(outcomes) if isinstance(outcomes, Sequence) else type(outcomes).__name__
        reason = f"plugin returned {got} outcomes for {len(items)} events"
        return [RetryLater(reason)] * len(items), "plugin_error", str(got)
    return outcomes, None, ""


def request_word(outcomes: Sequence[Outcome]) -> str:
    """The ``outcome`` label of one request.

    ``credentials_rejected`` when any item was; else ``delivered`` (all items), ``partial``
    (some delivered, others not), or, with none delivered, ``retry``, ``batch_rejected`` (refused
    without naming events: the core splits it) or ``rejected``.
    """
    delivered = refused = retry = 0
    for outcome in outcomes:
        if isinstance(outcome, CredentialsRejected):
            return "credentials_rejected"
        if isinstance(outcome, Delivered):
            delivered += 1
        elif isinstance(outcome, BatchRejected):
            refused += 1
        elif isinstance(outcome, RetryLater) or not isinstance(outcome, Rejected):
            retry += 1
    if delivered == len(outcomes):
        return "delivered"
    if delivered:
        return "partial"
    if retry:
        return "retry"
    return "batch_rejected" if refused else "rejected"


def _alone(outcome: Outcome, secrets: Sequence[Any]) -> Outcome:
    """A lone event's :class:`~crossdock.BatchRejected` as the :class:`~crossdock.Rejected`
    it stands for (reason masked; the body is masked and cut when settled)."""
    assert isinstance(outcome, BatchRejected)
    reason = clean_text(outcome.reason, secrets, 500) or "rejected"
    return Rejected(reason, outcome.status, outcome.body)
