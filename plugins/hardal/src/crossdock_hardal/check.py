"""The Spec rules a mapped message must meet before it joins the request's stored events.

The core validates every event of a request at once and refuses the whole request for one bad
message; a Hardal request must not lose its good events to one bad one, so each message the
mapping made is checked here first, with the core's rules for the fields a mapping sets, and a
bad one is reported by index instead of reaching the core.
"""

from __future__ import annotations

from typing import Any, Final

import crossdock

SPEC_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_MESSAGE_ID: Final = 100


def _text(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is not None and (type(value) is not str or not value):
        return f"{field}: must be a non-empty string"
    return None


def problem(message: Any) -> str | None:
    """What makes ``message`` an invalid Spec message (``field: what``), or ``None``."""
    if type(message) is not dict:
        return "the mapping must give an object"
    kind = message.get("type")
    if kind not in SPEC_TYPES:
        return "type: must be one of alias, group, identify, page, screen, track"
    for field in ("userId", "anonymousId", "previousId", "groupId"):
        found = _text(message, field)
        if found:
            return found
    if kind == "alias":
        if message.get("userId") is None or message.get("previousId") is None:
            return "userId and previousId: required for alias"
    elif message.get("userId") is None and message.get("anonymousId") is None:
        return "userId or anonymousId required (user_id or session_id)"
    if kind == "track":
        event = message.get("event")
        if type(event) is not str or not event:
            return "event: must be a non-empty string"
    if kind == "group" and message.get("groupId") is None:
        return "groupId: required for group"
    if kind in ("page", "screen"):
        for field in ("name", "category"):
            found = _text(message, field)
            if found:
                return found
    for field in ("properties", "traits", "context", "integrations"):
        value = message.get(field)
        if value is not None and type(value) is not dict:
            return f"{field}: must be an object"
    for field in ("timestamp", "sentAt", "originalTimestamp"):
        value = message.get(field)
        if value is not None and not _iso(value):
            return f"{field}: not an ISO-8601 time"
    message_id = message.get("messageId")
    if message_id is not None and (
        type(message_id) is not str or not message_id or len(message_id) > MAX_MESSAGE_ID
    ):
        return f"messageId: must be a non-empty string of at most {MAX_MESSAGE_ID} characters"
    return None


def _iso(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        crossdock.parse_timestamp(value).timestamp()
    except (ValueError, OverflowError, OSError):
        return False
    return True
