"""Historical import: stream an NDJSON file of Spec events through one destination.

``crossdock backfill FILE --to DEST`` reads the file line by line (plain or gzip), validates and
normalises each event like the ingest path does, transforms it with the destination's mapping
and delivers it in batches with the destination's deliverer, by the daemon's delivery policy:
the same batch caps (:class:`~.batching.BatchCaps`), :class:`~.sending.Sender` (concurrency,
rate limit counting ``request_cost``, isolation of events the vendor refused as a batch) and
:class:`~.settle.RetryRule`. It does not go through the queue: the file itself is the durable
input, and a small state file records the last line whose batch (and every batch before it) has
been settled, so an interrupted run resumes from there. Events in flight at the interruption may
be sent twice; vendors that deduplicate do so by the event's ``messageId``, which is derived
from the file and line number when the line has none, so it is the same on every run.

Outcomes per event: delivered; dropped by ``where`` or the mapping; failed (the vendor rejected
it, it was still failing after ``max_attempts`` tries, or the line is not a valid event). The
events are held in memory, so a backfill gives up after ``max_attempts`` without waiting for
``max_age`` (its rule is the daemon's with ``max_age = 0``). Failed lines are reported with
their line number and written to a failures file (NDJSON: line, reason, event) and never stop
the run. A credentials rejection (401/403) stops the run, with the state saved, because every
further request would fail the same way.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from crossdock.deliver.batching import SEPARATOR_BYTES, BatchCaps
from crossdock.deliver.outcomes import clean_text, secrets_of
from crossdock.deliver.pacing import Backoff, RateLimiter
from crossdock.deliver.sending import Sender
from crossdock.deliver.settle import RetryRule
from crossdock.errors import ConfigError, CrossdockError, IngestError, Unsendable
from crossdock.ingest.normalize import normalize
from crossdock.secrets import Secret
from crossdock.types import (
    BatchItem,
    CredentialsRejected,
    Delivered,
    Deliverer,
    Destination,
    Ingested,
    Rejected,
    RetryLater,
    Transformer,
)

__all__ = [
    "BACKFILL_SOURCE",
    "BackfillError",
    "BackfillRun",
    "BackfillState",
    "BackfillStats",
    "Line",
    "read_lines",
    "with_backfill_settings",
]

BACKFILL_SOURCE = "backfill"
"""The source id recorded in ``context.crossdock`` of backfilled events."""

STATE_VERSION = 1
SAVE_EVERY = 1.0
"""Seconds between state-file writes while the run goes on (and once at the end)."""


class BackfillError(CrossdockError):
    """The run cannot go on (credentials rejected, unreadable file, state of another file)."""


@attrs.frozen
class Line:
    """One line of the input: its 1-based number, text, and the input's raw read position."""

    number: int
    text: bytes
    position: int


def read_lines(path: Path, *, skip: int = 0) -> tuple[Iterator[Line], int]:
    """Lines of ``path`` (gzip when it starts with the gzip magic), after the first ``skip``.

    Returns the iterator and the file's size in bytes; ``Line.position`` is the position in the
    file as stored (compressed bytes for gzip), so progress and ETA work for both.
    """
    size = path.stat().st_size
    raw = path.open("rb")
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw

    def lines() -> Iterator[Line]:
        with raw, stream:
            for number, text in enumerate(stream, start=1):
                if number <= skip:
                    continue
                yield Line(number, text, raw.tell())

    return lines(), size


def with_backfill_settings(destination: Destination) -> tuple[Destination, dict[str, Any]]:
    """``destination`` with its type's ``backfill_settings`` applied, and what was applied."""
    overrides = dict(destination.type.backfill_settings)
    if not overrides:
        return destination, {}
    names = {a.name for a in attrs.fields(type(destination.settings))}
    unknown = sorted(set(overrides) - names)
    if unknown:
        msg = (
            f"destination type {destination.plugin!r} declares backfill_settings "
            f"{', '.join(unknown)} that its settings class does not have"
        )
        raise ConfigError([msg])
    settings = attrs.evolve(destination.settings, **overrides)
    return attrs.evolve(destination, settings=settings), overrides


@attrs.define
class BackfillStats:
    """Counters of one run (a resumed run starts from the saved ones)."""

    lines: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    retries: int = 0
    position: int = 0
    total_bytes: int = 0


