"""Fake vendors for tests: real aiohttp servers on ``127.0.0.1:0`` with a request log.

:class:`FakeVendor` answers every request, in this order: the strictness hook
:meth:`~FakeVendor.check` (a subclass's contract checks), then scripted one-shot answers
(:meth:`~FakeVendor.script`), then the persistent answer set by :meth:`~FakeVendor.respond`,
then :meth:`~FakeVendor.answer` (the default handler, 200 ``{"success": true}``).
:class:`FakeSegment` is the strict fake of Segment's tracking API (its docstring lists the
rules it enforces)::

    async with FakeVendor() as fake:
        fake.script([500, 500, 200])
        ...  # point the destination at fake.url
        await fake.wait_for(3)
        assert fake.requests[-1].json() == {...}
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web
from attrs import define, field
from multidict import CIMultiDictProxy

__all__ = ["Answer", "Discarded", "FakeSegment", "FakeVendor", "RecordedRequest"]


@define
class RecordedRequest:
    """One request the fake received: method, path, query, headers and raw body bytes."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float = field(factory=time.time)

    def json(self) -> Any:
        """The body parsed as JSON (gzip bodies are decompressed)."""
        return orjson.loads(self.content)

    @property
    def content(self) -> bytes:
        """The body, decompressed when ``Content-Encoding: gzip`` (aiohttp usually has already
        decompressed it; ``body`` is what the handler read)."""
        gzipped = self.body[:2] == b"\x1f\x8b"
        if gzipped and self.headers.get("Content-Encoding", "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", "replace")


@define
class Answer:
    """A scripted answer: status, body (bytes, str, or JSON-able), headers; ``delay`` seconds
    before answering; ``drop`` closes the connection without an answer."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(factory=dict)
    delay: float = 0.0
    drop: bool = False

    def response(self) -> web.Response:
        """This answer as an aiohttp response."""
        headers = dict(self.headers)
        body = self.body
        if body is None:
            body = {"success": True} if 200 <= self.status < 300 else {"success": False}
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/plain")
        else:
            data = orjson.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return web.Response(status=self.status, body=data, headers=headers)


AnswerLike = int | Answer | Mapping[str, Any]


def _as_answer(value: AnswerLike) -> Answer:
    if isinstance(value, Answer):
        return value
    if isinstance(value, int):
        return Answer(value)
    return Answer(**dict(value))


class FakeVendor:
    """A local HTTP server standing in for a vendor API.

    ``requests`` logs every request (also those the strictness hook refused);
    ``in_flight``/``max_in_flight`` count concurrent requests. Subclasses override
    :meth:`check` (refuse what the real vendor would) and :meth:`answer` (the default handler).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: list[Answer] = []
        self._persistent: Answer | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> FakeVendor:
        """Start listening on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeVendor:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    # -- scripting ------------------------------------------------------------------------------

    def script(self, answers: Iterable[AnswerLike]) -> None:
        """Queue one-shot answers (status codes, :class:`Answer` or its keyword dicts), used in
        order by the next requests that pass :meth:`check`."""
        self._script.extend(_as_answer(a) for a in answers)

    def respond(
        self,
        status: int | None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Answer every later request like this (after the script); ``respond(None)`` returns
        to the default handler."""
        if status is None:
            self._persistent = None
        else:
            self._persistent = Answer(status, body, dict(headers or {}), delay, drop)

    def reset(self) -> None:
        """Forget requests, scripted and persistent answers."""
        self.requests.clear()
        self._script.clear()
        self._persistent = None
        self.max_in_flight = 0

    async def wait_for(
        self,
        condition: int | Callable[[FakeVendor], bool],
        timeout: float = 10.0,
    ) -> None:
        """Wait until ``condition`` (a request count, or a predicate on the fake) holds; raise
        :class:`TimeoutError` after ``timeout`` seconds."""

        def holds() -> bool:
            if isinstance(condition, int):
                return len(self.requests) >= condition
            return bool(condition(self))

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(holds)

    async def notify(self) -> None:
        """Wake :meth:`wait_for` callers (subclasses call it after changing recorded state)."""
        async with self._changed:
            self._changed.notify_all()

    # -- hooks for subclasses -------------------------------------------------------------------

    async def check(self, request: RecordedRequest) -> web.Response | None:
        """Contract checks run before any answer; return a response to refuse the request."""
        return None

    async def answer(self, request: RecordedRequest) -> web.Response:
        """The default answer: 200 ``{"success": true}``."""
        return web.json_response({"success": True})

    # -- handler --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            recorded = RecordedRequest(
                request.method, request.path, dict(request.query), request.headers, body
            )
            self.requests.append(recorded)
            try:
                refusal = await self.check(recorded)
                if refusal is not None:
                    return refusal
                scripted = self._script.pop(0) if self._script else self._persistent
                if scripted is not None:
                    if scripted.delay:
                        await asyncio.sleep(scripted.delay)
                    if scripted.drop:
                        if request.transport is not None:
                            request.transport.abort()
                        raise ConnectionResetError("dropped by the fake")
                    return scripted.response()
                return await self.answer(recorded)
            finally:
                await self.notify()
        finally:
            self.in_flight -= 1


