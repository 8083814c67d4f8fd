"""Built-in destination ``segment``: send events to Segment's tracking API (``/v1/batch``).

Settings: ``write_key`` (required), ``host`` (default ``https://api.segment.io``; point it at
the EU host, a staging host or a local fake). Each request is ``POST {host}/v1/batch`` with
Basic auth (``base64(writeKey + ":")``) and body ``{"batch": [...], "sentAt": now}``, built from
the pre-serialized payloads; each item keeps its ``messageId`` (stable across retries) and
``type``. Limits: 2,500 events and 500 KB per request (we stay under 475,000 bytes like
analytics-python), 32 KB per event.

Answers: 200 → delivered; 429 → retry after ``Retry-After``, else ``X-RateLimit-Reset``; 5xx and
timeouts → retry; 401/403 → credentials rejected (the destination pauses); 400 → the request is
refused as a batch (:class:`crossdock.BatchRejected`): the core splits and resends it to isolate
the bad events, and an event refused alone is rejected with Segment's message. Default mapping:
the whole event, so ``integrations`` (loop-prevention opt-outs) and ``context.crossdock`` (the
chain of sources) travel with it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence

import aiohttp
from attrs import frozen

import crossdock
from crossdock import BatchItem, Destination, DestinationType, Limits, Outcome

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
        """Send ``batch`` in one request; a 400 refuses it as a batch (the core isolates)."""
        body = (
            b'{"batch":['
            + b",".join(item.data for item in batch)
            + b'],"sentAt":"'
            + _now_iso().encode()
            + b'"}'
        )
        outcome, status, text = await crossdock.send_http(
            self.http, "POST", self.url, body, self._headers, retry_headers=RETRY_HEADERS
        )
        if status == 400:
            message = crossdock.error_message(text, ("message", "code"), default="bad request")
            outcome = crossdock.BatchRejected(f"Segment: {message}", 400, text)
        return [outcome] * len(batch)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


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