@attrs.define
class BackfillState:
    """What the state file holds: which file, which destination, the settled line, counters."""

    file: str
    size: int
    destination: str
    line: int = 0
    done: bool = False
    stats: dict[str, int] = attrs.field(factory=dict)

    @classmethod
    def load(cls, path: Path) -> BackfillState | None:
        """The saved state, or ``None`` when there is none."""
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            msg = f"{path}: unreadable backfill state ({exc}); use --restart to start over"
            raise BackfillError(msg) from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            msg = f"{path}: not a backfill state file of this version; use --restart"
            raise BackfillError(msg)
        return cls(
            file=str(data["file"]),
            size=int(data["size"]),
            destination=str(data["destination"]),
            line=int(data["line"]),
            done=bool(data.get("done")),
            stats={k: int(v) for k, v in dict(data.get("stats") or {}).items()},
        )

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the old or the new state, never half of one)."""
        data = {"version": STATE_VERSION, **attrs.asdict(self)}
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


@attrs.define
class _Batch:
    index: int
    last_line: int
    items: list[BatchItem]
    lines: list[int]
    size: int = 0


class BackfillRun:
    """One backfill of one file into one destination (see the module docstring).

    ``on_progress(stats)`` is called after each settled batch and for each reported failure;
    ``on_failure(line, reason)`` for each failed line.
    """

    def __init__(
        self,
        destination: Destination,
        transform: Transformer,
        deliverer: Deliverer,
        *,
        file_id: str,
        state: BackfillState,
        state_path: Path,
        failures_path: Path,
        on_progress: Callable[[BackfillStats], None] = lambda stats: None,
        on_failure: Callable[[int, str], None] = lambda line, reason: None,
        backoff: Backoff | None = None,
        limiter: RateLimiter | None = None,
        secrets: Sequence[Secret] = (),
    ) -> None:
        self.destination = destination
        self.transform = transform
        self.deliverer = deliverer
        self.file_id = file_id
        self.state = state
        self.state_path = state_path
        self.failures_path = failures_path
        self.on_progress = on_progress
        self.on_failure = on_failure
        self.stats = BackfillStats(**{k: v for k, v in state.stats.items() if k != "total_bytes"})
        # the settings' Secret fields and the config's other secrets (``${VAR}`` values)
        self._secrets = tuple(dict.fromkeys((*secrets_of(destination.settings), *secrets)))
        self.caps = BatchCaps.of(destination)
        self.sender = Sender.of(destination, deliverer, secrets=self._secrets, limiter=limiter)
        # In memory there is no max_age to wait for: give up after max_attempts.
        self.rule = RetryRule(
            max(1, destination.delivery.max_attempts), 0.0, backoff or Backoff(base=1.0, cap=60.0)
        )
        self._finished: dict[int, int] = {}
        self._next_index = 0
        self._watermark_index = 0
        self._last_save = 0.0
        self._failures: IO[bytes] | None = None
        self._stop: BaseException | None = None

    # -- reading and batching ------------------------------------------------------------------

    def _event(self, line: Line) -> dict[str, Any] | None:
        """The normalised event of ``line``; ``None`` after reporting a bad line."""
        try:
            message = orjson.loads(line.text)
        except orjson.JSONDecodeError as exc:
            self._fail(line.number, f"invalid JSON: {exc}", None)
            return None
        if not isinstance(message, dict):
            self._fail(line.number, "expected a JSON object (one Spec event per line)", None)
            return None
        if message.get("messageId") is None:
            digest = hashlib.sha1(f"{self.file_id}:{line.number}".encode()).hexdigest()[:24]
            message["messageId"] = f"backfill-{digest}"
        try:
            (event,) = normalize(
                Ingested(events=[message], labels=[f"line {line.number}"]),
                source_id=BACKFILL_SOURCE,
                received_at=time.time(),
            ).events
        except IngestError as exc:
            self._fail(line.number, f"invalid event: {exc.message}", message)
            return None
        except ValueError:  # normalize dropped it: its chain already holds "backfill"
            reason = f"already passed through source {BACKFILL_SOURCE!r} (context.crossdock)"
            self._fail(line.number, reason, message)
            return None
        if isinstance(message.get("receivedAt"), str):
            event["receivedAt"] = message["receivedAt"]
        return event

    def _item(self, line: Line) -> BatchItem | None:
        event = self._event(line)
        if event is None:
            return None
        try:
            payload = self.transform(event)
        except Unsendable as exc:
            self._fail(line.number, exc.reason, event)
            return None
        except Exception as exc:  # a mapping error names the field, never the data
            self._fail(line.number, f"transform failed: {exc}", event)
            return None
        if payload is None:
            self.stats.dropped += 1
            return None
        data = orjson.dumps(payload)
        if self.caps.too_large(data):
            limit = self.caps.event_bytes or self.caps.vendor_bytes
            reason = f"payload is {len(data)} bytes, over the vendor's {limit}"
            self._fail(line.number, reason, event)
            return None
        return BatchItem(event=event, payload=payload, data=data)

    def _batches(self, lines: Iterator[Line]) -> Iterator[_Batch]:
        batch = _Batch(self._next_index, 0, [], [])
        for line in lines:
            self.stats.lines = line.number
            self.stats.position = line.position
            if not line.text.strip():
                batch.last_line = line.number
                continue
            item = self._item(line)
            cost = len(item.data) + SEPARATOR_BYTES if item is not None else 0
            if item is not None and self.caps.full(len(batch.items), batch.size, cost):
                yield batch
                batch = _Batch(batch.index + 1, batch.last_line, [], [])
            batch.last_line = line.number
            if item is not None:
                batch.items.append(item)
                batch.lines.append(line.number)
                batch.size += cost
        if batch.items or batch.last_line:
            yield batch

    # -- delivering ----------------------------------------------------------------------------

    async def run(self, lines: Iterator[Line], total_bytes: int) -> BackfillStats:
        """Deliver every line; save the state as batches settle and once at the end."""
        self.stats.total_bytes = total_bytes
        self._failures = self.failures_path.open("ab")
        slots = self.sender.slots
        tasks: set[asyncio.Task[None]] = set()
        try:
            for batch in self._batches(lines):
                if self._stop is not None:
                    break
                await slots.acquire()
                if self._stop is not None:
                    slots.release()
                    break
                task = asyncio.create_task(self._send(batch, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let sends progress while a big file is parsed
            if tasks:
                await asyncio.gather(*tasks)
            if self._stop is not None:
                raise self._stop
            self.state.done = True
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._save(force=True)
            self._failures.close()
        return self.stats

    async def _send(self, batch: _Batch, slots: asyncio.Semaphore) -> None:
        try:
            pending = list(range(len(batch.items)))
            attempt = 0
            while pending and self._stop is None:
                attempt += 1
                outcomes = await self.sender.send([batch.items[i] for i in pending])
                retry: list[int] = []
                wait = 0.0
                for i, outcome in zip(pending, outcomes, strict=True):
                    if isinstance(outcome, Delivered):
                        self.stats.delivered += 1
                    elif isinstance(outcome, Rejected):
                        self._fail(batch.lines[i], outcome.reason, batch.items[i].event)
                    elif isinstance(outcome, CredentialsRejected):
                        reason = clean_text(outcome.reason, self._secrets)
                        self._stop = BackfillError(
                            f"{self.destination.id}: credentials rejected ({reason}); fix them "
                            "and run the same command again to resume"
                        )
                        return
                    elif not isinstance(outcome, RetryLater):
                        self._fail(batch.lines[i], f"plugin returned {outcome!r}", None)
                    elif self.rule.gives_up(attempt, 0.0, 0.0):
                        reason = f"still failing after {attempt} attempts: {outcome.reason}"
                        self._fail(batch.lines[i], reason, batch.items[i].event)
                    else:
                        retry.append(i)
                        wait = max(wait, self.rule.delay(outcome, attempt))
                if retry:
                    self.stats.retries += len(retry)
                    await asyncio.sleep(wait)
                pending = retry
            if self._stop is None:
                self._settled(batch)
        finally:
            slots.release()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _settled(self, batch: _Batch) -> None:
        self._finished[batch.index] = batch.last_line
        while self._watermark_index in self._finished:
            self.state.line = self._finished.pop(self._watermark_index)
            self._watermark_index += 1
        self._save()
        self.on_progress(self.stats)

    def _fail(self, line: int, reason: str, event: Mapping[str, Any] | None) -> None:
        reason = clean_text(reason, self._secrets) or "failed"
        self.stats.failed += 1
        if self._failures is not None:
            record = {"line": line, "reason": reason, "event": event}
            self._failures.write(orjson.dumps(record) + b"\n")
        self.on_failure(line, reason)

    def _save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_EVERY:
            return
        self._last_save = now
        if self._failures is not None:
            self._failures.flush()
        self.state.stats = {
            "delivered": self.stats.delivered,
            "dropped": self.stats.dropped,
            "failed": self.stats.failed,
            "retries": self.stats.retries,
        }
        self.state.save(self.state_path)
