"""A bounded, in-memory journal of one destination's delivery outcomes (the console's journeys).

Each :class:`~crossdock.deliver.worker.DestinationWorker` keeps one :class:`Journal`. It
remembers, by ``messageId``, the last outcome of roughly the last ``capacity`` events the
worker settled (delivered, retrying, dead-lettered, filtered, dropped), counts delivered and
failed events in 10-second buckets over the last 10 minutes, and keeps the last five vendor
errors. It lives on the delivery path, so it is made to cost one dict store per event:

- outcomes go into two generations of plain dicts; when the newer one holds ``capacity / 2``
  entries it becomes the older one and the former older one is dropped whole (no per-entry
  eviction, no ordered structure);
- every delivered event of a batch shares one record tuple;
- no text is built for delivered events; retries and dead letters keep the reason, status and
  body excerpt the worker already cleaned (secrets masked).

It is per process: with ``crossdock run --workers N`` each delivering process knows only the
outcomes it settled itself, and a configuration reload that rebuilds a destination's worker
starts its journal afresh.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "BUCKET_SECONDS",
    "DEAD_LETTERED",
    "DELIVERED",
    "DROPPED",
    "FILTERED",
    "RETRYING",
    "Journal",
]

DELIVERED = "delivered"
RETRYING = "retrying"
DEAD_LETTERED = "dead_lettered"
FILTERED = "filtered"
DROPPED = "dropped"

BUCKET_SECONDS = 10
"""Width of one throughput bucket."""

BUCKETS = 60
"""Buckets kept: 10 minutes."""

ERROR_BODY_LIMIT = 500
"""Characters of a vendor body kept in a journal record or a last error."""

LAST_ERRORS = 5

Record = tuple[Any, ...]
"""``(state, at, reason, status, body, attempts, next_at)``; delivered records are
``(state, at)`` only."""


_STR_ONLY: Final = frozenset({str})


class Journal:
    """Outcomes of one destination by ``messageId``, throughput buckets and last errors."""

    __slots__ = ("_half", "_new", "_old", "buckets", "capacity", "last_errors")

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = max(2, capacity)
        self._half = self.capacity // 2
        self._new: dict[str, Record] = {}
        self._old: dict[str, Record] = {}
        # [bucket index, delivered, failed], oldest first
        self.buckets: deque[list[int]] = deque(maxlen=BUCKETS)
        self.last_errors: deque[dict[str, Any]] = deque(maxlen=LAST_ERRORS)

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    # -- recording (the delivery path) ---------------------------------------------------------

    def delivered(self, events: Iterable[Mapping[str, Any]], now: float) -> None:
        """Record ``events`` as delivered at ``now`` (one shared record)."""
        self.delivered_ids([event.get("messageId") for event in events], now)

    def delivered_ids(self, message_ids: Iterable[Any], now: float) -> None:
        """:meth:`delivered` for the events' ``messageId`` values (those that are not strings
        are counted, not remembered): the worker has them without decoding stored events."""
        ids = message_ids if isinstance(message_ids, list) else list(message_ids)
        if not ids:
            return
        # A batch's ids are strings, or None for a stored event without one: the records go
        # in with C-level dict operations, not a Python loop per event.
        fresh = dict.fromkeys(ids, (DELIVERED, now))
        fresh.pop(None, None)
        if not set(map(type, fresh)) <= _STR_ONLY:
            for key in [k for k in fresh if type(k) is not str]:
                del fresh[key]
        new = self._new
        new.update(fresh)
        self._count(now, len(ids), 0)
        if len(new) >= self._half:
            self._rotate()

    def retrying(
        self,
        event: Mapping[str, Any],
        now: float,
        *,
        attempts: int,
        next_at: float,
        reason: str,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        """Record ``event`` as waiting for retry (``reason``, the vendor's ``status``/``body``)."""
        body = _excerpt(body)
        self._put(event, (RETRYING, now, reason, status, body, attempts, next_at))
        self._count(now, 0, 1)
        self._error(now, status, reason, body)

    def dead_lettered(
        self,
        event: Mapping[str, Any],
        now: float,
        *,
        reason: str,
        attempts: int,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        """Record ``event`` as dead-lettered."""
        body = _excerpt(body)
        self._put(event, (DEAD_LETTERED, now, reason, status, body, attempts, None))
        self._count(now, 0, 1)
        self._error(now, status, reason, body)

    def filtered(self, event: Mapping[str, Any], now: float, reason: str | None = None) -> None:
        """Record ``event`` as filtered (``reason`` ``sources``, or ``None``: found on demand)."""
        self._put(event, (FILTERED, now, reason))

    def dropped(self, event: Mapping[str, Any], now: float, reason: str) -> None:
        """Record ``event`` as dropped by the mapping, with the mapping's reason."""
        self._put(event, (DROPPED, now, reason))

    def forget(self, message_ids: Iterable[str]) -> None:
        """Forget the outcomes of ``message_ids`` (replayed dead letters are queued again)."""
        for message_id in message_ids:
            self._new.pop(message_id, None)
            self._old.pop(message_id, None)

    def _put(self, event: Mapping[str, Any], record: Record) -> None:
        message_id = event.get("messageId")
        if type(message_id) is not str:  # normalized events always have one; stay safe anyway
            return
        new = self._new
        new[message_id] = record
        if len(new) >= self._half:
            self._rotate()

    def _rotate(self) -> None:
        self._old = self._new
        self._new = {}

    def _count(self, now: float, delivered: int, failed: int) -> None:
        index = int(now) // BUCKET_SECONDS
        buckets = self.buckets
        if buckets and buckets[-1][0] == index:
            last = buckets[-1]
            last[1] += delivered
            last[2] += failed
        elif not buckets or buckets[-1][0] < index:
            buckets.append([index, delivered, failed])
        # a clock that went back: counted in the newest bucket rather than lost
        else:
            buckets[-1][1] += delivered
            buckets[-1][2] += failed

    def _error(self, now: float, status: int | None, reason: str, body: str | None) -> None:
        errors = self.last_errors
        # A failing batch gives one error, not one per event.
        if errors:
            last = errors[-1]
            if last["status"] == status and last["reason"] == reason and now - last["at"] < 1.0:
                return
        errors.append({"at": now, "status": status, "reason": reason, "body": body})

    # -- reading (the console) -----------------------------------------------------------------

    def get(self, message_id: str) -> dict[str, Any] | None:
        """The last outcome recorded for ``message_id`` as a JSON-able dict, or ``None``."""
        record = self._new.get(message_id)
        if record is None:
            record = self._old.get(message_id)
        if record is None:
            return None
        state, at = record[0], record[1]
        if state == DELIVERED:
            return {"state": state, "at": at}
        if state in (FILTERED, DROPPED):
            return {"state": state, "at": at, "reason": record[2]}
        _, _, reason, status, body, attempts, next_at = record
        row = {"state": state, "at": at, "reason": reason, "status": status, "body": body,
               "attempts": attempts}  # fmt: skip
        if state == RETRYING:
            row["next_at"] = next_at
        return row

    def throughput(self, now: float) -> list[dict[str, int]]:
        """Delivered and failed counts per 10-second bucket over the last 10 minutes, oldest
        first, every bucket present (zeros included)."""
        last = int(now) // BUCKET_SECONDS
        first = last - BUCKETS + 1
        counts = {b[0]: b for b in self.buckets if b[0] >= first}
        series = []
        for index in range(first, last + 1):
            bucket = counts.get(index)
            series.append(
                {
                    "t": index * BUCKET_SECONDS,
                    "delivered": bucket[1] if bucket else 0,
                    "failed": bucket[2] if bucket else 0,
                }
            )
        return series

    def errors(self) -> list[dict[str, Any]]:
        """The last vendor errors, newest first."""
        return [dict(e) for e in reversed(self.last_errors)]


def _excerpt(body: str | None) -> str | None:
    if body is None or len(body) <= ERROR_BODY_LIMIT:
        return body
    return body[:ERROR_BODY_LIMIT] + "…"
