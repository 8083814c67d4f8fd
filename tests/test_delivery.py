"""DestinationWorker: batching, pacing, retries, dead letters, pause, ordering, isolation, stop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import attrs
import pytest
from attrs import define, field

import crossdock
from crossdock import (
    DELIVERED,
    BatchItem,
    CredentialsRejected,
    DeliverySettings,
    Destination,
    DestinationType,
    Limits,
    Outcome,
    Rejected,
    RetryLater,
    Secret,
)
from crossdock.deliver.destinations.webhook import WebhookDeliverer, WebhookSettings
from crossdock.deliver.pacing import Backoff, RateLimiter
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import AppendResult, DeadLetter, QueuedEvent, QueueStats, Retry
from crossdock.testing.fakes import FakeVendor

# ---------------------------------------------------------------------------------------------
# An in-memory Queue (the protocol's semantics, no durability) so these tests do not depend on
# the SQLite backend.


@define
class MemoryQueue:
    """The Queue protocol in memory: append order, leases, retry table, dead letters."""

    events: list[tuple[int, dict[str, Any]]] = field(factory=list)
    position: dict[str, int] = field(factory=dict)
    leased: dict[str, set[int]] = field(factory=dict)
    retries: dict[str, dict[int, Retry]] = field(factory=dict)
    done: dict[str, list[int]] = field(factory=dict)
    dead: dict[str, list[DeadLetter]] = field(factory=dict)
    settles: int = 0
    releases: int = 0
    _seq: Any = field(factory=lambda: itertools.count(1))
    _signal: asyncio.Event = field(factory=asyncio.Event)

    async def open(self, destinations: Sequence[str]) -> None:
        for d in destinations:
            self.position.setdefault(d, len(self.events))
            self.leased.setdefault(d, set())
            self.retries.setdefault(d, {})
            self.done.setdefault(d, [])
            self.dead.setdefault(d, [])

    async def append(self, events: Sequence[dict[str, Any]]) -> AppendResult:
        for e in events:
            self.events.append((next(self._seq), e))
        self._signal.set()
        self._signal = asyncio.Event()
        return AppendResult(len(events), 0)

    async def fetch(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        out: list[QueuedEvent] = []
        leased = self.leased[destination]
        due = sorted(
            (r for r in self.retries[destination].values() if r.next_at <= now),
            key=lambda r: (r.next_at, r.seq),
        )
        for r in due[:limit]:
            del self.retries[destination][r.seq]
            leased.add(r.seq)
            out.append(QueuedEvent(r.seq, r.event, r.attempts, r.first_attempt_at))
        pos = self.position[destination]
        while len(out) < limit and pos < len(self.events):
            seq, event = self.events[pos]
            pos += 1
            leased.add(seq)
            out.append(QueuedEvent(seq, event))
        self.position[destination] = pos
        return out

    async def settle(
        self,
        destination: str,
        done: Sequence[int],
        retries: Sequence[Retry] = (),
        dead: Sequence[DeadLetter] = (),
    ) -> None:
        self.settles += 1
        leased = self.leased[destination]
        for seq in done:
            leased.discard(seq)
            self.done[destination].append(seq)
        for r in retries:
            leased.discard(r.seq)
            self.retries[destination][r.seq] = r
        for d in dead:
            leased.discard(d.seq)
            self.dead[destination].append(d)

    async def release(self, destination: str, now: float) -> int:
        self.releases += 1
        moved = 0
        for seq, r in list(self.retries[destination].items()):
            if r.next_at > now:
                self.retries[destination][seq] = attrs.evolve(r, next_at=now)
                moved += 1
        return moved

    async def wait(self, destination: str, timeout: float) -> None:
        signal = self._signal
        if self.position[destination] < len(self.events):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)

    async def held_keys(self, destination: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.retries[destination].values():
            if r.hold_key:
                counts[r.hold_key] = counts.get(r.hold_key, 0) + 1
        return counts

    async def stats(self, destination: str) -> QueueStats:
        pending = len(self.events) - self.position[destination] + len(self.leased[destination])
        return QueueStats(
            pending, len(self.retries[destination]), len(self.dead[destination]), None
        )

    # helpers for assertions
    def delivered_ids(self, destination: str) -> list[str]:
        by_seq = dict(self.events)
        return [by_seq[s]["messageId"] for s in self.done[destination]]

    def unsettled(self, destination: str) -> int:
        return len(self.events) - len(self.done[destination]) - len(self.dead[destination])


# ---------------------------------------------------------------------------------------------
# Helpers


def make_event(i: int, *, user: str | None = None, source: str = "web") -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Clicked",
        "messageId": f"m{i}",
        "userId": user or f"u{i}",
        "receivedAt": "2024-01-01T00:00:00.000Z",
        "properties": {"i": i},
        "context": {"crossdock": {"source": source, "sources": [source]}},
    }


@define
class ScriptedDeliverer:
    """A deliverer whose answers come from a function of the batch; records every batch."""

    answer: Callable[[Sequence[BatchItem]], Sequence[Outcome]] = lambda b: [DELIVERED] * len(b)
    delay: float = 0.0
    batches: list[list[dict[str, Any]]] = field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        self.batches.append([item.payload for item in batch])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            result = self.answer(batch)
            if isinstance(result, Exception):
                raise result
            return result
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        pass


def destination(
    id: str = "dest",
    *,
    limits: Limits | None = None,
    settings: Any = None,
    sources: tuple[str, ...] | None = None,
    **delivery: Any,
) -> Destination:
    delivery.setdefault("max_wait_ms", 20)
    dtype = DestinationType("test", object, "test destination", limits=limits or Limits())
    return Destination(
        id=id,
        plugin="test",
        type=dtype,
        settings=settings,
        mapping={".": "@"},
        sources=sources,
        delivery=DeliverySettings(**delivery),
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NO_WAIT = Backoff(base=0.0, cap=0.0, jitter=False)


async def start_worker(
    dest: Destination,
    deliverer: Any,
    queue: MemoryQueue | None = None,
    transformer: Callable[[dict[str, Any]], Any] = lambda e: e,
    **kwargs: Any,
) -> tuple[DestinationWorker, MemoryQueue, Metrics]:
    queue = queue or MemoryQueue()
    await queue.open([dest.id])
    metrics = Metrics()
    kwargs.setdefault("idle_poll", 0.02)
    # Probing a down destination at once keeps the fake clock in charge of the schedule.
    kwargs.setdefault("outage_backoff", NO_WAIT)
    worker = DestinationWorker(dest, transformer, deliverer, queue, metrics, **kwargs)
    await worker.start()
    return worker, queue, metrics


# ---------------------------------------------------------------------------------------------
# Pacing units


def test_backoff_full_jitter_is_deterministic_with_rng() -> None:
    b = Backoff()
    assert [b.ceiling(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert b.ceiling(40) == 600.0
    assert b.ceiling(10_000) == 600.0
    assert b.delay(3, rng=lambda: 0.5) == 2.0
    assert Backoff(base=5, cap=300, jitter=False).delay(10) == 300.0


async def test_rate_limiter_spaces_acquisitions() -> None:
    now = [0.0]
    limiter = RateLimiter(10.0, burst=1.0, clock=lambda: now[0])
    await limiter.acquire()  # the burst token
    slept: list[float] = []
    original = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await original(0)

    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        await limiter.acquire()
        await limiter.acquire()
    finally:
        asyncio.sleep = original  # type: ignore[assignment]
    assert slept == pytest.approx([0.1, 0.2])


# ---------------------------------------------------------------------------------------------
# Batching


async def test_batches_by_count() -> None:
    deliverer = ScriptedDeliverer()
    dest = destination(batch_size=10, max_wait_ms=5000)
    queue = MemoryQueue()
    await queue.open([dest.id])
    await queue.append([make_event(i) for i in range(35)])
    worker, queue, metrics = await start_worker(dest, deliverer, queue)
    await until(lambda: len(queue.done[dest.id]) == 30)
    await worker.stop(5)
    sizes = [len(b) for b in deliverer.batches]
    assert sizes[:3] == [10, 10, 10]
    assert all(s <= 10 for s in sizes)
    assert metrics.get("crossdock_events_delivered_total", ("dest",)) >= 30


async def test_batch_respects_vendor_count_limit_over_operator_size() -> None:
    deliverer = ScriptedDeliverer()
    dest = destination(batch_size=100, limits=Limits(max_batch_count=7))
    queue = MemoryQueue()
    await queue.open([dest.id])
    await queue.append([make_event(i) for i in range(20)])
    worker, queue, _ = await start_worker(dest, deliverer, queue)
    await until(lambda: len(queue.done[dest.id]) == 20)
    await worker.stop(5)
    assert max(len(b) for b in deliverer.batches) == 7
    assert queue.delivered_ids(dest.id) == [f"m{i}" for i in range(20)]


async def test_batches_by_bytes() -> None:
    deliverer = ScriptedDeliverer()
    dest = destination(batch_size=100, max_bytes=1000)
    queue = MemoryQueue()
    await queue.open([dest.id])
    await queue.append([make_event(i) for i in range(30)])
    sent_sizes: list[int] = []

    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        sent_sizes.append(sum(len(i.data) + 1 for i in batch))
        return [DELIVERED] * len(batch)

    deliverer.answer = answer
    worker, queue, _ = await start_worker(dest, deliverer, queue)
    await until(lambda: len(queue.done[dest.id]) == 30)
    await worker.stop(5)
    assert len(sent_sizes) > 3
    assert max(sent_sizes) <= 1000
    assert sorted(queue.delivered_ids(dest.id)) == sorted(f"m{i}" for i in range(30))


async def test_waits_max_wait_to_fill_a_batch() -> None:
    deliverer = ScriptedDeliverer()
    dest = destination(batch_size=10, max_wait_ms=3000)
    worker, queue, _ = await start_worker(dest, deliverer)
    await queue.append([make_event(0)])
    await asyncio.sleep(0.05)
    await queue.append([make_event(i) for i in range(1, 10)])
    await until(lambda: len(queue.done[dest.id]) == 10)
    await worker.stop(5)
    # Both appends went out together: the worker waited for the batch to fill.
    assert [len(b) for b in deliverer.batches] == [10]


async def test_partial_batch_sent_after_max_wait() -> None:
    deliverer = ScriptedDeliverer()
    dest = destination(batch_size=100, max_wait_ms=30)
    worker, queue, _ = await start_worker(dest, deliverer)
    await queue.append([make_event(i) for i in range(3)])
    await until(lambda: len(queue.done[dest.id]) == 3)
    await worker.stop(5)
    assert [len(b) for b in deliverer.batches] == [3]


# ---------------------------------------------------------------------------------------------
# Routing, transform, sizes


async def test_routing_filter_drop_transform_failure_and_too_large() -> None:
    def transformer(event: dict[str, Any]) -> Any:
        i = event["properties"]["i"]
        if i == 1:
            return None
        if i == 2:
            raise ValueError("boom")
        if i == 3:
            return {"big": "x" * 5000}
        if i == 4:
            return {"bad": {1, 2}}  # orjson cannot serialize a set
        return event

    deliverer = ScriptedDeliverer()
    dest = destination(sources=("web",), limits=Limits(max_event_bytes=1000))
    queue = MemoryQueue()
    await queue.open([dest.id])
    events = [make_event(i) for i in range(6)]
    events[5] = make_event(5, source="other")
    await queue.append(events)
    worker, queue, metrics = await start_worker(dest, deliverer, queue, transformer)
    await until(lambda: len(queue.done[dest.id]) + len(queue.dead[dest.id]) == 6)
    await worker.stop(5)
    assert [p["messageId"] for b in deliverer.batches for p in b] == ["m0"]
    dead = {d.event["messageId"]: d.reason for d in queue.dead[dest.id]}
    assert dead["m2"] == "transform failed: ValueError: boom"
    assert dead["m3"].startswith("too large")
    assert dead["m4"].startswith("transform failed: TypeError")
    assert metrics.get("crossdock_events_filtered_total", ("dest",)) == 1
    assert metrics.get("crossdock_events_dropped_total", ("dest", "mapping")) == 1
    assert metrics.get("crossdock_events_dead_lettered_total", ("dest", "transform_failed")) == 2
    assert metrics.get("crossdock_events_dead_lettered_total", ("dest", "too_large")) == 1
    assert worker.transform(events[0]) == events[0]
    assert worker.transform(events[1]) is None


# ---------------------------------------------------------------------------------------------
# Retries and dead letters


async def test_retry_schedule_uses_backoff_and_retry_after() -> None:
    clock = Clock()
    answers = iter([[RetryLater("HTTP 503", None, 503)], [RetryLater("HTTP 429", 30.0, 429)]])
    deliverer = ScriptedDeliverer(answer=lambda b: next(answers))
    dest = destination()
    worker, queue, metrics = await start_worker(dest, deliverer, clock=clock, rng=lambda: 0.5)
    await queue.append([make_event(0)])
    await until(lambda: len(queue.retries[dest.id]) == 1)
    retry = queue.retries[dest.id][1]
    assert retry.attempts == 1
    assert retry.next_at == pytest.approx(clock.now + 0.5)  # 0.5 * 1 s
    assert retry.first_attempt_at == clock.now
    first = clock.now
    clock.now += 1
    queue._signal.set()
    await until(lambda: len(deliverer.batches) == 2 and 1 in queue.retries[dest.id])
    retry = queue.retries[dest.id][1]
    assert retry.attempts == 2
    assert retry.first_attempt_at == first
    assert retry.next_at == pytest.approx(clock.now + 30.0)  # Retry-After beats 0.5 * 2 s
    await worker.stop(5)
    assert metrics.get("crossdock_events_retried_total", ("dest", "http_503")) == 1
    assert metrics.get("crossdock_events_retried_total", ("dest", "http_429")) == 1


async def test_long_outage_does_not_dead_letter_until_both_limits() -> None:
    clock = Clock()
    deliverer = ScriptedDeliverer(answer=lambda b: [RetryLater("HTTP 500", None, 500)] * len(b))
    dest = destination(max_attempts=3, max_age=3600.0)
    worker, queue, metrics = await start_worker(dest, deliverer, clock=clock, rng=lambda: 0.0)
    await queue.append([make_event(0)])
    # Many attempts within the hour: never dead-lettered.
    for attempt in range(1, 8):
        await until(lambda a=attempt: len(deliverer.batches) == a and 1 in queue.retries[dest.id])
        assert queue.retries[dest.id][1].attempts == attempt
        clock.now += 60
    assert queue.dead[dest.id] == []
    # Past max_age as well: the next failure dead-letters it with the last reason.
    clock.now += 3600
    await until(lambda: len(queue.dead[dest.id]) == 1)
    await worker.stop(5)
    dead = queue.dead[dest.id][0]
    assert dead.reason == "HTTP 500"
    assert dead.attempts == 8
    assert metrics.get("crossdock_events_dead_lettered_total", ("dest", "max_attempts")) == 1


async def test_vendor_reject_dead_letters_only_that_event_with_masked_body() -> None:
    @define(frozen=True)
    class Settings:
        token: Secret

    secret = Secret("sk_live_very_secret")

    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        return [
            Rejected("HTTP 422", 422, "bad field; token=sk_live_very_secret " + "x" * 10_000)
            if item.payload["messageId"] == "m1"
            else DELIVERED
            for item in batch
        ]

    deliverer = ScriptedDeliverer(answer=answer)
    dest = destination(settings=Settings(secret))
    worker, queue, metrics = await start_worker(dest, deliverer)
    await queue.append([make_event(i) for i in range(3)])
    await until(lambda: len(queue.done[dest.id]) == 2 and len(queue.dead[dest.id]) == 1)
    await worker.stop(5)
    dead = queue.dead[dest.id][0]
    assert dead.event["messageId"] == "m1"
    assert dead.status == 422
    assert dead.body is not None
    assert "sk_live_very_secret" not in dead.body
    assert "***" in dead.body
    assert len(dead.body) <= 4100
    assert sorted(queue.delivered_ids(dest.id)) == ["m0", "m2"]
    assert metrics.get("crossdock_events_dead_lettered_total", ("dest", "vendor_rejected")) == 1


async def test_exception_timeout_and_wrong_outcome_count_retry_never_lose() -> None:
    clock = Clock()
    calls = itertools.count()

    def answer(batch: Sequence[BatchItem]) -> Any:
        n = next(calls)
        if n == 0:
            return RuntimeError("kaboom")
        if n == 1:
            return [DELIVERED]  # wrong count for a 2-event batch
        return [DELIVERED] * len(batch)

    deliverer = ScriptedDeliverer(answer=answer)
    dest = destination(batch_size=2)
    worker, queue, metrics = await start_worker(dest, deliverer, clock=clock, rng=lambda: 0.0)
    await queue.append([make_event(0), make_event(1)])
    await until(lambda: len(queue.done[dest.id]) == 2)
    await worker.stop(5)
    assert len(deliverer.batches) == 3
    assert queue.dead[dest.id] == []
    assert metrics.get("crossdock_events_retried_total", ("dest", "connection")) == 2
    assert metrics.get("crossdock_events_retried_total", ("dest", "plugin_error")) == 2
    assert metrics.get("crossdock_delivery_requests_total", ("dest", "plugin_error")) == 1


async def test_timeout_around_deliver_retries() -> None:
    clock = Clock()
    deliverer = ScriptedDeliverer(delay=5.0)
    dest = destination(timeout=0.05)
    worker, queue, metrics = await start_worker(dest, deliverer, clock=clock, rng=lambda: 0.0)
    await queue.append([make_event(0)])
    await until(lambda: metrics.get("crossdock_events_retried_total", ("dest", "timeout")) >= 1)
    deliverer.delay = 0
    await until(lambda: len(queue.done[dest.id]) == 1)
    await worker.stop(5)
    assert queue.dead[dest.id] == []


# ---------------------------------------------------------------------------------------------
# Pause on credentials


async def test_credentials_rejected_pauses_then_resumes() -> None:
    state = {"ok": False}

    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        if state["ok"]:
            return [DELIVERED] * len(batch)
        return [CredentialsRejected("HTTP 401: credentials rejected", 401)] * len(batch)

    deliverer = ScriptedDeliverer(answer=answer)
    dest = destination(batch_size=5, max_attempts=1, max_age=0.0)
    fast = Backoff(base=0.05, cap=0.2, jitter=False)
    worker, queue, metrics = await start_worker(dest, deliverer, pause_backoff=fast)
    await queue.append([make_event(i) for i in range(5)])
    await until(lambda: worker.status()["paused"])
    status = worker.status()
    assert "401" in status["pause_reason"]
    assert metrics.get("crossdock_destination_paused", ("dest",)) == 1
    # Probes keep failing; nothing is dead-lettered, attempts are not counted.
    await until(lambda: len(deliverer.batches) >= 3)
    assert queue.dead[dest.id] == []
    assert all(r.attempts == 0 for r in queue.retries[dest.id].values())
    state["ok"] = True
    await until(lambda: len(queue.done[dest.id]) == 5)
    await until(lambda: not worker.status()["paused"])
    await worker.stop(5)
    assert metrics.get("crossdock_destination_paused", ("dest",)) == 0
    assert queue.dead[dest.id] == []


# ---------------------------------------------------------------------------------------------
# Concurrency, rate limit, isolation (against real HTTP fakes)


def webhook_destination(id: str, url: str, **delivery: Any) -> Destination:
    from crossdock.deliver.destinations.webhook import DESTINATION_TYPE

    delivery.setdefault("max_wait_ms", 10)
    return Destination(
        id=id,
        plugin="webhook",
        type=DESTINATION_TYPE,
        settings=WebhookSettings(url=url, batch=True),
        mapping={".": "@"},
        delivery=DeliverySettings(**delivery),
    )


async def test_concurrency_limit_respected_at_the_vendor() -> None:
    async with FakeVendor() as fake, aiohttp.ClientSession() as http:
        fake.respond(200, delay=0.05)
        dest = webhook_destination("hook", fake.url + "/in", batch_size=1, concurrency=3)
        worker, queue, _ = await start_worker(dest, WebhookDeliverer(dest.settings, http))
        await queue.append([make_event(i) for i in range(15)])
        await until(lambda: len(queue.done["hook"]) == 15)
        await worker.stop(5)
    assert fake.max_in_flight <= 3
    assert fake.max_in_flight >= 2  # it did run requests concurrently


async def test_rate_limit_respected() -> None:
    async with FakeVendor() as fake, aiohttp.ClientSession() as http:
        dest = webhook_destination("hook", fake.url, batch_size=1, rate_limit=20, concurrency=4)
        worker, queue, _ = await start_worker(dest, WebhookDeliverer(dest.settings, http))
        await queue.append([make_event(i) for i in range(100)])
        await asyncio.sleep(0.5)
        started = fake.requests[0].received_at if fake.requests else time.time()
        await asyncio.sleep(0.5)
        await worker.stop(5)
    in_window = [r for r in fake.requests if r.received_at >= started]
    # 20 req/s: over the ~0.5 s window at most ~10 + burst (2) + slack.
    assert 0 < len(fake.requests) <= 20 + 2 + 4
    assert len(in_window) <= 20 + 2 + 4


async def test_isolation_failing_destination_does_not_slow_another() -> None:
    async with (
        FakeVendor() as good,
        FakeVendor() as bad,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        bad.script([500, 429, {"status": 200, "delay": 1.0}] * 50)
        bad.respond(503)
        queue = MemoryQueue()
        await queue.open(["good", "bad"])
        d_good = webhook_destination("good", good.url, batch_size=10)
        d_bad = webhook_destination("bad", bad.url, batch_size=10, timeout=0.2)
        metrics = Metrics()
        workers = [
            DestinationWorker(d, lambda e: e, WebhookDeliverer(d.settings, http), queue, metrics)
            for d in (d_good, d_bad)
        ]
        for w in workers:
            await w.start()
        await queue.append([make_event(i) for i in range(200)])
        await until(lambda: len(queue.done["good"]) == 200)
        for w in workers:
            await w.stop(1)
    assert len(bad.requests) >= 1
    assert queue.done["bad"] == [] or len(queue.done["bad"]) < 200
    assert metrics.total("crossdock_events_retried_total") > 0


# ---------------------------------------------------------------------------------------------
# Ordering


async def test_per_user_holds_later_events_while_earlier_retries() -> None:
    clock = Clock()
    state = {"fail": {"m0"}}

    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        return [
            RetryLater("HTTP 500", None, 500)
            if i.payload["messageId"] in state["fail"]
            else DELIVERED
            for i in batch
        ]

    deliverer = ScriptedDeliverer(answer=answer)
    dest = destination(ordering="per_user", batch_size=1)
    worker, queue, _ = await start_worker(dest, deliverer, clock=clock, rng=lambda: 1.0)
    await queue.append([make_event(0, user="alice")])
    await until(lambda: 1 in queue.retries[dest.id])
    blocker_due = queue.retries[dest.id][1].next_at
    # alice's next event is held (not sent); bob's goes through.
    await queue.append([make_event(1, user="alice"), make_event(2, user="bob")])
    await until(lambda: queue.delivered_ids(dest.id) == ["m2"] and 2 in queue.retries[dest.id])
    held = queue.retries[dest.id][2]
    assert held.attempts == 0
    assert held.hold_key == "alice"
    assert held.next_at == blocker_due
    assert [p["messageId"] for b in deliverer.batches for p in b] == ["m0", "m2"]
    # Once the blocker is due and succeeds, alice's events go in order.
    state["fail"] = set()
    clock.now = blocker_due
    queue._signal.set()
    await until(lambda: len(queue.done[dest.id]) == 3)
    await worker.stop(5)
    assert queue.delivered_ids(dest.id) == ["m2", "m0", "m1"]


async def test_per_user_bypass_when_too_many_held() -> None:
    clock = Clock()
    deliverer = ScriptedDeliverer(
        answer=lambda b: [
            RetryLater("HTTP 500", None, 500) if i.payload["messageId"] == "m0" else DELIVERED
            for i in b
        ]
    )
    dest = destination(ordering="per_user", max_held_per_user=2, batch_size=1)
    worker, queue, _ = await start_worker(dest, deliverer, clock=clock, rng=lambda: 1.0)
    await queue.append([make_event(0, user="alice")])
    await until(lambda: 1 in queue.retries[dest.id])
    await queue.append([make_event(i, user="alice") for i in range(1, 6)])
    await until(lambda: len(queue.done[dest.id]) == 3)
    await worker.stop(5)
    # m0 waits for retry; m1 and m2 are held (count reaches 3 > 2); the rest bypass.
    assert sorted(r.event["messageId"] for r in queue.retries[dest.id].values()) == [
        "m0",
        "m1",
        "m2",
    ]
    assert queue.delivered_ids(dest.id) == ["m3", "m4", "m5"]


async def test_per_user_seeds_holds_from_queue() -> None:
    clock = Clock()
    queue = MemoryQueue()
    await queue.open(["dest"])
    await queue.append([make_event(0, user="alice")])
    fetched = await queue.fetch("dest", 1, clock.now)
    await queue.settle(
        "dest",
        [],
        [Retry(fetched[0].seq, fetched[0].event, clock.now + 100, 1, clock.now, "x", "alice")],
    )
    deliverer = ScriptedDeliverer()
    dest = destination(ordering="per_user")
    worker, queue, _ = await start_worker(dest, deliverer, queue, clock=clock)
    await queue.append([make_event(1, user="alice"), make_event(2, user="bob")])
    await until(lambda: queue.delivered_ids("dest") == ["m2"] and len(queue.retries["dest"]) == 2)
    await worker.stop(5)
    assert queue.retries["dest"][2].hold_key == "alice"


# ---------------------------------------------------------------------------------------------
# Stop and status


async def test_stop_waits_for_in_flight_batches() -> None:
    deliverer = ScriptedDeliverer(delay=0.2)
    dest = destination(batch_size=5)
    worker, queue, _ = await start_worker(dest, deliverer)
    await queue.append([make_event(i) for i in range(5)])
    await until(lambda: deliverer.in_flight == 1)
    assert worker.status()["in_flight"] == 1
    await worker.stop(5)
    assert len(queue.done[dest.id]) == 5
    status = worker.status()
    assert status["delivered"] == 5
    assert status["running"] is False
    assert status["last_success_at"] is not None


async def test_stop_timeout_cancels_and_leaves_events_queued() -> None:
    deliverer = ScriptedDeliverer(delay=30)
    dest = destination(batch_size=5)
    worker, queue, _ = await start_worker(dest, deliverer)
    await queue.append([make_event(i) for i in range(5)])
    await until(lambda: deliverer.in_flight == 1)
    await worker.stop(0.05)
    assert queue.done[dest.id] == []
    assert queue.dead[dest.id] == []
    assert queue.unsettled(dest.id) == 5


async def test_status_is_json_able_and_masks_errors() -> None:
    import orjson

    @define(frozen=True)
    class Settings:
        key: Secret

    deliverer = ScriptedDeliverer(answer=lambda b: RuntimeError("bad key sk_abcdef123 rejected"))
    dest = destination(settings=Settings(Secret("sk_abcdef123")))
    worker, queue, _ = await start_worker(dest, deliverer, rng=lambda: 1.0)
    await queue.append([make_event(0)])
    await until(lambda: worker.status()["last_error"] is not None)
    await worker.stop(1)
    status = worker.status()
    orjson.dumps(status)
    assert "sk_abcdef123" not in status["last_error"]
    assert status["id"] == "dest"
    assert status["plugin"] == "test"
    assert status["paused"] is False


async def test_false_where_counts_as_filtered_and_empty_mapping_as_dropped() -> None:
    from crossdock.transform.mapping import compile_mapping

    transformer = compile_mapping(
        {".": "properties.i != `2` && @ || `null`"}, where="properties.i != `1`"
    )
    deliverer = ScriptedDeliverer()
    dest = destination()
    queue = MemoryQueue()
    await queue.open([dest.id])
    await queue.append([make_event(i) for i in range(4)])
    worker, queue, metrics = await start_worker(dest, deliverer, queue, transformer)
    await until(lambda: len(queue.done[dest.id]) == 4)
    await worker.stop(5)
    assert sorted(p["messageId"] for b in deliverer.batches for p in b) == ["m0", "m3"]
    assert metrics.get("crossdock_events_filtered_total", ("dest",)) == 1
    assert metrics.get("crossdock_events_dropped_total", ("dest", "null payload")) == 1


async def test_dropped_events_are_counted_by_the_mapping_rule() -> None:
    """A sectioned mapping names why it dropped an event; the worker counts by that reason and
    the dry run (``worker.drop_reason``) says the same."""
    spec = crossdock.parse_mapping(
        """
        user = "userId"
        [dispatch]
        select = "lookup('kinds', event)"
        [sections.click]
        where = "userId != 'anonymous'"
        fields.kind = "'click'"
        [sections.refund]
        drop = true
        [tables.kinds]
        Clicked = "click"
        Refunded = "refund"
        """
    )
    transformer = crossdock.compile_spec(spec, where="properties.i != `9`")
    deliverer = ScriptedDeliverer()
    dest = destination()
    queue = MemoryQueue()
    await queue.open([dest.id])
    events = [make_event(i) for i in range(6)]
    events[5]["userId"] = "anonymous"
    events[1]["event"] = "Refunded"
    events[2]["event"] = "Refunded"
    events[3]["event"] = "Viewed"
    events[4]["properties"] = {"i": 9}
    await queue.append(events)
    worker, queue, metrics = await start_worker(dest, deliverer, queue, transformer)
    await until(lambda: len(queue.done[dest.id]) == 6)
    await worker.stop(5)
    assert [p["kind"] for b in deliverer.batches for p in b] == ["click"]
    dropped = "crossdock_events_dropped_total"
    # a drop section and no section: not for this vendor (filtered); an unusable event of a
    # kind it takes: dropped, by reason
    assert metrics.get("crossdock_events_filtered_total", ("dest",)) == 4
    assert metrics.get(dropped, ("dest", "section click: where false")) == 1
    assert worker.drop_reason(events[1]) == "filtered: section refund: drop"
    assert worker.drop_reason(events[3]) == "filtered: no section (type track)"
    assert worker.drop_reason(events[4]) == "filtered"
    assert worker.drop_reason(events[5]) == "section click: where false"


async def test_an_unsendable_event_is_dead_lettered_with_the_plugins_reason() -> None:
    """A plugin function raising ``crossdock.Unsendable`` dead-letters the event with its reason
    as written (other errors are replaced by the failing field's path)."""

    def need_user(value: Any) -> Any:
        if not value:
            raise crossdock.Unsendable("track: no identity claim (userId)")
        return value

    functions = [crossdock.JmesFunction.create("need_user", need_user, ["any"])]
    transformer = crossdock.compile_mapping({"user": "need_user(userId)"}, functions=functions)
    deliverer = ScriptedDeliverer()
    dest = destination()
    queue = MemoryQueue()
    await queue.open([dest.id])
    events = [make_event(0), make_event(1)]
    events[1]["userId"] = ""
    await queue.append(events)
    worker, queue, metrics = await start_worker(dest, deliverer, queue, transformer)
    await until(lambda: len(queue.done[dest.id]) + len(queue.dead[dest.id]) == 2)
    await worker.stop(5)
    [dead] = queue.dead[dest.id]
    assert dead.reason == "track: no identity claim (userId)"
    assert metrics.get("crossdock_events_dead_lettered_total", ("dest", "unsendable")) == 1
    with pytest.raises(crossdock.Unsendable):
        transformer(events[1])
