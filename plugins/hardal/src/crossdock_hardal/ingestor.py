"""The ingestor of a ``hardal`` source: Hardal Custom API requests → Spec messages.

Per request: the Bearer token (constant time; 401, nothing stored), the body (one Hardal event
or an array of them; 400 when it is neither), then per event: :func:`~.event.clean_event`, the
mapping (``mapping.toml`` with the source's overrides), the split of a message carrying
``identify`` into an identify and itself, and the Spec check (:mod:`.check`).

A bad event never costs the others: the good ones are stored and the 200 answer lists the bad
ones by index, ``{"success": true, "accepted": 2, "rejected": [{"index": 1, "message":
"[1].event_name: required (Hardal's ##event_name##)"}]}``. Only when no event of the request
is usable is the answer a 400, naming the (first) bad field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from aiohttp import web

from crossdock import (
    Ingested,
    IngestError,
    IngestRoute,
    MappingError,
    Source,
    bearer_token,
    compile_spec,
    parse_json,
    read_body,
    secret_in,
)
from crossdock_hardal.check import problem
from crossdock_hardal.event import BadEvent, clean_event
from crossdock_hardal.settings import HardalSettings

DEFAULT_PATH: Final = "/hooks/hardal"
MAX_BODY_BYTES: Final = 1024 * 1024
"""Largest accepted body (decompressed); one Hardal event is a few KB."""

EXTRA: Final = "identify"
"""The output key that makes one Hardal event an identify plus the message itself."""

_SHARED: Final = ("userId", "anonymousId", "timestamp", "context")


def _label(index: int | None, field: str) -> str:
    where = "" if index is None else f"[{index}]"
    if field:
        return f"{where}.{field}" if where else field
    return where or "body"


def split(message: dict[str, Any]) -> list[dict[str, Any]]:
    """``message`` alone, or (when it has an ``identify`` object) an identify message with that
    object's ``traits`` and the message's ids, time and context, then ``message`` without
    ``identify``. The identify's ``messageId`` is the message's with ``-identify`` appended."""
    extra = message.pop(EXTRA, None)
    if extra is None:
        return [message]
    if type(extra) is not dict:
        raise BadEvent(EXTRA, "must be an object (the traits of an extra identify)")
    identify: dict[str, Any] = {"type": "identify"}
    for key in _SHARED:
        if message.get(key) is not None:
            identify[key] = message[key]
    traits = extra.get("traits")
    identify["traits"] = traits if traits is not None else {}
    if isinstance(message.get("messageId"), str):
        identify["messageId"] = message["messageId"] + "-identify"
    return [identify, message]


class HardalIngestor:
    """Turns Hardal Custom API requests into Spec messages (see the module docstring)."""

    def __init__(self, source: Source, mapping: Callable[[Any], Any]) -> None:
        settings: HardalSettings = source.settings
        self._path = source.path or DEFAULT_PATH
        self._token = settings.token.reveal().encode()
        self._mapping = mapping

    @classmethod
    def create(cls, source: Source) -> HardalIngestor:
        """Compile the source's mapping (its ``spec``, else the plugin's default) once."""
        from crossdock_hardal import MAPPING
        from crossdock_hardal.functions import FUNCTIONS

        return cls(source, compile_spec(source.spec or MAPPING, functions=FUNCTIONS))

    def routes(self) -> Sequence[IngestRoute]:
        """``POST`` on the source's path."""
        return [IngestRoute("POST", self._path)]

    async def ingest(self, request: web.Request) -> Ingested:
        """Check the token, read the body and map every event (see the module docstring)."""
        presented = bearer_token(request)
        if not presented or not secret_in(presented, [self._token]):
            msg = "Authorization: a valid 'Bearer <token>' header is required (the source's token)"
            raise IngestError(401, msg, code="unauthorized")
        return self.decode(parse_json(await read_body(request, MAX_BODY_BYTES)))

    def decode(self, body: Any) -> Ingested:
        """Map one parsed body (an event or an array of them); also what ``crossdock test``
        runs on a captured Hardal body."""
        if type(body) is dict:
            raws: list[Any] = [body]
            indexed = False
        elif type(body) is list and body:
            raws, indexed = body, True
        elif type(body) is list:
            raise IngestError(400, "body: empty array", code="empty_batch")
        else:
            msg = "body: must be a Hardal event (a JSON object) or an array of them"
            raise IngestError(400, msg, code="invalid_body")
        events: list[dict[str, Any]] = []
        labels: list[str] = []
        rejected: list[dict[str, Any]] = []
        for i, raw in enumerate(raws):
            index = i if indexed else None
            try:
                messages = self._translate(raw)
            except BadEvent as exc:
                entry: dict[str, Any] = {"message": f"{_label(index, exc.field)}: {exc.what}"}
                if indexed:
                    entry = {"index": i, **entry}
                rejected.append(entry)
                continue
            events += messages
            labels += [_label(index, "")] * len(messages)
        if rejected and not events:
            raise IngestError(400, rejected[0]["message"], code="invalid_event")
        reply: dict[str, Any] = {"success": True, "accepted": len(raws) - len(rejected)}
        if rejected:
            reply["rejected"] = rejected
        return Ingested(events, labels=labels if indexed else None, body=reply)

    def _translate(self, raw: Any) -> list[dict[str, Any]]:
        event = clean_event(raw)
        try:
            mapped = self._mapping(event)
        except MappingError as exc:
            raise BadEvent(exc.path, f"mapping failed: {exc.message}") from None
        if mapped is None:  # dropped on purpose by the mapping (a drop section, a where)
            return []
        if type(mapped) is not dict:
            raise BadEvent("", "the mapping must give an object")
        messages = split(mapped)
        for message in messages:
            found = problem(message)
            if found is not None:
                raise BadEvent("", f"mapped message {found}")
        return messages
