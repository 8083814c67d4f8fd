"""Built-in destination ``segment``: send events to Segment's tracking API (``/v1/batch``).

Settings: ``write_key`` (required), ``host`` (default ``https://api.segment.io``; point it at
the EU host, a staging host or a local fake). Each request is ``POST {host}/v1/batch`` with
Basic auth (``base64(writeKey + ":")``) and body ``{"batch": [...], "sentAt": now}``, built from
the pre-serialized payloads; each item keeps its ``messageId`` (stable across retries) and
``type``. Limits: 2,500 events and 500 KB per request (we stay under 475,000 bytes like
analytics-python), 32 KB per event.

Answers: 200 → delivered; 429 → retry after ``Retry-After``, else ``X-RateLimit-Reset``; 5xx and
timeouts → retry; 401/403 → credentials rejected (the destination pauses); 400 → the batch is
split in halves and resent to isolate the bad events, and an event refused alone is rejected
with Segment's message. Default mapping: the whole event, so ``integrations`` (loop-prevention
opt-outs) and ``context.crossdock`` (the chain of sources) travel with it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence

import aiohttp
import orjson
from attrs import frozen

import crossdock
from crossdock.deliver.http import send_http
from crossdock.types import (
    BatchItem,
    Destination,
    DestinationType,
    Limits,
    Outcome,
    Rejected,
)

NAME = "segment"
DEFAULT_HOST = "https://api.segment.io"
RETRY_HEADERS = ("Retry-After", "X-RateLimit-Reset")


@frozen
class SegmentSettings:
    """``[destinations.settings]`` of a ``segment`` destination."""

    write_key: crossdock.Secret
    host: str = DEFAULT_HOST


def _now_iso() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class SegmentDeliverer:
    """Sends batches to Segment (see the module docstring)."""

    def __init__(self, settings: SegmentSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self.url = settings.host.rstrip("/") + "/v1/batch"
        token = base64.b64encode(f"{settings.write_key.reveal()}:".encode()).decode()
        self._headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        """Send ``batch`` in one request; on a 400 isolate the bad events by halving."""
        if not batch:
            return []
        return await self._send(batch)

    async def _send(self, batch: Sequence[BatchItem]) -> list[Outcome]:
        body = (
            b'{"batch":['
            + b",".join(item.data for item in batch)
            + b'],"sentAt":"'
            + _now_iso().encode()
            + b'"}'
        )
        outcome, status, text = await send_http(
            self.http, "POST", self.url, body, self._headers, retry_headers=RETRY_HEADERS
        )
        if status != 400:
            return [outcome] * len(batch)
        if len(batch) == 1:
            return [Rejected(f"Segment: {_message(text)}", 400, text)]
        middle = len(batch) // 2
        first, second = await asyncio.gather(self._send(batch[:middle]), self._send(batch[middle:]))
        return [*first, *second]

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


def _message(text: str) -> str:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text[:200] or "bad request"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("code") or "bad request")[:200]
    return text[:200]


DESTINATION_TYPE = DestinationType(
    name=NAME,
    settings=SegmentSettings,
    description="Send events to Segment's tracking API (/v1/batch)",
    mapping={".": "@"},
    limits=Limits(
        max_batch_count=2500, max_batch_bytes=475_000, max_event_bytes=32_000, concurrency=4
    ),
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[DestinationType]:
    """Declare the ``segment`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: Destination, http: aiohttp.ClientSession
) -> SegmentDeliverer | None:
    """Build the deliverer of a ``segment`` destination."""
    return SegmentDeliverer(destination.settings, http)
