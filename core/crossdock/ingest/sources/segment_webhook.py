"""Built-in source ``segment-webhook``: what Segment's Webhooks destination posts to us.

The body is one Segment message, or (Webhooks *Actions* with batching) a JSON array of them.
With a ``secret`` configured, ``X-Signature`` must be the lowercase hex HMAC-SHA1 of the raw
body bytes, whole (Segment's Webhooks docs), checked before the body is parsed. Every
comparison runs in constant time; a missing or wrong signature is a 401.

Segment's Webhooks (Actions) batch mode signs only the *first element* of an array. Accepting
that is an explicit setting (``signature_scope = "first-element"``): the other elements are
then covered by no signature at all, so that mode also requires ``token``, a second secret the
sender carries in a header (``token_header``, set in the Actions mapping's *Headers*), so a
signature captured from an earlier delivery forges nothing on its own. A configured ``token``
is checked in every mode, before the body is read.

Replays: a signed source refuses a message whose ``receivedAt`` (stamped by Segment when it
received the message, inside the signed bytes) is more than ``max_age`` away from our clock,
and gives a message without ``messageId`` one derived from a SHA-256 of its bytes, so the
queue's dedupe window catches a replay inside ``max_age`` (keep ``max_age`` ≤
``queue.dedupe_window``).

``delete`` messages (Segment's user-deletion notifications) are accepted and skipped: Crossdock
has no deletion pipeline to hand them to, and refusing them would make Segment report a
delivery failure for every deletion. They are logged (without identifiers) and never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

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
    secret_in,
)

log = logging.getLogger("crossdock.ingest")

DEFAULT_PATH: Final = "/hooks/segment"
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest accepted body (decompressed): generous for batched Actions deliveries."""

DEFAULT_MAX_AGE: Final = 12 * 3600.0
"""Default replay tolerance on ``receivedAt``, in seconds: half the queue's default dedupe
window (24 h)."""

DEFAULT_TOKEN_HEADER: Final = "X-Crossdock-Token"

DERIVED_ID_PREFIX: Final = "body-sha256-"
"""Prefix of a ``messageId`` derived from a message's bytes."""

SignatureScope = Literal["body", "first-element"]

_WHITESPACE: Final = b" \t\r\n"


@frozen
class SegmentWebhookSettings:
    """Settings of a ``segment-webhook`` source.

    ``secret``: the Webhooks destination's shared secret (``None``: signatures are not checked).
    ``signature_scope``: ``"body"`` (default: the signature covers the whole body) or
    ``"first-element"`` (an array is accepted on its first element's signature, as Segment's
    Webhooks (Actions) batching signs; needs ``secret`` and ``token``). ``token`` /
    ``token_header``: a second secret the sender must send in that header. ``max_age``: the
    replay tolerance on a signed message's ``receivedAt``.
    """

    secret: Secret | None = None
    signature_scope: SignatureScope = "body"
    token: Secret | None = None
    token_header: str = DEFAULT_TOKEN_HEADER
    max_age: float = DEFAULT_MAX_AGE

    def __attrs_post_init__(self) -> None:
        problems = [
            (self.secret is not None and not self.secret.reveal(), "'secret' must not be empty"),
            (self.token is not None and not self.token.reveal(), "'token' must not be empty"),
            (not self.token_header.strip(), "'token_header' must not be empty"),
            (not self.max_age > 0, "'max_age' must be a positive number of seconds"),
            (
                self.signature_scope == "first-element"
                and (self.secret is None or self.token is None),
                "'signature_scope' \"first-element\" requires both secret and token (a"
                " first-element signature alone does not cover the rest of a batch)",
            ),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)


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
    """What a first-element signature (``signature_scope = "first-element"``) may cover.

    For an array: the first element as Segment serialized it (``JSON.stringify(body[0])``, the
    exact byte slice inside ``data``), Python's compact serialization of it as a fallback, and
    the whole body. For anything else: the whole body only.
    """
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


