"""Deliver events to Product Fruits' Segment-webhook intake, one signed request per event.

Each payload is POSTed as it was serialized once by the core (``BatchItem.data``), and
``X-Signature`` is the lowercase hex HMAC-SHA1 of exactly those bytes keyed by the webhook
secret, as Segment's Webhooks destination signs (``contracts/segment.md`` §12). Headers are
Segment's: ``Content-Type: application/json`` and ``User-Agent: Segment.io/1.0``.

Answers (``contracts/productfruits.md`` §2.2): 2xx → delivered; 408, 429 and 5xx (except 501),
timeouts and connection errors → retry (``Retry-After`` honoured); 401/403 → credentials
rejected (a wrong webhook secret: the core pauses the destination); 404/410 → credentials
rejected too, because the webhook URL is account-specific and a missing one means the
configured URL is wrong, not the event; other 4xx → the event is rejected with Product Fruits'
message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence

import aiohttp

import crossdock
from crossdock_productfruits.settings import ProductFruitsSettings

USER_AGENT = "Segment.io/1.0"
PARALLEL = 8
"""Requests in flight at once when one ``deliver`` call holds several events."""

_URL_GONE = (404, 410)


def sign(secret: crossdock.Secret, body: bytes) -> str:
    """Segment's webhook signature: lowercase hex HMAC-SHA1 of ``body`` keyed by ``secret``."""
    return hmac.new(secret.reveal().encode(), body, hashlib.sha1).hexdigest()


class ProductFruitsDeliverer:
    """Sends each event of a batch as its own signed webhook request (module docstring)."""

    def __init__(self, settings: ProductFruitsSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self._parallel = asyncio.Semaphore(PARALLEL)

    def request_cost(self, batch: Sequence[crossdock.BatchItem]) -> int:
        """Requests one :meth:`deliver` call makes (for the worker's rate limit)."""
        return len(batch)

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> Sequence[crossdock.Outcome]:
        """Send every item in its own request; one outcome per item, in order."""
        if len(batch) == 1:
            return [await self._send(batch[0].data)]
        return await asyncio.gather(*(self._send_bounded(item.data) for item in batch))

    async def _send_bounded(self, data: bytes) -> crossdock.Outcome:
        async with self._parallel:
            return await self._send(data)

    async def _send(self, data: bytes) -> crossdock.Outcome:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Signature": sign(self.settings.webhook_secret, data),
        }
        outcome, status, text = await crossdock.send_http(
            self.http, "POST", self.settings.webhook_url, data, headers
        )
        if status is None or isinstance(outcome, crossdock.Delivered):
            return outcome
        if status in _URL_GONE:
            reason = f"Product Fruits: HTTP {status}: webhook URL not found; check webhook_url"
            return crossdock.CredentialsRejected(reason, status)
        if isinstance(outcome, crossdock.CredentialsRejected):
            reason = f"Product Fruits: HTTP {status}: signature refused; check webhook_secret"
            return crossdock.CredentialsRejected(reason, status)
        if isinstance(outcome, crossdock.Rejected):
            return crossdock.Rejected(
                f"Product Fruits: HTTP {status}: {_message(text)}", status, outcome.body
            )
        if isinstance(outcome, crossdock.RetryLater):
            return crossdock.RetryLater(f"Product Fruits: HTTP {status}", outcome.after, status)
        return outcome

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


def _message(text: str) -> str:
    """Product Fruits' reason from an error body (JSON ``error``/``message``, else the text)."""
    return crossdock.error_message(
        text, ("error", "message", "detail", "title"), default="bad request"
    )
