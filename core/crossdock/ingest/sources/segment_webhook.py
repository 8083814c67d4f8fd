"""Built-in source ``segment-webhook``: what Segment's Webhooks destination posts to us.

The body is one Segment message, or (Webhooks *Actions* with batching) a JSON array of them
(Segment's Webhooks docs). With a ``secret`` configured, ``X-Signature`` must be the
lowercase hex HMAC-SHA1 of:

- the raw body bytes, for a single message;
- for an array, the first element as Segment serialized it (``JSON.stringify(body[0])``): the
  exact byte slice of that element inside the raw body, found by a small scanner without
  re-serializing; as a fallback, Python's compact serialization of the parsed element
  (``ensure_ascii=False``), and the whole raw body (senders that sign everything).

Every candidate is compared in constant time; a missing or wrong signature is a 401.

``delete`` messages (Segment's user-deletion notifications) are accepted and skipped: Crossdock
has no deletion pipeline to hand them to, and refusing them would make Segment report a
delivery failure for every deletion. They are logged (without identifiers) and never stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from aiohttp import web
from attrs import frozen

import crossdock
from crossdock import (
    IndexLabels,
    Ingested,
    IngestError,
    IngestRoute,
    Secret,
    Source,
    SourceType,
    parse_json,
    read_body,
)

log = logging.getLogger("crossdock.ingest")

DEFAULT_PATH: Final = "/hooks/segment"
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest accepted body (decompressed): generous for batched Actions deliveries."""

_WHITESPACE: Final = b" \t\r\n"


@frozen
class SegmentWebhookSettings:
    """Settings of a ``segment-webhook`` source: ``secret``, the Webhooks destination's shared
    secret (``None``: signatures are not checked)."""

    secret: Secret | None = None


def _skip_ws(data: bytes, index: int) -> int:
    n = len(data)
    while index < n and data[index] in _WHITESPACE:
        index += 1
    return index


def first_element_span(data: bytes) -> tuple[int, int] | None:
    """The ``(start, end)`` byte span of the first element of the JSON array ``data``.

    A small scanner over strings (with escapes) and bracket depth; it trusts that ``data`` is
    valid JSON (the caller parses it too). ``None`` if ``data`` is not a non-empty array.
    """
    n = len(data)
    index = _skip_ws(data, 0)
    if index >= n or data[index] != 0x5B:  # [
        return None
    index = _skip_ws(data, index + 1)
    if index >= n or data[index] == 0x5D:  # ]
        return None
    start = index
    depth = 0
    while index < n:
        byte = data[index]
        if byte == 0x22:  # a string: jump to its closing quote
            index += 1
            while True:
                quote = data.find(b'"', index)
                if quote < 0:
                    return None
                slashes = 0
                while data[quote - 1 - slashes] == 0x5C:  # backslash
                    slashes += 1
                index = quote + 1
                if slashes % 2 == 0:
                    break
            if depth == 0:
                return start, index
            continue
        if byte == 0x7B or byte == 0x5B:  # { [
            depth += 1
        elif byte == 0x7D or byte == 0x5D:  # } ]
            depth -= 1
            if depth == 0:
                return start, index + 1
            if depth < 0:  # a scalar element ended by the array's "]"
                return start, _rstrip(data, start, index)
        elif depth == 0 and byte == 0x2C:  # , after a scalar element
            return start, _rstrip(data, start, index)
        index += 1
    return None


def _rstrip(data: bytes, start: int, end: int) -> int:
    while end > start and data[end - 1] in _WHITESPACE:
        end -= 1
    return end


def signature_candidates(data: bytes, body: Any) -> list[bytes]:
    """The byte strings a valid ``X-Signature`` may have been computed over."""
    if type(body) is not list or not body:
        return [data]
    candidates = []
    span = first_element_span(data)
    if span is not None:
        candidates.append(data[span[0] : span[1]])
    compact = json.dumps(body[0], separators=(",", ":"), ensure_ascii=False).encode()
    if compact not in candidates:
        candidates.append(compact)
    candidates.append(data)
    return candidates


def signature_valid(secret: bytes, signature: str | None, candidates: Sequence[bytes]) -> bool:
    """Whether ``signature`` is the hex HMAC-SHA1 of one candidate (all compared, constant time)."""
    return crossdock.signature_valid(secret, signature, candidates, digest="sha1")


class SegmentWebhookIngestor:
    """Turns Segment Webhooks deliveries into Spec messages (see the module docstring)."""

    def __init__(self, source: Source) -> None:
        settings: SegmentWebhookSettings = source.settings
        self._path = source.path or DEFAULT_PATH
        self._secret = settings.secret.reveal().encode() if settings.secret else None
        self._source_id = source.id

    def routes(self) -> Sequence[IngestRoute]:
        """``POST`` on the source's path."""
        return [IngestRoute("POST", self._path)]

    async def ingest(self, request: web.Request) -> Ingested:
        """Read, verify and unpack one delivery."""
        data = await read_body(request, MAX_BODY_BYTES)
        body = parse_json(data)
        if self._secret is not None:
            signature = request.headers.get("X-Signature")
            if not signature_valid(self._secret, signature, signature_candidates(data, body)):
                raise IngestError(401, "X-Signature: missing or invalid", code="unauthorized")
        if type(body) is dict:
            messages: list[Any] = [body]
            labels: Sequence[str] | None = None
        elif type(body) is list:
            if not body:
                raise IngestError(400, "body: empty array", code="empty_batch")
            messages = body
            labels = IndexLabels(len(body))
        else:
            msg = "body: must be a JSON object or an array of objects"
            raise IngestError(400, msg, code="invalid_body")
        deletes = [
            i for i, m in enumerate(messages) if type(m) is dict and m.get("type") == "delete"
        ]
        if deletes:
            log.info(
                "skipped Segment delete notifications",
                extra={"source": self._source_id, "count": len(deletes)},
            )
            skip = set(deletes)
            kept = [m for i, m in enumerate(messages) if i not in skip]
            if labels is not None:
                labels = [labels[i] for i in range(len(messages)) if i not in skip]
            return Ingested(kept, labels=labels)
        return Ingested(messages, labels=labels)


SOURCE_TYPE: Final = SourceType(
    name="segment-webhook",
    settings=SegmentWebhookSettings,
    description="Segment's Webhooks destination (X-Signature HMAC-SHA1, single or batched)",
    default_path=DEFAULT_PATH,
)


@crossdock.hookimpl
def crossdock_source_types() -> Iterable[SourceType]:
    """Declare the ``segment-webhook`` source type."""
    return [SOURCE_TYPE]


@crossdock.hookimpl
def crossdock_make_ingestor(source: Source) -> SegmentWebhookIngestor:
    """Build the ingestor of a ``segment-webhook`` source (the registry calls only this module
    for it)."""
    return SegmentWebhookIngestor(source)
