"""The ``miso`` deliverer: ``POST {base_url}/v1/interactions`` with ``{"data": [...]}``.

Auth is the ``X-API-KEY`` header (Miso accepts it as well as an ``api_key`` query parameter;
the header keeps the secret out of URLs, which end up in proxy logs and error messages).

Miso validates a request atomically: one bad record fails it with 422 and nothing is stored.
The 422 body names the bad records (``data.<i>.<field> is invalid. …``, or FastAPI's
``detail[].loc``); those are rejected with Miso's messages (:func:`crossdock.outcomes_by_index`)
and the rest answered :class:`crossdock.BatchRejected`, so the core sends them again. A 422
that names no record, or a 413, refuses the whole request as a batch: the core narrows it down
by halving. Records that
:func:`~crossdock_miso.schema.problem` refuses are rejected without being sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

import crossdock

from .schema import problem
from .settings import MisoSettings

PATH = "/v1/interactions"
BODY_LIMIT = 4096
_INDEX = re.compile(r"^\s*data\.(\d+)(?:\.|\s|$)")


class MisoDeliverer:
    """Sends batches of Miso records (see the module docstring)."""

    def __init__(self, settings: MisoSettings, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.url = settings.base_url + PATH
        self._key = settings.api_key
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-API-KEY": settings.api_key.reveal(),
        }

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        """One outcome per item, in order: invalid records rejected before sending, the rest
        sent together in one request (see the module docstring for Miso's answers)."""
        outcomes: list[crossdock.Outcome | None] = [None] * len(batch)
        pending: list[int] = []
        for i, item in enumerate(batch):
            why = problem(item.payload)
            if why is None:
                pending.append(i)
            else:
                outcomes[i] = crossdock.Rejected(f"Miso record not sent: {why}")
        if pending:
            sent = await self._send([batch[i] for i in pending])
            for i, outcome in zip(pending, sent, strict=True):
                outcomes[i] = outcome
        return [o if o is not None else crossdock.RetryLater("not sent") for o in outcomes]

    async def _send(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        body = b'{"data":' + crossdock.json_array(batch) + b"}"
        outcome, status, text = await crossdock.send_http(
            self.http, "POST", self.url, body, self._headers
        )
        if status not in (413, 422):
            return [self._explain(outcome, text)] * len(batch)
        reason = f"Miso {status}: {self._message(text)}"
        refused = crossdock.BatchRejected(reason, status, self._body(text))
        bad = record_errors(text, len(batch)) if status == 422 else {}
        named = {
            position: crossdock.Rejected(
                ("Miso 422: " + "; ".join(messages))[:1000], 422, self._body(text)
            )
            for position, messages in bad.items()
        }
        return crossdock.outcomes_by_index(len(batch), named, default=refused)

    def _explain(self, outcome: crossdock.Outcome, text: str) -> crossdock.Outcome:
        """Add Miso's message to the generic outcome of a status."""
        if isinstance(outcome, crossdock.CredentialsRejected):
            reason = f"Miso {outcome.status}: {self._message(text)} (use the secret API key)"
            return crossdock.CredentialsRejected(reason, outcome.status)
        if isinstance(outcome, crossdock.Rejected):
            reason = f"Miso {outcome.status}: {self._message(text)}"
            return crossdock.Rejected(reason, outcome.status, self._body(text))
        return outcome

    def _body(self, text: str) -> str:
        return crossdock.mask_body(text, [self._key], BODY_LIMIT)

    def _message(self, text: str) -> str:
        message = crossdock.error_message(text, ("message", "detail"), limit=300)
        return crossdock.mask_body(message, [self._key])

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the core."""


def record_errors(text: str, count: int) -> dict[int, list[str]]:
    """Miso's 422 body → ``{position in the request: [message, ...]}`` for the records it names.

    Reads Miso's shape (``{"errors": true, "data": ["data.0.product_ids is invalid. …"]}``)
    and FastAPI's (``{"detail": [{"loc": ["body", "data", 0, "type"], "msg": "…"}]}``).
    Positions outside ``0..count-1`` are ignored.
    """
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    out: dict[int, list[str]] = {}
    if not isinstance(body, dict):
        return out
    data = body.get("data")
    if isinstance(data, list):
        for message in data:
            if not isinstance(message, str):
                continue
            match = _INDEX.match(message)
            if match and int(match.group(1)) < count:
                text_ = message[match.end() :].strip() if message[match.end() - 1] == "." else ""
                out.setdefault(int(match.group(1)), []).append(text_ or message.strip())
    detail = body.get("detail")
    if isinstance(detail, list):
        for entry in detail:
            if isinstance(entry, dict):
                position, field = _loc_index(entry.get("loc"))
                if position is not None and position < count:
                    msg = str(entry.get("msg") or entry.get("type") or "invalid")
                    out.setdefault(position, []).append(f"{field}: {msg}" if field else msg)
    return out


def _loc_index(loc: Any) -> tuple[int | None, str]:
    """``["body", "data", 3, "product_ids", 0]`` → ``(3, "product_ids.0")``."""
    if not isinstance(loc, list):
        return None, ""
    for j, part in enumerate(loc[:-1]):
        nxt = loc[j + 1]
        if part == "data" and isinstance(nxt, int) and not isinstance(nxt, bool):
            return nxt, ".".join(str(p) for p in loc[j + 2 :])
    return None, ""
