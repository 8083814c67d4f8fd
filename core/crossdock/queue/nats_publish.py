"""Pipelined JetStream publishes: many messages in flight, each with its own acknowledgement.

nats-py's ``publish_async`` does the same but spends more per message than the NATS server
does (a NUID, a semaphore wait wrapped in ``wait_for`` and a JSON parse per acknowledgement).
Here one wildcard inbox subscription receives every acknowledgement, a message's reply subject
is the inbox plus a counter, and an acknowledgement is parsed as the JSON object it is (see
:func:`read_ack`): a stream may be named anything, ``error`` included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["PublishError", "Publisher", "read_ack"]


class PublishError(Exception):
    """The server refused a publish (its JetStream error description), or nobody answered."""


def read_ack(data: bytes) -> bool | PublishError:
    """Read a JetStream publish acknowledgement: whether the server called the message a
    duplicate, or the error it answered (or that the answer was not an acknowledgement).

    An acknowledgement is ``{"stream": ..., "seq": ..., "duplicate": true?}``; a refusal is
    ``{"error": {"code": ..., "err_code": ..., "description": ...}}``. Only the top-level
    ``error`` key means a refusal, so a stream named ``error`` is acknowledged like any other.
    """
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return PublishError(f"unreadable acknowledgement: {data[:200].decode(errors='replace')}")
    if not isinstance(answer, dict):
        return PublishError(f"unreadable acknowledgement: {data[:200].decode(errors='replace')}")
    error = answer.get("error")
    if error is not None:
        if isinstance(error, dict):
            description = error.get("description") or "error"
            return PublishError(f"{description} (code {error.get('err_code')})")
        return PublishError(f"publish refused: {str(error)[:200]}")
    if not isinstance(answer.get("stream"), str) or not isinstance(answer.get("seq"), int):
        return PublishError(f"unreadable acknowledgement: {data[:200].decode(errors='replace')}")
    return answer.get("duplicate") is True


class Publisher:
    """Publishes to JetStream with reply subjects on one inbox; see the module docstring."""

    def __init__(self, nc: Any) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._futures: dict[str, asyncio.Future[bool]] = {}
        self._counter = itertools.count()
        self._sub: Any = None

    async def start(self) -> None:
        """Subscribe to the acknowledgement inbox."""
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def stop(self) -> None:
        """Unsubscribe; publishes still waiting fail."""
        if self._sub is not None:
            with contextlib.suppress(Exception):  # closing anyway
                await self._sub.unsubscribe()
            self._sub = None
        for future in self._futures.values():
            if not future.done():
                future.set_exception(PublishError("connection closed"))
        self._futures.clear()

    async def _on_ack(self, msg: Any) -> None:
        future = self._futures.pop(msg.subject[self._cut :], None)
        if future is None or future.done():
            return
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            future.set_exception(PublishError("no JetStream stream answers for this subject"))
            return
        outcome = read_ack(msg.data)
        if isinstance(outcome, PublishError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes, str | None]], timeout: float
    ) -> list[bool | BaseException]:
        """Publish every ``(subject, payload, msg_id)`` at once and await all acknowledgements.

        Returns, per message, whether the server called it a duplicate (its ``Nats-Msg-Id`` was
        seen within the stream's duplicate window), or the exception that failed it.
        """
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = []
        publish = self._nc.publish
        prefix = self._prefix
        try:
            for subject, payload, msg_id in messages:
                token = str(next(self._counter))
                future = loop.create_future()
                self._futures[token] = future
                futures.append(future)
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                await publish(subject, payload, reply=prefix + token, headers=headers)
            _done, pending = await asyncio.wait(futures, timeout=timeout)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        results: list[bool | BaseException] = []
        for future in futures:
            if future in pending:
                future.cancel()
                results.append(TimeoutError(f"no acknowledgement within {timeout:g}s"))
            elif future.exception() is not None:
                results.append(future.exception())  # type: ignore[arg-type]
            else:
                results.append(future.result())
        if pending:
            # Forget the tokens of what never came back (a late answer is then ignored).
            live = set(map(id, pending))
            for token, future in list(self._futures.items()):
                if id(future) in live:
                    del self._futures[token]
        return results
