"""Pipelined JetStream publishes: many messages in flight, each with its own acknowledgement.

nats-py's ``publish_async`` does the same but spends more per message than the NATS server
does (a NUID, a semaphore wait wrapped in ``wait_for`` and a JSON parse per acknowledgement).
Here one wildcard inbox subscription receives every acknowledgement, a message's reply subject
is the inbox plus a counter, and an acknowledgement is recognised without a full JSON parse
unless it carries an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["PublishError", "Publisher"]


class PublishError(Exception):
    """The server refused a publish (its JetStream error description), or nobody answered."""


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
        data = msg.data
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            future.set_exception(PublishError("no JetStream stream answers for this subject"))
        elif b'"error"' in data:
            try:
                error = orjson.loads(data)["error"]
                text = f"{error.get('description', 'error')} (code {error.get('err_code')})"
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                text = data.decode(errors="replace")[:200]
            future.set_exception(PublishError(text))
        else:
            # The server writes ``"duplicate": true`` (with a space, nats-server 2.9); accept
            # either spelling without parsing the whole answer.
            future.set_result(
                b'"duplicate"' in data and b"true" in data.partition(b'"duplicate"')[2]
            )

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
