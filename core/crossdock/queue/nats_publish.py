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
        # token -> (the publish_many call waiting for it, the message's index in that call)
        self._waiting: dict[str, tuple[_Group, int]] = {}
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
        waiting, self._waiting = self._waiting, {}
        for group, index in waiting.values():
            group.answer(index, PublishError("connection closed"))

    async def _on_ack(self, msg: Any) -> None:
        entry = self._waiting.pop(msg.subject[self._cut :], None)
        if entry is None:
            return
        group, index = entry
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            group.answer(index, PublishError("no JetStream stream answers for this subject"))
            return
        group.answer(index, read_ack(msg.data))

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes, str | None]], timeout: float
    ) -> list[bool | BaseException]:
        """Publish every ``(subject, payload, msg_id)`` at once and await all acknowledgements.

        Returns, per message, whether the server called it a duplicate (its ``Nats-Msg-Id`` was
        seen within the stream's duplicate window), or the exception that failed it.
        """
        if not messages:
            return []
        # One future for the whole call, resolved by the last acknowledgement: a future per
        # message, and asyncio.wait's callback on each, cost the event loop about as much as
        # reading the acknowledgements.
        group = _Group(len(messages))
        publish = self._nc.publish
        prefix = self._prefix
        waiting = self._waiting
        tokens: list[str] = []
        try:
            for index, (subject, payload, msg_id) in enumerate(messages):
                token = str(next(self._counter))
                waiting[token] = (group, index)
                tokens.append(token)
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                await publish(subject, payload, reply=prefix + token, headers=headers)
            if group.left:
                await asyncio.wait({group.done}, timeout=timeout)
        except BaseException:
            self._forget(tokens)
            raise
        if group.left:
            # Forget the tokens of what never came back (a late answer is then ignored).
            self._forget(tokens)
            late = f"no acknowledgement within {timeout:g}s"
            return [TimeoutError(late) if r is _UNANSWERED else r for r in group.results]
        return group.results

    def _forget(self, tokens: list[str]) -> None:
        waiting = self._waiting
        for token in tokens:
            waiting.pop(token, None)


_UNANSWERED: Any = object()


class _Group:
    """The acknowledgements one :meth:`Publisher.publish_many` call waits for."""

    __slots__ = ("done", "left", "results")

    def __init__(self, count: int) -> None:
        self.results: list[Any] = [_UNANSWERED] * count
        self.left = count
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answer(self, index: int, outcome: bool | PublishError) -> None:
        """Record message ``index``'s outcome (once); the last one resolves :attr:`done`."""
        if self.results[index] is not _UNANSWERED:
            return
        self.results[index] = outcome
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)
