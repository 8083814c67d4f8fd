"""One Hardal event as the Custom API destination posts it, checked and cleaned for the mapping.

:func:`clean_event` turns one JSON object of the request body into the object the mapping reads:

- ``event_name`` is required: a non-empty string (surrounding blanks removed);
- **empty means absent**: a string that is empty, blank, or an unsubstituted Hardal variable
  (``"##user.email##"``) is removed, at the top level and inside ``page``, ``user`` and
  ``properties`` (Hardal substitutes ``""`` for a variable with no value: ``user_id: ""`` is an
  anonymous visitor);
- ``properties`` is an object, or a string holding a JSON object (Hardal may substitute
  ``##properties##`` either way); ``page`` and ``user`` are objects; each is ``{}`` when absent,
  so expressions never meet a null where they expect an object;
- ``user_id`` and ``session_id`` are text (numbers become digits);
- ``created_at`` is RFC 3339 / ISO 8601 (a time without a zone is UTC) or epoch seconds or
  milliseconds, rendered ``YYYY-MM-DDTHH:MM:SS.sssZ``.

Anything else raises :class:`BadEvent` naming the field; other top-level keys pass through.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from crossdock_hardal.functions import text_id

OBJECTS: Final = ("properties", "page", "user")
"""Top-level keys that hold objects (``{}`` when absent)."""

_VARIABLE: Final = re.compile(r"^##[^#]*##$")


class BadEvent(Exception):
    """One Hardal event that cannot be used: ``field`` (a path, or ``""`` for the whole event)
    and what is wrong with it."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"{field}: {what}" if field else what)
        self.field = field
        self.what = what


def _blank(value: Any) -> bool:
    return isinstance(value, str) and (not value.strip() or bool(_VARIABLE.match(value.strip())))


def _without_blanks(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not _blank(v) and v is not None}


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None or _blank(value):
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadEvent(field, "must be an object or a string of a JSON object") from None
    if type(value) is not dict:
        raise BadEvent(field, "must be an object or a string of a JSON object")
    return _without_blanks(value)


def _time(value: Any) -> str:
    if isinstance(value, bool):
        raise BadEvent("created_at", "must be an RFC 3339 time or epoch seconds")
    try:
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise ValueError
            seconds = value / 1000 if abs(value) >= 1e11 else value
            parsed = datetime.fromtimestamp(seconds, UTC)
        elif isinstance(value, str):
            text = value.strip()
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            parsed = parsed.astimezone(UTC)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise BadEvent("created_at", "must be an RFC 3339 time or epoch seconds") from None
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


def clean_event(raw: Any) -> dict[str, Any]:
    """The cleaned event (a new dict) for the mapping; see the module docstring."""
    if type(raw) is not dict:
        raise BadEvent("", "must be a JSON object (a Hardal event)")
    event = _without_blanks(raw)
    name = event.get("event_name")
    if name is None:
        raise BadEvent("event_name", "required (Hardal's ##event_name##)")
    if not isinstance(name, str):
        raise BadEvent("event_name", "must be a string")
    event["event_name"] = name.strip()
    for key in OBJECTS:
        event[key] = _object(event.get(key), key)
    for key in ("user_id", "session_id"):
        if key in event:
            value = text_id(event[key])
            if value is None:
                raise BadEvent(key, "must be a string or a number")
            event[key] = value
    if "created_at" in event:
        event["created_at"] = _time(event["created_at"])
    return event
