"""The delivery journal (issue 13): outcomes by messageId, bounded in two generations,
throughput buckets, last errors; and that the worker records each outcome at settle time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from crossdock import DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import DESTINATION_TYPE, WebhookSettings
from crossdock.deliver.journal import BUCKETS, Journal
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import QueuedEvent
from crossdock.transform.default import crossdock_make_transformer
from crossdock.types import BatchItem, Delivered, Outcome, Rejected, RetryLater


def test_outcomes_by_message_id() -> None:
    journal = Journal()
    journal.delivered([{"messageId": "a"}, {"messageId": "b"}, {"type": "track"}], 100.0)
    journal.retrying(
        {"messageId": "c"}, 101.0, attempts=2, next_at=130.0, reason="HTTP 503", status=503,
        body="busy",
    )  # fmt: skip
    journal.dead_lettered({"messageId": "d"}, 102.0, reason="HTTP 400", attempts=1, status=400,
                          body="x" * 2000)  # fmt: skip
    journal.filtered({"messageId": "e"}, 103.0, "sources")
    journal.dropped({"messageId": "f"}, 104.0, "section refund: null payload")
    assert journal.get("a") == {"state": "delivered", "at": 100.0}
    assert journal.get("c") == {
        "state": "retrying", "at": 101.0, "reason": "HTTP 503", "status": 503, "body": "busy",
        "attempts": 2, "next_at": 130.0,
    }  # fmt: skip
    dead = journal.get("d")
    assert dead is not None
    assert dead["state"] == "dead_lettered"
    assert len(dead["body"]) == 501  # cut to 500 characters and an ellipsis
    assert "next_at" not in dead
    assert journal.get("e") == {"state": "filtered", "at": 103.0, "reason": "sources"}
    assert journal.get("f") == {
        "state": "dropped",
        "at": 104.0,
        "reason": "section refund: null payload",
    }
    assert journal.get("zzz") is None
    # a later outcome replaces the earlier one
    journal.delivered([{"messageId": "c"}], 140.0)
    assert journal.get("c") == {"state": "delivered", "at": 140.0}
    journal.forget(["c", "nope"])
    assert journal.get("c") is None


def test_delivered_ids_remember_strings_and_count_the_rest() -> None:
    """The batch path (dict operations in C): ``None`` and non-string ids are counted, not
    remembered; an id already there takes the new record; a generator works as a list does."""
    journal = Journal()
    journal.delivered_ids(["a", "b"], 100.0)
    journal.delivered_ids(["b", None, 7, "c", None, ("t",)], 1000.0)
    journal.delivered_ids((m for m in ["d"]), 1000.0)
    journal.delivered_ids([], 1000.0)
    assert journal.get("a") == {"state": "delivered", "at": 100.0}
    assert journal.get("b") == journal.get("c") == {"state": "delivered", "at": 1000.0}
    assert journal.get("d") == {"state": "delivered", "at": 1000.0}
    assert len(journal) == 4
    series = journal.throughput(now=1000.0)
    assert series[-1]["delivered"] == 7
    assert sum(b["delivered"] for b in series) == 7  # 100.0 is outside the window


def test_bounded_by_generations() -> None:
    journal = Journal(capacity=100)
    for i in range(1000):
        journal.delivered([{"messageId": f"m-{i}"}], float(i))
    assert len(journal) <= 100
    assert journal.get("m-999") is not None
    assert journal.get("m-950") is not None  # the last capacity/2 are always kept
    assert journal.get("m-0") is None


def test_throughput_buckets_and_last_errors() -> None:
    journal = Journal()
    journal.delivered([{"messageId": f"a{i}"} for i in range(3)], 1000.0)
    journal.delivered([{"messageId": "b"}], 1009.9)
    journal.retrying({"messageId": "r"}, 1015.0, attempts=1, next_at=1016.0, reason="HTTP 500",
                     status=500, body="down")  # fmt: skip
    # the same error again within a second is one error, not one per event
    journal.retrying({"messageId": "s"}, 1015.2, attempts=1, next_at=1016.0, reason="HTTP 500",
                     status=500, body="down")  # fmt: skip
    series = journal.throughput(now=1019.0)
    assert len(series) == BUCKETS
    assert series[-1] == {"t": 1010, "delivered": 0, "failed": 2}
    assert series[-2] == {"t": 1000, "delivered": 4, "failed": 0}
    assert all(b["delivered"] == b["failed"] == 0 for b in series[:-2])
    assert [b["t"] for b in series] == list(range(1010 - 10 * (BUCKETS - 1), 1020, 10))
    assert journal.errors() == [{"at": 1015.0, "status": 500, "reason": "HTTP 500", "body": "down"}]
    for i in range(10):
        journal.dead_lettered({"messageId": f"d{i}"}, 2000.0 + 2 * i, reason=f"r{i}", attempts=1)
    errors = journal.errors()
    assert len(errors) == 5
    assert [e["reason"] for e in errors] == ["r9", "r8", "r7", "r6", "r5"]
    # ten minutes later the old buckets are gone from the series
    assert all(b["delivered"] == 0 for b in journal.throughput(now=1000.0 + 601))


class ScriptedQueue:
    """The queue methods the worker calls, with events handed out once."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.pending = [QueuedEvent(i + 1, e) for i, e in enumerate(events)]
        self.settled: list[Any] = []

    async def fetch(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        out, self.pending = self.pending[:limit], self.pending[limit:]
        return out

    async def settle(self, destination: str, done: Any, retries: Any = (), dead: Any = ()) -> None:
        self.settled.append((list(done), list(retries), list(dead)))

    async def wait(self, destination: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.01))

    async def release(self, destination: str, now: float) -> int:
        return 0

    async def held_keys(self, destination: str) -> dict[str, int]:
        return {}

    async def stats(self, destination: str) -> Any:
        from crossdock.queue import QueueStats

        return QueueStats(0, 0, 0, None)


