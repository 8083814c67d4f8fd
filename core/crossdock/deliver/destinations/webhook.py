"""Built-in destination ``webhook``: POST each event (or each batch as a JSON array) to a URL.

Settings: ``url`` (required), ``method`` (``POST``), ``headers`` (table), ``secret`` (adds
``X-Signature`` = lowercase hex HMAC-SHA1 over the exact body sent, like Segment's Webhooks
destination; for a JSON-array batch the first element is signed, like Segment's Actions webhook),
``batch`` (``false``: one request per event, sent concurrently; ``true``: one JSON array per
batch, and a 4xx refusing it is :class:`crossdock.BatchRejected`, so the core splits the array to
isolate the bad events). Default mapping: the whole event. Credentials in ``url``
(``user:password@``) and an ``Authorization`` header together are a ``crossdock check`` error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from attrs import field, frozen

import crossdock
from crossdock import BatchItem, Destination, DestinationType, Limits, Outcome, send_http

NAME = "webhook"
PER_EVENT_PARALLEL = 32
"""Requests in flight at once inside one batch when ``batch = false``."""


def _one_authorization(instance: WebhookSettings, _attribute: Any, headers: Any) -> None:
    """Credentials in ``url`` and an ``Authorization`` header cannot go together: the HTTP client
    refuses every such request, so the destination could never deliver."""
    if not any(str(name).lower() == "authorization" for name in headers):
        return
    try:
        parts = urlsplit(str(instance.url))
        has_credentials = parts.username is not None or parts.password is not None
    except ValueError:
        return  # the url's own problem is reported on the url
    if has_credentials:
        msg = (
            "an Authorization header cannot be sent with credentials in url "
            "(user:password@): keep one of them"
        )
        raise ValueError(msg)


@frozen
class WebhookSettings:
    """``[destinations.settings]`` of a ``webhook`` destination."""

    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(factory=dict, validator=_one_authorization)
    secret: crossdock.Secret | None = None
    batch: bool = False


def sign(secret: crossdock.Secret, body: bytes) -> str:
    """Segment's webhook signature: lowercase hex HMAC-SHA1 of ``body`` keyed by the secret."""
    return hmac.new(secret.reveal().encode(), body, hashlib.sha1).hexdigest()


class WebhookDeliverer:
    """Sends a destination's batches to its URL (see the module docstring)."""

    def __init__(self, settings: WebhookSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self.method = settings.method.upper()
        self.headers = {"Content-Type": "application/json", **dict(settings.headers)}
        self._parallel = asyncio.Semaphore(PER_EVENT_PARALLEL)

    def request_cost(self, batch: Sequence[BatchItem]) -> int:
        """Requests one :meth:`deliver` call makes (for the worker's rate limit)."""
        return 1 if self.settings.batch else len(batch)

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        """Send ``batch``: one JSON array, or one request per event."""
        if not batch:
            return []
        if self.settings.batch:
            outcome = await self._send(crossdock.json_array(batch), batch[0].data)
            if isinstance(outcome, crossdock.Rejected):
                outcome = crossdock.BatchRejected(outcome.reason, outcome.status, outcome.body)
            return [outcome] * len(batch)
        if len(batch) == 1:
            return [await self._send(batch[0].data, batch[0].data)]
        return await asyncio.gather(*(self._send_one(item.data) for item in batch))

    async def _send_one(self, data: bytes) -> Outcome:
        async with self._parallel:
            return await self._send(data, data)

    async def _send(self, body: bytes, signed: bytes) -> Outcome:
        headers = self.headers
        if self.settings.secret is not None:
            headers = {**headers, "X-Signature": sign(self.settings.secret, signed)}
        outcome, _status, _text = await send_http(
            self.http, self.method, self.settings.url, body, headers
        )
        return outcome

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


DESTINATION_TYPE = DestinationType(
    name=NAME,
    settings=WebhookSettings,
    description="POST events as JSON to any URL (optionally HMAC-signed, optionally batched)",
    mapping={".": "@"},
    limits=Limits(max_batch_count=500, max_batch_bytes=4 * 1024 * 1024, concurrency=4),
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[DestinationType]:
    """Declare the ``webhook`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: Destination, http: aiohttp.ClientSession
) -> WebhookDeliverer | None:
    """Build the deliverer of a ``webhook`` destination."""
    return WebhookDeliverer(destination.settings, http)
