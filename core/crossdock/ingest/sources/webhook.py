"""Built-in source ``webhook``: any JSON sender, mapped to Spec messages with JMESPath.

The body is one JSON object or an array of objects. Each object goes through the source's
``mapping`` (``[sources.mapping]``: event field → JMESPath expression over the object,
compiled once at start-up with :func:`crossdock.compile_mapping`) and the result must be a
valid Spec message: a mapping without ``type`` gives a precise 400 from the core's validation
(``[1].type: required``). Without a mapping, the objects must already be Spec messages.

``token`` (optional) is checked as ``Authorization: Bearer <token>`` or ``?token=<token>``,
in constant time; otherwise 401. Leaving ``token`` out turns the check off; ``token = ""`` (or
a token from an empty variable) is a ``crossdock check`` error, never "auth off".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from aiohttp import web
from attrs import frozen

import crossdock
from crossdock import (
    IndexLabels,
    Ingested,
    IngestError,
    IngestRoute,
    MappingError,
    Secret,
    Source,
    SourceType,
    bearer_token,
    compile_mapping,
    parse_json,
    read_body,
    secret_in,
)

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest accepted body (decompressed)."""


@frozen
class WebhookSourceSettings:
    """Settings of a ``webhook`` source: ``token``, the shared token the sender presents
    (``None``: no check)."""

    token: Secret | None = None


class WebhookIngestor:
    """Maps JSON webhook bodies to Spec messages (see the module docstring)."""

    def __init__(self, source: Source) -> None:
        settings: WebhookSourceSettings = source.settings
        self._path = source.path or f"/hooks/{source.id}"
        # an empty token is refused by ``crossdock check``; here it still never means "no check"
        token = settings.token
        self._token = token.reveal().encode() if token is not None else None
        self._mapping: Callable[[Any], Any] | None = None
        if source.mapping:
            self._mapping = compile_mapping(source.mapping, functions=source.functions)

    def routes(self) -> Sequence[IngestRoute]:
        """``POST`` on the source's path."""
        return [IngestRoute("POST", self._path)]

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        presented = bearer_token(request) or request.query.get("token")
        return bool(presented) and secret_in(presented, [self._token])

    async def ingest(self, request: web.Request) -> Ingested:
        """Check the token, read the body and map every object to a message."""
        if self._token is not None and not self._authorized(request):
            raise IngestError(401, "a valid token is required", code="unauthorized")
        return self.decode(parse_json(await read_body(request, MAX_BODY_BYTES)))

    def decode(self, body: Any) -> Ingested:
        """Map one parsed body (an object or an array of them) to messages; also what
        ``crossdock test`` runs on a captured body."""
        if type(body) is dict:
            return Ingested([self._map(body, "")])
        if type(body) is not list:
            msg = "body: must be a JSON object or an array of objects"
            raise IngestError(400, msg, code="invalid_body")
        if not body:
            raise IngestError(400, "body: empty array", code="empty_batch")
        events = [self._map(item, f"[{index}]") for index, item in enumerate(body)]
        return Ingested(events, labels=IndexLabels(len(events)))

    def _map(self, item: Any, label: str) -> Any:
        if type(item) is not dict:
            msg = f"{label}: must be a JSON object" if label else "body: must be a JSON object"
            raise IngestError(400, msg, code="invalid_event")
        if self._mapping is None:
            return item
        try:
            event = self._mapping(item)
        except MappingError as exc:
            where = f"{label}.{exc.path}" if label else exc.path
            raise IngestError(400, f"{where}: {exc.message}", code="mapping_failed") from None
        return {} if event is None else event


SOURCE_TYPE: Final = SourceType(
    name="webhook",
    settings=WebhookSourceSettings,
    description="Any JSON sender; a JMESPath mapping turns each object into an event",
)


@crossdock.hookimpl
def crossdock_source_types() -> Iterable[SourceType]:
    """Declare the ``webhook`` source type."""
    return [SOURCE_TYPE]


@crossdock.hookimpl
def crossdock_make_ingestor(source: Source) -> WebhookIngestor:
    """Build the ingestor of a ``webhook`` source (compiles its mapping once; the registry
    calls only this module for it)."""
    return WebhookIngestor(source)