def derived_message_id(data: bytes) -> str:
    """The stable ``messageId`` of a message that has none: a SHA-256 of its bytes."""
    return DERIVED_ID_PREFIX + hashlib.sha256(data).hexdigest()


def _canonical_bytes(message: Any) -> bytes:
    # An element of an array has no bytes of its own worth trusting for identity (spacing may
    # vary between deliveries of the same batch): hash a canonical serialization instead.
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _epoch(value: Any) -> float:
    """Seconds since the epoch of an ISO-8601 time (no offset: UTC); ``ValueError`` otherwise."""
    return crossdock.parse_timestamp(value).timestamp()


def _unauthorized(what: str) -> IngestError:
    return IngestError(401, f"{what}: missing or invalid", code="unauthorized")


class SegmentWebhookIngestor:
    """Turns Segment Webhooks deliveries into Spec messages (see the module docstring)."""

    def __init__(self, source: Source) -> None:
        settings: SegmentWebhookSettings = source.settings
        self._path = source.path or DEFAULT_PATH
        self._secret = settings.secret.reveal().encode() if settings.secret else None
        self._first_element = settings.signature_scope == "first-element"
        self._token = settings.token.reveal().encode() if settings.token else None
        self._token_header = settings.token_header
        self._max_age = float(settings.max_age)
        self._source_id = source.id

    def routes(self) -> Sequence[IngestRoute]:
        """``POST`` on the source's path."""
        return [IngestRoute("POST", self._path)]

    async def ingest(self, request: web.Request) -> Ingested:
        """Authenticate, read, verify and unpack one delivery (auth before any parsing)."""
        if self._token is not None:
            given = request.headers.get(self._token_header)
            if given is None or not secret_in(given, (self._token,)):
                raise _unauthorized(self._token_header)
        data = await read_body(request, MAX_BODY_BYTES)
        signature = request.headers.get("X-Signature")
        whole = self._secret is not None and not self._first_element
        if whole and not signature_valid(self._secret or b"", signature, [data]):
            raise _unauthorized("X-Signature")
        body = parse_json(data)
        if self._secret is not None and self._first_element:
            candidates = signature_candidates(data, body)
            if not signature_valid(self._secret, signature, candidates):
                raise _unauthorized("X-Signature")
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
        if self._secret is not None:
            self._refuse_replays(messages, labels)
        self._derive_message_ids(messages, data if labels is None else None)
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

    def _refuse_replays(self, messages: list[Any], labels: Sequence[str] | None) -> None:
        """A 400 for the first message whose ``receivedAt`` is outside ``max_age`` of now."""
        now = time.time()
        for index, message in enumerate(messages):
            if type(message) is not dict or message.get("receivedAt") is None:
                continue  # no timestamp to judge by: the messageId dedupe is the only guard
            where = "receivedAt" if labels is None else f"{labels[index]}.receivedAt"
            try:
                moment = _epoch(message["receivedAt"])
            except (ValueError, OverflowError):
                msg = f"{where}: must be an ISO-8601 time"
                raise IngestError(400, msg, code="invalid_timestamp") from None
            if abs(now - moment) > self._max_age:
                msg = f"{where}: outside the replay tolerance (max_age); refused as a replay"
                raise IngestError(400, msg, code="replay_refused")

    @staticmethod
    def _derive_message_ids(messages: list[Any], whole: bytes | None) -> None:
        """Give each message without ``messageId`` one derived from its bytes (``whole``: the
        raw body of a single message)."""
        for message in messages:
            if type(message) is dict and message.get("messageId") is None:
                data = whole if whole is not None else _canonical_bytes(message)
                message["messageId"] = derived_message_id(data)


SOURCE_TYPE: Final = SourceType(
    name="segment-webhook",
    settings=SegmentWebhookSettings,
    description="Segment's Webhooks destination (X-Signature HMAC-SHA1 over the whole body)",
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
