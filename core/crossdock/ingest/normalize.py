"""Canonical events: Spec validation and normalisation of what an ingestor produced.

Every source's messages go through :func:`normalize` before they are stored, so the rules below
hold for every event in the queue, whatever the sender:

- the message is a JSON object whose ``type`` is a Spec type, with the Spec's required fields
  (``userId``/``anonymousId``, ``event`` for track, ``groupId`` for group, ``userId`` and
  ``previousId`` for alias) and well-typed optional ones;
- ``messageId`` is set (a uuid4 when the sender gave none), ``receivedAt`` is the server's clock,
  ``originalTimestamp`` keeps the client's ``timestamp``, and ``timestamp`` is corrected for the
  client's clock skew as Segment does (Spec: Common, Timestamps); every time is rendered
  ``YYYY-MM-DDTHH:MM:SS.sssZ`` (UTC);
- ``context.crossdock`` records the chain of Crossdock sources the event went through; an event
  that comes back to a source already in its chain is dropped (loop prevention).

Validation is atomic: the first invalid message raises :class:`~crossdock.IngestError` (400) with
a message naming the field (``batch[3].event: required for track``) and nothing is returned.
``null`` counts as absent for the Spec's optional fields (clients send ``"anonymousId": null``).
Unknown fields (``_metadata``, ``channel``, ...) and ``context.library`` pass through untouched.

This runs for every event on the ingest path, so it avoids per-event allocations beyond one
shallow copy of the message and of its ``context``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from attrs import frozen

from crossdock.errors import IngestError
from crossdock.types import Ingested

SPEC_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
"""The Spec message types Crossdock accepts."""

MAX_MESSAGE_ID: Final = 100
"""Longest accepted ``messageId`` (Segment's limit)."""

MIN_EPOCH: Final = -62135596800.0
"""``0001-01-01T00:00:00.000Z``: the earliest time an event may carry (after its offset)."""

MAX_EPOCH: Final = 253402300799.999
"""``9999-12-31T23:59:59.999Z``: the latest time an event may carry (after its offset)."""


@frozen
class Normalized:
    """The result of :func:`normalize`: the canonical events to store, in order, and how many
    events were dropped because they had already passed this source (``looped``)."""

    events: list[dict[str, Any]]
    looped: int


class _Invalid(Exception):
    """One failed check inside a message; :func:`normalize` adds the label and re-raises."""

    def __init__(self, field: str | None, what: str, code: str) -> None:
        self.field = field
        self.what = what
        self.code = code


# ---------------------------------------------------------------------------------------------
# Timestamps


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 time into an aware UTC-based ``datetime``.

    Accepts what :meth:`datetime.fromisoformat` accepts (``Z`` and offsets included, any number
    of fraction digits); a time without an offset is taken as UTC. Raises :class:`ValueError`
    for anything else, non-strings included.
    """
    if not isinstance(value, str):
        msg = "not an ISO-8601 time"
        raise ValueError(msg)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_timestamp(value: float | datetime) -> str:
    """Render an epoch time (seconds) or a ``datetime`` as ``YYYY-MM-DDTHH:MM:SS.sssZ`` in UTC.

    A naive ``datetime`` is taken as UTC. Milliseconds are rounded to the nearest.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.timestamp()
    seconds, millis = divmod(round(value * 1000), 1000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        prefix = _second_prefix(seconds)
    return prefix + _MILLIS[millis]


# Rendering the date and time is the slow part, and the events of a request cluster on a few
# seconds: cache the ``YYYY-MM-DDTHH:MM:SS.`` prefix per second (bounded).
_SECOND_PREFIXES: dict[int, str] = {}
_MILLIS: Final = tuple(f"{i:03d}Z" for i in range(1000))
_EPOCH: Final = datetime(1970, 1, 1)  # naive: calendar arithmetic only


def _second_prefix(seconds: int) -> str:
    if len(_SECOND_PREFIXES) >= 8192:
        _SECOND_PREFIXES.clear()
    t = _EPOCH + timedelta(seconds=seconds)
    prefix = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
    _SECOND_PREFIXES[seconds] = prefix
    return prefix


def _new_message_id() -> str:
    """A random (version 4) UUID string; cheaper than ``str(uuid.uuid4())``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _epoch(value: Any, field: str) -> float:
    # parse_timestamp inlined: this runs for every event.
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            epoch = parsed.timestamp()
        except (ValueError, OverflowError, OSError):
            pass
        else:
            # Year 1 with a positive offset, or 9999 with a negative one, is outside what a UTC
            # time can render (datetime's range).
            if MIN_EPOCH <= epoch <= MAX_EPOCH:
                return epoch
            raise _Invalid(field, "outside 0001-01-01 .. 9999-12-31 in UTC", "invalid_timestamp")
    raise _Invalid(field, "not an ISO-8601 time", "invalid_timestamp")


def _canonical(value: str, epoch: float) -> str:
    # A time already in the canonical shape is kept as sent (saves a render per event).
    if len(value) == 24 and value[23] == "Z" and value[10] == "T" and value[19] == ".":
        return value
    return format_timestamp(epoch)


# ---------------------------------------------------------------------------------------------
# Validation


def _id(msg: Mapping[str, Any], field: str) -> Any:
    value = msg.get(field)
    if value is not None and (type(value) is not str or not value):
        raise _Invalid(field, "must be a non-empty string", "id_not_string")
    return value


def _object(msg: Mapping[str, Any], field: str, code: str) -> None:
    value = msg.get(field)
    if value is not None and type(value) is not dict:
        raise _Invalid(field, "must be an object", code)


def _name(msg: Mapping[str, Any], field: str) -> None:
    value = msg.get(field)
    if value is not None and (type(value) is not str or not value):
        raise _Invalid(field, "must be a non-empty string", f"{field}_not_string")


def _validate(msg: Any) -> str:
    """Check one message against the Spec; return its type."""
    if type(msg) is not dict:
        raise _Invalid(None, "must be a JSON object", "invalid_event")
    kind = msg.get("type")
    # ``type(kind) is not str`` first: an object or array there is unhashable.
    if type(kind) is not str or kind not in SPEC_TYPES:
        if kind is None:
            raise _Invalid("type", "required", "type_required")
        what = "must be one of alias, group, identify, page, screen, track"
        raise _Invalid("type", what, "unsupported_type")
    user_id = _id(msg, "userId")
    if kind == "alias":
        if user_id is None:
            raise _Invalid("userId", "required for alias", "id_required")
        if _id(msg, "previousId") is None:
            raise _Invalid("previousId", "required for alias", "previous_id_required")
    elif _id(msg, "anonymousId") is None and user_id is None:
        raise _Invalid(None, "userId or anonymousId required", "id_required")
    if kind == "track":
        event = msg.get("event")
        if event is None:
            raise _Invalid("event", "required for track", "event_not_defined")
        if type(event) is not str or not event:
            raise _Invalid("event", "must be a non-empty string", "event_not_string")
        _object(msg, "properties", "properties_not_object")
    elif kind == "identify":
        _object(msg, "traits", "traits_not_object")
    elif kind == "page" or kind == "screen":
        _name(msg, "name")
        _name(msg, "category")
        _object(msg, "properties", "properties_not_object")
    elif kind == "group":
        if _id(msg, "groupId") is None:
            raise _Invalid("groupId", "required for group", "group_id_required")
        _object(msg, "traits", "traits_not_object")
    _object(msg, "context", "context_not_object")
    _object(msg, "integrations", "integrations_not_object")
    message_id = msg.get("messageId")
    if message_id is not None and (
        type(message_id) is not str or not message_id or len(message_id) > MAX_MESSAGE_ID
    ):
        what = f"must be a non-empty string of at most {MAX_MESSAGE_ID} characters"
        raise _Invalid("messageId", what, "message_id_invalid")
    return kind


def label(ingested: Ingested, index: int) -> str:
    """How errors name message ``index`` of ``ingested`` (``batch[3]``; empty for a lone one)."""
    labels = ingested.labels
    if labels is not None and index < len(labels):
        return labels[index]
    return "" if len(ingested.events) == 1 else f"[{index}]"


def _error(label: str, exc: _Invalid) -> IngestError:
    where = label
    if exc.field is not None:
        where = f"{label}.{exc.field}" if label else exc.field
    message = f"{where}: {exc.what}" if where else exc.what
    return IngestError(400, message, code=exc.code)


# ---------------------------------------------------------------------------------------------
# Normalisation


def _chain(context: dict[str, Any] | None) -> list[Any]:
    if context is None:
        return []
    mark = context.get("crossdock")
    if type(mark) is dict:
        sources = mark.get("sources")
        if type(sources) is list:
            return sources
    return []


def normalize(ingested: Ingested, *, source_id: str, received_at: float) -> Normalized:
    """Validate and normalise the messages of one request (see the module docstring).

    :param ingested: what the source's ingestor made of the request; ``labels`` name the
        messages in errors, ``sent_at`` is the envelope's ``sentAt``.
    :param source_id: the id of the source that accepted the request; recorded in
        ``context.crossdock``.
    :param received_at: the server's receive time (epoch seconds), the same for every message.
    :return: the canonical events (new dicts; the input is not modified) and the loop count.
    :raises IngestError: 400 naming the first invalid field; nothing is returned then.
    """
    received = format_timestamp(received_at)
    envelope_sent: float | None = None
    envelope_sent_text: str | None = None
    if ingested.sent_at is not None:
        try:
            envelope_sent = _epoch(ingested.sent_at, "sentAt")
        except _Invalid as exc:
            raise _error("", exc) from None
        envelope_sent_text = _canonical(ingested.sent_at, envelope_sent)

    out: list[dict[str, Any]] = []
    looped = 0
    for index, msg in enumerate(ingested.events):
        try:
            _validate(msg)
            context = msg.get("context")
            mark = None if context is None else context.get("crossdock")
            if mark is None:
                # The common case: first hop, nothing to look at or keep.
                context = {} if context is None else dict(context)
                context["crossdock"] = {"source": source_id, "sources": [source_id]}
            else:
                chain = _chain(context)
                if source_id in chain:
                    looped += 1
                    continue
                context = dict(context)
                # Other keys a source or an upstream hop set (e.g. ``origin``) are kept.
                mark = dict(mark) if type(mark) is dict else {}
                mark["source"] = source_id
                mark["sources"] = [*chain, source_id]
                context["crossdock"] = mark
            event = dict(msg)
            event["context"] = context
            if event.get("messageId") is None:
                event["messageId"] = _new_message_id()
            _stamp_times(event, received, received_at, envelope_sent, envelope_sent_text)
        except _Invalid as exc:
            raise _error(label(ingested, index), exc) from None
        out.append(event)
    return Normalized(out, looped)


def _stamp_times(
    event: dict[str, Any],
    received: str,
    received_at: float,
    envelope_sent: float | None,
    envelope_sent_text: str | None,
) -> None:
    """Set ``receivedAt``, ``sentAt``, ``originalTimestamp`` and the corrected ``timestamp``."""
    event["receivedAt"] = received
    sent_value = event.get("sentAt")
    if sent_value is not None:
        sent: float | None = _epoch(sent_value, "sentAt")
        event["sentAt"] = _canonical(sent_value, sent)  # type: ignore[arg-type]
    else:
        sent = envelope_sent
        if envelope_sent_text is not None:
            event["sentAt"] = envelope_sent_text
    client_value = event.get("timestamp")
    if client_value is None:
        # No client time: the receive time is the best we have, and nothing to correct.
        event["timestamp"] = received
        return
    client = _epoch(client_value, "timestamp")
    client_text = _canonical(client_value, client)
    original_value = event.get("originalTimestamp")
    if original_value is not None:
        # Already normalised upstream (Segment's webhooks, another Crossdock): ``timestamp`` is
        # corrected against that receiver's clock; correcting it again would add the skew twice.
        original = _epoch(original_value, "originalTimestamp")
        event["originalTimestamp"] = _canonical(original_value, original)
        event["timestamp"] = client_text
        return
    event["originalTimestamp"] = client_text
    if sent is None:
        event["timestamp"] = client_text
    else:
        corrected = received_at - (sent - client)
        if not MIN_EPOCH <= corrected <= MAX_EPOCH:
            what = "outside 0001-01-01 .. 9999-12-31 in UTC once corrected by sentAt"
            raise _Invalid("timestamp", what, "invalid_timestamp")
        seconds, millis = divmod(round(corrected * 1000), 1000)  # format_timestamp, inlined
        prefix = _SECOND_PREFIXES.get(seconds)
        if prefix is None:
            prefix = _second_prefix(seconds)
        event["timestamp"] = prefix + _MILLIS[millis]
