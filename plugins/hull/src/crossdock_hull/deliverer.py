"""Sends entries to Hull's Firehose: ``POST {firehose_url}`` with the connector headers.

Each request body is ``{"batch": [...], "timestamp": now, "sentAt": now}``; every entry gets
its own ``headers["Hull-Access-Token"]``, an HS256 JWT of its identity claims plus ``iss``
(connector id) and ``iat``, signed with the connector secret (contract §2.3).

The Firehose answers for the whole request: 2xx → every entry delivered; 400 (or a body over
1 MB) → refused as a batch (:class:`crossdock.BatchRejected`): the core splits and resends it
to isolate the bad entries, and an entry refused alone is rejected with Hull's message;
401/403 → credentials rejected (the core pauses the destination); 404/405 → the organization
or URL is wrong, treated as credentials rejected too, so events stay queued until the
configuration is fixed; 429, 5xx and timeouts → retry later.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import orjson

import crossdock
from crossdock_hull import jwt
from crossdock_hull.settings import HullDestinationSettings

MAX_REQUEST_BYTES: Final = 1_000_000
"""Largest request body sent (Hull publishes no limit; the contract keeps batches ≤ 1 MB)."""


def _now_iso() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class HullDeliverer:
    """Delivers batches of entries to the Firehose (see the module docstring)."""

    def __init__(self, settings: HullDestinationSettings, http: aiohttp.ClientSession) -> None:
        self._http = http
        self._url = settings.firehose_url
        self._connector_id = settings.connector_id
        self._secret = settings.connector_secret
        self._headers = {
            "Content-Type": "application/json",
            "Hull-App-Id": settings.connector_id,
            "Hull-Access-Token": settings.connector_secret.reveal(),
            "Hull-Organization": settings.organization,
        }

    def entry(self, payload: dict[str, Any], now: int, sent_at: str) -> dict[str, Any]:
        """The wire entry of one transformed payload, with its signed claims."""
        claims = {"iss": self._connector_id, "iat": now, **payload["claims"]}
        token = jwt.encode(claims, self._secret.reveal())
        return {
            "type": payload["type"],
            "body": payload["body"],
            "headers": {"Hull-Access-Token": token},
            "timestamp": payload.get("timestamp") or sent_at,
        }

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> Sequence[crossdock.Outcome]:
        """Send ``batch`` in one request; one outcome per item, in order."""
        sent_at = _now_iso()
        now = int(time.time())
        entries = [self.entry(item.payload, now, sent_at) for item in batch]
        data = orjson.dumps({"batch": entries, "timestamp": sent_at, "sentAt": sent_at})
        if len(data) > MAX_REQUEST_BYTES and len(batch) > 1:
            reason = f"Hull: request of {len(data)} bytes is over {MAX_REQUEST_BYTES}"
            return [crossdock.BatchRejected(reason)] * len(batch)
        outcome, status, text = await crossdock.send_http(
            self._http, "POST", self._url, data, self._headers
        )
        if status == 400:
            outcome = crossdock.BatchRejected(f"Hull: {_message(text)}", 400, text[:2000])
        elif status in (404, 405):
            reason = f"Hull: HTTP {status} (check organization and firehose_url)"
            outcome = crossdock.CredentialsRejected(reason, status)
        elif isinstance(outcome, crossdock.CredentialsRejected):
            outcome = crossdock.CredentialsRejected(f"Hull: {_message(text)}", status)
        return [outcome] * len(batch)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


def _message(text: str) -> str:
    """Hull's error message (``message`` or ``error`` of a JSON answer), at most 200 chars."""
    return crossdock.error_message(text, ("message", "error"), default="bad request")