@define
class Discarded:
    """A message the fake Segment accepted with 200 but dropped, and why (a Segment discard
    code such as ``event_not_defined``)."""

    message: Any
    reason: str


SEGMENT_BODY_LIMIT = 500 * 1024
SEGMENT_EVENT_LIMIT = 32 * 1024
SEGMENT_BATCH_COUNT = 2500
_SEGMENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})


class FakeSegment(FakeVendor):
    """A strict fake of Segment's tracking API (``POST /v1/batch``, ``/v1/import`` and
    ``/v1/{identify,track,page,screen,group,alias}``).

    Stricter than Segment where a test wants to know: no valid write key (Basic auth username
    or body ``writeKey``) → 401 ``{"code": "unauthorized"}``. Like Segment: invalid JSON, a body
    over 500 KB or an event over 32 KB → 400; messages without ``type``, without ids or a track
    without ``event`` → 200 but recorded in :attr:`discarded`; items past 2,500 → discarded.
    :attr:`events` lists the accepted messages. :meth:`rate_limited` and :meth:`unavailable`
    switch on failure modes (429 with ``Retry-After: 2``, 503); :meth:`healthy` switches them off.
    """

    def __init__(self, write_keys: Iterable[str] = ("test-write-key",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.write_keys = set(write_keys)
        self.events: list[dict[str, Any]] = []
        self.discarded: list[Discarded] = []

    def rate_limited(self, seconds: int = 2) -> None:
        """Answer 429 with ``Retry-After`` and ``X-RateLimit-Reset`` until :meth:`healthy`."""
        headers = {"Retry-After": str(seconds), "X-RateLimit-Reset": str(seconds)}
        self.respond(429, {"code": "rate_limited", "message": "Too Many Requests"}, headers)

    def unavailable(self) -> None:
        """Answer 503 until :meth:`healthy`."""
        self.respond(503, {"code": "unavailable", "message": "Service Unavailable"})

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.method != "POST" or not request.path.startswith("/v1/"):
            return _error(404, "not_found", f"no route {request.method} {request.path}")
        kind = request.path[len("/v1/") :]
        if kind not in _SEGMENT_TYPES and kind not in ("batch", "import"):
            return _error(404, "not_found", f"no route {request.path}")
        try:
            content = request.content
        except (OSError, EOFError, binascii.Error):
            return _error(400, "invalid_body", "body is not valid gzip")
        if len(content) > SEGMENT_BODY_LIMIT:
            return _error(400, "payload_too_large", "request body exceeds 500 KB")
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "body must be a JSON object")
        if (
            _basic_user(request) not in self.write_keys
            and body.get("writeKey") not in self.write_keys
        ):
            return _error(401, "unauthorized", "invalid or missing write key")
        messages = body.get("batch") if kind in ("batch", "import") else [body]
        if not isinstance(messages, list):
            return _error(400, "invalid_batch", "batch must be a list")
        for message in messages:
            if len(orjson.dumps(message)) > SEGMENT_EVENT_LIMIT:
                return _error(400, "event_too_large", "an event exceeds 32 KB")
        return None

    async def answer(self, request: RecordedRequest) -> web.Response:
        body = request.json()
        kind = request.path[len("/v1/") :]
        if kind in ("batch", "import"):
            messages = body["batch"]
        else:
            messages = [body]
            body.setdefault("type", kind)
        if not messages:
            self.discarded.append(Discarded(None, "empty_batch"))
        for i, message in enumerate(messages):
            if i >= SEGMENT_BATCH_COUNT:
                self.discarded.append(Discarded(message, "batch_too_large"))
                continue
            reason = _discard_reason(message)
            if reason is None:
                self.events.append(message)
            else:
                self.discarded.append(Discarded(message, reason))
        return web.json_response({"success": True})


def _discard_reason(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "not_object"
    kind = message.get("type")
    if kind not in _SEGMENT_TYPES:
        return "type_missing" if kind is None else "type_invalid"
    user, anon = message.get("userId"), message.get("anonymousId")
    if user is None and anon is None:
        return "no_user_anon_id"
    for value in (user, anon):
        if value is not None and (not isinstance(value, str) or not value):
            return "id_not_string"
    if kind == "track":
        if "event" not in message:
            return "event_not_defined"
        if not isinstance(message["event"], str):
            return "event_not_string"
    return None


def _basic_user(request: RecordedRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"success": False, "code": code, "message": message}, status=status)
