"""The ``miso`` deliverer: ``POST {base_url}/v1/interactions`` with ``{"data": [...]}``.

Auth is the ``X-API-KEY`` header (Miso accepts it as well as an ``api_key`` query parameter;
the header keeps the secret out of URLs, which end up in proxy logs and error messages).

Miso validates a request atomically: one bad record fails it with 422 and nothing is stored.
The 422 body names the bad records (``data.<i>.<field> is invalid. …``, or FastAPI's
``detail[].loc``); those are rejected with Miso's messages and the rest is sent again. A 422
that names no record is narrowed down by halving the batch. Records that
:func:`~crossdock_miso.schema.problem` refuses are rejected without being sent.
"""

from __future__ import annotations

import asyncio
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
        sent together, and the records a 422 names rejected while their batch-mates are sent
        again."""
        outcomes: list[crossdock.Outcome | None] = [None] * len(batch)
        pending: list[int] = []
        for i, item in enumerate(batch):
            why = problem(item.payload)
            if why is None:
                pending.append(i)
            else:
                outcomes[i] = crossdock.Rejected(f"Miso record not sent: {why}")
        await self._send(batch, pending, outcomes)
        return [o if o is not None else crossdock.RetryLater("not sent") for o in outcomes]

    async def _send(
        self,
        batch: Sequence[crossdock.BatchItem],
        indices: list[int],
        outcomes: list[crossdock.Outcome | None],
    ) -> None:
        while indices:
            body = b'{"data":[' + b",".join(batch[i].data for i in indices) + b"]}"
            outcome, status, text = await crossdock.send_http(
                self.http, "POST", self.url, body, self._headers
            )
            if status not in (413, 422):
                for i in indices:
                    outcomes[i] = self._explain(outcome, text)
                return
            bad = record_errors(text, len(indices)) if status == 422 else {}
            if not bad:
                if len(indices) == 1:
                    reason = f"Miso {status}: {self._message(text)}"
                    outcomes[indices[0]] = crossdock.Rejected(reason, status, self._body(text))
                    return
                middle = len(indices) // 2
                await asyncio.gather(
                    self._send(batch, indices[:middle], outcomes),
                    self._send(batch, indices[middle:], outcomes),
                )
                return
            for position, messages in bad.items():
                reason = "Miso 422: " + "; ".join(messages)
                outcomes[indices[position]] = crossdock.Rejected(
                    reason[:1000], 422, self._body(text)
                )
            indices = [i for position, i in enumerate(indices) if position not in bad]

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
        return self._mask(text)[:BODY_LIMIT]

    def _mask(self, text: str) -> str:
        key = self._key.reveal()
        return text.replace(key, "***") if key else text

    def _message(self, text: str) -> str:
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._mask(text[:200]) or "no message"
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return self._mask(body["message"][:300])
        if isinstance(body, dict) and body.get("detail") is not None:
            return self._mask(orjson.dumps(body["detail"]).decode()[:300])
        return self._mask(text[:200])

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
