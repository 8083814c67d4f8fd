"""One delivery policy: the Sender (isolation, rate limit, concurrency, request metrics), the
deliverer helpers, and the worker and backfill using them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import orjson
import pytest

import crossdock
from crossdock import (
    DELIVERED,
    BatchItem,
    BatchRejected,
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
from crossdock.deliver.backfill import BackfillRun, BackfillState, read_lines
from crossdock.deliver.batching import BatchCaps
from crossdock.deliver.destinations.webhook import (
    DESTINATION_TYPE,
    WebhookDeliverer,
    WebhookSettings,
)
from crossdock.deliver.pacing import RateLimiter
from crossdock.deliver.sending import Sender, request_word
from crossdock.deliver.settle import RetryRule
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue.sqlite import SqliteQueue
from crossdock.testing.fakes import FakeVendor, RecordedRequest
from crossdock.testing.harness import DestinationHarness


@attrs.define
class CountingLimiter(RateLimiter):
    """Unlimited, but counts the tokens taken."""

    granted: float = 0.0

    async def acquire(self, tokens: float = 1.0) -> None:
        self.granted += tokens


@attrs.define
class Refuser:
    """A deliverer: any request holding a ``bad`` payload is refused as a batch."""

    bad: set[int]
    answer: Callable[[Sequence[BatchItem]], list[Outcome]] | None = None
    cost_per_item: bool = False
    requests: list[list[int]] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def request_cost(self, batch: Sequence[BatchItem]) -> int:
        return len(batch) if self.cost_per_item else 1

    async def deliver(self, batch: Sequence[BatchItem]) -> list[Outcome]:
        self.requests.append([item.payload for item in batch])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if self.answer is not None:
                return self.answer(batch)
            if any(item.payload in self.bad for item in batch):
                return [BatchRejected("bad batch key=sk_live_secret", 400, "{}")] * len(batch)
            return [DELIVERED] * len(batch)
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        pass


def items(n: int) -> list[BatchItem]:
    return [BatchItem({"messageId": f"m{i}"}, i, orjson.dumps(i)) for i in range(n)]


def sender(deliverer: Any, *, concurrency: int = 4, **kwargs: Any) -> Sender:
    return Sender(deliverer, "dest", CountingLimiter(None), concurrency, 5.0, **kwargs)


# ---------------------------------------------------------------------------------------------
# Sender


async def test_a_refused_batch_is_halved_until_the_bad_event_is_alone() -> None:
    refuser = Refuser(bad={5})
    s = sender(refuser, secrets=(Secret("sk_live_secret"),))
    outcomes = await s.deliver(items(8))
    assert [type(o).__name__ for o in outcomes] == ["Delivered"] * 5 + ["Rejected"] + [
        "Delivered"
    ] * 2
    assert outcomes[5] == Rejected("bad batch key=***", 400, "{}")
    # 8 -> 4+4 -> 2+2 (of the bad half) -> 1+1: 7 requests, each through the rate limiter
    assert len(refuser.requests) == 7
    assert s.limiter.granted == 7  # type: ignore[attr-defined]
    assert sorted(map(len, refuser.requests)) == [1, 1, 2, 2, 4, 4, 8]


async def test_isolation_pays_request_cost_and_keeps_to_the_concurrency() -> None:
    refuser = Refuser(bad={1, 6, 11}, cost_per_item=True)
    s = sender(refuser, concurrency=2)
    outcomes = await s.deliver(items(12))
    assert [i for i, o in enumerate(outcomes) if isinstance(o, Rejected)] == [1, 6, 11]
    assert s.limiter.granted == sum(map(len, refuser.requests))  # type: ignore[attr-defined]
    assert refuser.max_in_flight <= 2
    assert s.slots._value == 2  # every slot given back


async def test_batch_mates_of_named_events_are_resent_together() -> None:
    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        named = {i: Rejected("named") for i, item in enumerate(batch) if item.payload == 2}
        if not named:
            return [DELIVERED] * len(batch)
        return crossdock.outcomes_by_index(len(batch), named, default=BatchRejected("mates"))

    refuser = Refuser(bad=set(), answer=answer)
    outcomes = await sender(refuser).deliver(items(4))
    assert outcomes == [DELIVERED, DELIVERED, Rejected("named"), DELIVERED]
    assert refuser.requests == [[0, 1, 2, 3], [0, 1, 3]]


async def test_retry_and_credentials_from_a_part_come_back_as_they_are() -> None:
    calls = 0

    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return [BatchRejected("refused")] * len(batch)
        if batch[0].payload == 0:
            return [RetryLater("HTTP 503", 3.0, 503)] * len(batch)
        return [CredentialsRejected("HTTP 401", 401)] * len(batch)

    outcomes = await sender(Refuser(bad=set(), answer=answer), concurrency=1).deliver(items(4))
    assert outcomes[:2] == [RetryLater("HTTP 503", 3.0, 503)] * 2
    assert outcomes[2:] == [CredentialsRejected("HTTP 401", 401)] * 2


async def test_request_metrics_count_a_mostly_delivered_request_as_partial() -> None:
    def answer(batch: Sequence[BatchItem]) -> list[Outcome]:
        return crossdock.outcomes_by_index(len(batch), {5: Rejected("no")})

    metrics = Metrics()
    await sender(Refuser(bad=set(), answer=answer), metrics=metrics).deliver(items(6))
    assert metrics.get("crossdock_delivery_requests_total", ("dest", "partial")) == 1
    assert metrics.get("crossdock_delivery_requests_total", ("dest", "rejected")) == 0


@pytest.mark.parametrize(
    ("outcomes", "word"),
    [
        ([DELIVERED, DELIVERED], "delivered"),
        ([DELIVERED, Rejected("x")], "partial"),
        ([DELIVERED, RetryLater("x")], "partial"),
        ([Rejected("x"), Rejected("y")], "rejected"),
        ([BatchRejected("x")] * 2, "batch_rejected"),
        ([RetryLater("x"), Rejected("y")], "retry"),
        ([DELIVERED, CredentialsRejected("x")], "credentials_rejected"),
    ],
)
def test_request_word(outcomes: list[Outcome], word: str) -> None:
    assert request_word(outcomes) == word


def test_retry_rule_gives_up_only_after_attempts_and_age() -> None:
    rule = RetryRule(3, 60.0)
    assert not rule.gives_up(3, 0.0, 59.0)
    assert not rule.gives_up(2, 0.0, 600.0)
    assert rule.gives_up(3, 0.0, 60.0)
    assert rule.delay(RetryLater("x", 30.0), 1, lambda: 0.0) == 30.0


def test_batch_caps_take_the_smaller_of_vendor_and_operator_limits() -> None:
    limits = Limits(max_batch_count=100, max_batch_bytes=1000, max_event_bytes=300)
    dtype = DestinationType("t", object, "t", limits=limits)
    dest = Destination("d", "t", dtype, None, {".": "@"}, delivery=DeliverySettings(batch_size=500))
    caps = BatchCaps.of(dest)
    assert (caps.count, caps.bytes, caps.event_bytes) == (100, 1000, 300)
    assert caps.too_large(b"x" * 301)
    assert not caps.too_large(b"x" * 300)
    assert caps.full(100, 10, 1)
    assert caps.full(1, 990, 11)
    assert not caps.full(0, 0, 5000)


@pytest.mark.parametrize("event_bytes", [None, 300, 999, 1000, 5000])
def test_largest_is_where_too_large_begins(event_bytes: int | None) -> None:
    # The worker checks ``len(data) > caps.largest`` inline instead of calling too_large.
    limits = Limits(max_batch_count=100, max_batch_bytes=1000, max_event_bytes=event_bytes)
    dtype = DestinationType("t", object, "t", limits=limits)
    caps = BatchCaps.of(Destination("d", "t", dtype, None, {".": "@"}))
    for n in range(caps.largest - 2, caps.largest + 3):
        assert caps.too_large(b"x" * n) == (n > caps.largest)


# ---------------------------------------------------------------------------------------------
# Helpers for deliverers


def test_outcomes_by_index_fills_the_rest_and_ignores_out_of_range() -> None:
    no = Rejected("no")
    assert crossdock.outcomes_by_index(3, {1: no, 7: no, -1: no}) == [DELIVERED, no, DELIVERED]
    assert crossdock.outcomes_by_index(2, [(0, no), (0, Rejected("later"))]) == [no, DELIVERED]
    refused = BatchRejected("x")
    assert crossdock.outcomes_by_index(2, {}, default=refused) == [refused, refused]


@pytest.mark.parametrize(
    ("text", "keys", "message"),
    [
        ('{"message": "bad field"}', ("message",), "bad field"),
        ('{"error": "", "message": "m"}', ("error", "message"), "m"),
        ('{"detail": [{"loc": [1]}]}', ("message", "detail"), '[{"loc":[1]}]'),
        ("  plain text \n", ("message",), "plain text"),
        ("", ("message",), "no message"),
        ('["not", "an object"]', ("message",), '["not", "an object"]'),
    ],
)
def test_error_message(text: str, keys: tuple[str, ...], message: str) -> None:
    assert crossdock.error_message(text, keys) == message


def test_error_message_is_cut() -> None:
    assert crossdock.error_message('{"message": "' + "x" * 500 + '"}') == "x" * 200


def test_mask_body_masks_plain_and_url_encoded_secrets() -> None:
    key = Secret("k+y/secret")
    text = "key k+y/secret in url ?apiKey=k%2By%2Fsecret, short ab"
    assert crossdock.mask_body(text, [key, "ab"]) == "key *** in url ?apiKey=***, short ab"
    assert crossdock.mask_body("x" * 10, [], 4) == "xxxx"


def test_json_array_joins_the_serialized_payloads() -> None:
    assert crossdock.json_array(items(3)) == b"[0,1,2]"
    assert crossdock.json_array(items(1)) == b"[0]"
    assert crossdock.json_array([]) == b"[]"
    parts = items(2)
    crossdock.json_array(parts)
    assert [p.data for p in parts] == [b"0", b"1"]  # the items' bytes are left alone


# ---------------------------------------------------------------------------------------------
# The harness


async def test_harness_makes_no_request_when_every_event_was_dropped() -> None:
    calls: list[int] = []

    class Plugin:
        @crossdock.hookimpl
        def crossdock_destination_types(self) -> list[DestinationType]:
            return [DestinationType("p", WebhookSettings, "p", mapping={".": "@"})]

        @crossdock.hookimpl
        def crossdock_make_transformer(self, destination: Destination) -> Any:
            return lambda event: None

        @crossdock.hookimpl
        def crossdock_make_deliverer(self, destination: Destination, http: Any) -> Any:
            class Counting(Refuser):
                async def deliver(self, batch: Sequence[BatchItem]) -> list[Outcome]:
                    calls.append(len(batch))
                    return [DELIVERED] * len(batch)

            return Counting(bad=set())

    async with DestinationHarness(Plugin(), {"url": "http://127.0.0.1:9"}) as h:
        assert await h.deliver([{"type": "track", "event": "x"}]) == []
    assert calls == []


# ---------------------------------------------------------------------------------------------
# The daemon's worker and backfill share the policy


class RefuseBadUser(FakeVendor):
    """A batch webhook that refuses (400, naming nothing) any array holding userId ``bad``."""

    async def check(self, request: RecordedRequest) -> Any:
        from aiohttp import web

        if any(e.get("userId") == "bad" for e in request.json()):
            return web.json_response({"error": "invalid event in batch"}, status=400)
        return None


def event(i: int, user: str = "u") -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": user,
        "messageId": f"m{i}",
        "receivedAt": "2024-01-01T00:00:00.000Z",
        "context": {"crossdock": {"source": "web", "sources": ["web"]}},
    }


async def test_worker_isolates_a_bad_event_and_dead_letters_it_alone(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["hook"])
    try:
        async with RefuseBadUser() as fake, aiohttp.ClientSession() as http:
            settings = WebhookSettings(url=fake.url, batch=True)
            dest = Destination(
                id="hook", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
                mapping={".": "@"}, delivery=DeliverySettings(batch_size=8, max_wait_ms=200),
            )  # fmt: skip
            metrics = Metrics()
            worker = DestinationWorker(
                dest, lambda e: e, WebhookDeliverer(settings, http), queue, metrics,
                idle_poll=0.05,
            )  # fmt: skip
            await worker.start()
            await queue.append([event(i, "bad" if i == 3 else "u") for i in range(8)])
            deadline = time.monotonic() + 10
            while worker.status()["delivered"] + worker.status()["dead_lettered"] < 8:
                assert time.monotonic() < deadline, worker.status()
                await asyncio.sleep(0.02)
            await worker.stop(5)
        assert worker.status()["delivered"] == 7
        [dead] = await queue.dlq_list("hook")
        assert dead.event["messageId"] == "m3"
        assert dead.status == 400
        assert "invalid event in batch" in (dead.body or "")
        assert metrics.get("crossdock_events_dead_lettered_total", ("hook", "vendor_rejected")) == 1
        assert metrics.get("crossdock_delivery_requests_total", ("hook", "batch_rejected")) == 4
        assert metrics.get("crossdock_delivery_requests_total", ("hook", "delivered")) == 3
    finally:
        await queue.close()


async def test_backfill_caps_batches_at_the_vendor_limit_and_pays_request_cost(
    tmp_path: Path,
) -> None:
    limits = Limits(max_batch_count=3, concurrency=1)
    dtype = DestinationType("t", object, "t", limits=limits)
    dest = Destination("d", "t", dtype, None, {".": "@"}, delivery=DeliverySettings(batch_size=50))
    refuser = Refuser(bad=set(), cost_per_item=True)
    limiter = CountingLimiter(None)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(event(i)) + b"\n" for i in range(7)))
    lines, size = read_lines(path)
    run = BackfillRun(
        dest, lambda e: e["messageId"], refuser, file_id="f",
        state=BackfillState(str(path), size, "d"), state_path=tmp_path / "state.json",
        failures_path=tmp_path / "failures.ndjson", limiter=limiter,
    )  # fmt: skip
    stats = await run.run(lines, size)
    assert stats.delivered == 7
    assert [len(r) for r in refuser.requests] == [3, 3, 1]
    assert limiter.granted == 7
