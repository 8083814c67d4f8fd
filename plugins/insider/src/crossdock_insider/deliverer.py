"""Send user objects to Insider's Upsert User Data API and turn its answers into outcomes.

One request per batch: ``POST {base_url}/api/user/v1/upsert`` with ``X-PARTNER-NAME``,
``X-REQUEST-TOKEN`` and ``{"users": [...]}`` built from the pre-serialized payloads (plus
``"skip_hook": true`` when the setting is on). Each payload is one user object made from one
Crossdock event, so the user index in Insider's answer is the batch index.

Answers:

- 200: Insider may still refuse some users. Each key of ``data.fail.errors`` starts with
  ``users.<index>.``; those events are rejected with Insider's messages, the others delivered
  (:func:`crossdock.outcomes_by_index`). Failures that name no user refuse the request as a
  batch (:class:`crossdock.BatchRejected`): the core splits and resends it.
- 400 "Partner is invalid.": the partner name is wrong for every request, a configuration
  problem like a bad token: credentials rejected (the destination pauses, events stay queued).
- 400 "request body is bigger than …" or any other 400: refused as a batch; the core splits
  and resends, so one bad user cannot fail its batch-mates; alone, the user is rejected with
  Insider's message.
- 401/403: credentials rejected. 408, 429, 5xx, timeouts, connection errors: retry later
  (``Retry-After`` honoured).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

import crossdock

from .settings import InsiderSettings

_USER_KEY = re.compile(r"^users\.(\d+)(?:\.|$)")
BODY_LIMIT = 2000


class InsiderDeliverer:
    """Delivers batches of user objects to Insider (see the module docstring)."""

    def __init__(self, settings: InsiderSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self.url = settings.upsert_url
        self._headers = {
            "Content-Type": "application/json",
            "X-PARTNER-NAME": settings.partner_name,
            "X-REQUEST-TOKEN": settings.request_token.reveal(),
        }
        self._tail = b',"skip_hook":true}' if settings.skip_hook else b"}"

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        """Send ``batch``; one outcome per item, in order."""
        outcomes: list[crossdock.Outcome | None] = [None] * len(batch)
        sendable: list[int] = []
        for i, item in enumerate(batch):
            problem = _local_problem(item.payload)
            if problem:
                outcomes[i] = crossdock.Rejected(f"Insider: {problem} (not sent)")
            else:
                sendable.append(i)
        if sendable:
            sent = await self._send([batch[i] for i in sendable])
            for i, outcome in zip(sendable, sent, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""

    async def _send(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        body = b'{"users":' + crossdock.json_array(batch) + self._tail
        outcome, status, text = await crossdock.send_http(
            self.http, "POST", self.url, body, self._headers
        )
        if status == 200:
            return self._settle_200(batch, text)
        if status == 400:
            message = _message(text)
            if message.rstrip(".").lower() == "partner is invalid":
                reason = f"Insider: {message} (check settings.partner_name)"
                return [crossdock.CredentialsRejected(reason, 400)] * len(batch)
            refused = crossdock.BatchRejected(f"Insider: {message}", 400, text[:BODY_LIMIT])
            return [refused] * len(batch)
        if isinstance(outcome, crossdock.CredentialsRejected):
            return [crossdock.CredentialsRejected(f"Insider: {_message(text)}", status)] * len(
                batch
            )
        if isinstance(outcome, crossdock.Rejected):
            reason = f"Insider: HTTP {status}: {_message(text)}"
            return [crossdock.Rejected(reason, status, text[:BODY_LIMIT])] * len(batch)
        return [outcome] * len(batch)

    def _settle_200(
        self, batch: Sequence[crossdock.BatchItem], text: str
    ) -> list[crossdock.Outcome]:
        failures, unattributed = parse_failures(text)
        if unattributed:
            return [crossdock.BatchRejected(*_explain(unattributed))] * len(batch)
        rejected = {i: crossdock.Rejected(*_explain(errors)) for i, errors in failures.items()}
        return crossdock.outcomes_by_index(len(batch), rejected)


def parse_failures(text: str) -> tuple[dict[int, dict[str, list[str]]], dict[str, list[str]]]:
    """Per-user errors of a 200 answer: ``({index: {key: messages}}, errors naming no user)``.

    A body that is not Insider's JSON shape counts as full success (the status said so).
    """
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}, {}
    data = body.get("data") if isinstance(body, dict) else None
    fail = data.get("fail") if isinstance(data, dict) else None
    if not isinstance(fail, dict) or not fail:
        return {}, {}
    errors = fail.get("errors")
    per_user: dict[int, dict[str, list[str]]] = {}
    unattributed: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            messages = [str(m) for m in value] if isinstance(value, list) else [str(value)]
            found = _USER_KEY.match(str(key))
            if found:
                per_user.setdefault(int(found.group(1)), {})[str(key)] = messages
            else:
                unattributed[str(key)] = messages
    count = fail.get("count")
    if not per_user and not unattributed and isinstance(count, int) and count > 0:
        unattributed["fail"] = [f"{count} user(s) failed without details"]
    return per_user, unattributed


def _local_problem(payload: Any) -> str | None:
    """What Insider would refuse for sure, checked before sending."""
    if not isinstance(payload, dict):
        return "the payload is not a user object"
    if not payload.get("identifiers") and not payload.get("insider_id"):
        return "the user has no identifier (no userId, anonymousId, email or phone number)"
    return None


def _explain(errors: dict[str, list[str]]) -> tuple[str, int, str]:
    """Reason, status and body of a user refused in a 200 answer."""
    messages = _unique(m for msgs in errors.values() for m in msgs)
    reason = "Insider: " + "; ".join(messages)
    return reason[:BODY_LIMIT], 200, orjson.dumps(errors).decode()[:BODY_LIMIT]


def _message(text: str) -> str:
    return crossdock.error_message(text, ("message", "error"))


def _unique(items: Any) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