class ByEvent:
    """Answers each event by its name."""

    def __init__(self) -> None:
        self.answers: dict[str, Outcome] = {
            "ok": Delivered(),
            "busy": RetryLater("HTTP 503", None, 503, "busy, try later"),
            "bad": Rejected("HTTP 400", 400, "invalid email"),
        }

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        return [self.answers[item.event["event"]] for item in batch]

    async def close(self) -> None:
        return None


def _hook(**fields: Any) -> Destination:
    """A ``webhook`` destination ``hook`` with the identity mapping and ``fields``."""
    return Destination(
        id="hook",
        plugin="webhook",
        type=DESTINATION_TYPE,
        settings=WebhookSettings(url="http://127.0.0.1:9/"),
        mapping={".": "@"},
        **fields,
    )


async def _run_until_journaled(
    destination: Destination, queue: ScriptedQueue, metrics: Metrics, count: int
) -> DestinationWorker:
    """Run a worker on ``queue`` until its journal holds ``count`` messages (or 5 s)."""
    worker = DestinationWorker(
        destination,
        crossdock_make_transformer(destination),
        ByEvent(),
        queue,  # type: ignore[arg-type]
        metrics,
        idle_poll=0.01,
    )
    await worker.start()
    try:
        for _ in range(500):
            if len(worker.journal) == count:
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop(1.0)
    return worker


async def test_worker_records_outcomes_at_settle_time() -> None:
    destination = _hook(
        where="event != 'skip'", delivery=DeliverySettings(max_wait_ms=0, max_attempts=5)
    )
    events = [
        {"type": "track", "event": name, "messageId": f"m-{name}", "userId": "u"}
        for name in ("ok", "busy", "bad", "skip")
    ]
    queue = ScriptedQueue(events)
    worker = await _run_until_journaled(destination, queue, Metrics(destinations=["hook"]), 4)
    journal = worker.journal
    assert journal.get("m-ok")["state"] == "delivered"  # type: ignore[index]
    busy = journal.get("m-busy")
    assert busy is not None
    assert busy["state"] == "retrying"
    assert busy["status"] == 503
    assert busy["body"] == "busy, try later"
    assert busy["attempts"] == 1
    assert busy["next_at"] > busy["at"]
    bad = journal.get("m-bad")
    assert bad is not None
    assert bad["state"] == "dead_lettered"
    assert (bad["status"], bad["body"]) == (400, "invalid email")
    assert journal.get("m-skip") == {"state": "filtered", "at": journal.get("m-skip")["at"],
                                     "reason": None}  # type: ignore[index]  # fmt: skip
    errors = journal.errors()
    assert {e["status"] for e in errors} == {400, 503}


async def test_worker_observes_latency_from_the_stored_time_or_the_receive_time() -> None:
    """Events whose queue knows when it stored them are observed from then; the others from
    their ``receivedAt``; one with neither is not observed."""
    destination = _hook(delivery=DeliverySettings(max_wait_ms=0))
    events = [
        {"type": "track", "event": "ok", "messageId": f"m{i}", "userId": "u"} for i in range(6)
    ]
    events[3]["receivedAt"] = "2020-01-01T00:00:00.000Z"
    queue = ScriptedQueue(events)
    for q in queue.pending[:3]:
        q.enqueued_at = 1000.0
    metrics = Metrics(destinations=["hook"])
    await _run_until_journaled(destination, queue, metrics, 6)
    registry = metrics.registry
    labels = {"destination": "hook"}
    count = registry.get_sample_value("crossdock_end_to_end_latency_seconds_count", labels)
    total = registry.get_sample_value("crossdock_end_to_end_latency_seconds_sum", labels)
    assert count == 4  # three stored at 1000.0, one received in 2020; two with no time
    now = time.time()
    expected = 3 * (now - 1000.0) + (now - 1577836800.0)
    assert abs(total - expected) < 60
    assert sorted(queue.settled[0][0]) == [1, 2, 3, 4, 5, 6]
