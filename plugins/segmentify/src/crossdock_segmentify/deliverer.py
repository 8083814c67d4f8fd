"""Sending batches to Segmentify's events endpoint, and reading its answers.

One request per batch: ``POST {data_center_url}/add/events/v1.json?apiKey=…`` with the
``Origin`` header and a JSON array of events. Segmentify reports errors in the body's
``statusCode`` (anything but ``SUCCESS``), possibly under HTTP 200, and one bad event fails the
whole request; so the body, not the HTTP status, decides:

- 429, 408 and 5xx (except 501): retry later, honouring ``Retry-After``; no answer: retry.
- 401/403, or an account-level code (``NO_API_KEY``, ``NO_ACCOUNT``, ``UNVERIFIED_ACCOUNT``,
  ``FAILED_ACCOUNT``, ``NO_DOMAIN_APIKEY_MATCH``): credentials rejected; the core pauses the
  destination and keeps its events.
- any other error code (``NO_USERID``, ``NO_SESSIONID``, ``BAD_INPUT``, ``INVALID_EVENT``,
  ``NO_EVENT``, unknown codes) or a 400 without one: the request is refused as a batch
  (:class:`crossdock.BatchRejected`); the core halves and resends it until the offending events
  are alone; those are rejected with Segmentify's reason, their batch-mates delivered.
- 2xx whose body says ``SUCCESS`` (or carries no ``statusCode``): delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

import crossdock

from .settings import SegmentifySettings

SUCCESS = "SUCCESS"
ACCOUNT_ERRORS = frozenset(
    {"NO_API_KEY", "NO_ACCOUNT", "UNVERIFIED_ACCOUNT", "FAILED_ACCOUNT", "NO_DOMAIN_APIKEY_MATCH"}
)
"""Codes that concern the destination's configuration, never an event."""
BODY_LIMIT = 4096


class SegmentifyDeliverer:
    """Sends batches to Segmentify (see the module docstring)."""

    def __init__(self, settings: SegmentifySettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self._secret = settings.api_key.reveal()
        self._url = f"{settings.events_url}?apiKey={quote(self._secret, safe='')}"
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Origin": settings.origin,
        }

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        """Send ``batch`` as one JSON array; one outcome per item, in order."""
        body = crossdock.json_array(batch)
        outcome, status, text = await crossdock.send_http(
            self.http, "POST", self._url, body, self._headers
        )
        outcome = self._masked(outcome)
        if status is None or isinstance(outcome, crossdock.RetryLater):
            return [outcome] * len(batch)
        text = self._mask(text)
        code, message = _status(text)  # the whole body: a success may carry large responses
        text = text[:BODY_LIMIT]
        if code in ACCOUNT_ERRORS:
            reason = f"Segmentify {code}: {message}" if message else f"Segmentify {code}"
            return [crossdock.CredentialsRejected(reason, status)] * len(batch)
        if isinstance(outcome, crossdock.CredentialsRejected):
            return [outcome] * len(batch)
        per_event = (code is not None and code != SUCCESS) or status == 400
        if not per_event:
            return [outcome] * len(batch)
        label = code or f"HTTP {status}"
        reason = f"Segmentify {label}: {message}" if message else f"Segmentify {label}"
        return [crossdock.BatchRejected(reason, status, text)] * len(batch)

    def _mask(self, text: str) -> str:
        return crossdock.mask_body(text, [self._secret])

    def _masked(self, outcome: crossdock.Outcome) -> crossdock.Outcome:
        """The outcome with the API key masked in its reason (connection errors may echo the
        URL, which carries the key)."""
        reason = getattr(outcome, "reason", None)
        if isinstance(reason, str) and self._mask(reason) != reason:
            if isinstance(outcome, crossdock.RetryLater):
                return crossdock.RetryLater(self._mask(reason), outcome.after, outcome.status)
            if isinstance(outcome, crossdock.Rejected):
                return crossdock.Rejected(self._mask(reason), outcome.status, outcome.body)
            if isinstance(outcome, crossdock.CredentialsRejected):
                return crossdock.CredentialsRejected(self._mask(reason), outcome.status)
        return outcome

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


def _status(text: str) -> tuple[str | None, str]:
    """``(statusCode, statusText)`` of a Segmentify answer; ``(None, "")`` without them."""
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, text[:200].strip()
    if not isinstance(body, dict):
        return None, ""
    code = body.get("statusCode")
    message = body.get("statusText") or body.get("message") or ""
    return (
        (str(code) if code is not None else None),
        str(message)[:200],
    )
