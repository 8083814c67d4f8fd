"""Hull ``user:update`` notification → Spec messages (pure functions; contract §4-§5, §6.2).

Per message (one user update):

1. **Filter**: skipped unless the user is in one of ``synchronized_segments`` (names or ids;
   none or ``ALL``: everyone).
2. **Identity**: ``userId`` ← ``user.external_id``; ``anonymousId`` ← the first event's
   ``anonymous_id``, else the user's first ``anonymous_ids`` entry; neither → skipped.
3. **identify**, only when segments changed or a selected attribute changed: ``traits`` =
   the selected ``attributes`` (``traits_`` prefix removed, ``/`` → ``_``; ``account.<x>`` →
   ``account_<x>``) plus ``hull_segments`` (the user's segment names).
4. **group**, when the user has an account (``external_id``, else ``id``) and the identify is
   sent or the account or its segments changed: ``traits`` = the selected ``account.*``
   attributes plus ``hull_segments`` (the account's segment names). None when ``send_groups``
   is off, or when the account is in none of ``account_segments`` (names or ids).
5. **events**: each new event → ``track`` (``page``/``screen`` for those names), skipping
   events whose ``event_source`` is ``segment`` or ``crossdock`` (they came from there: sending
   them back would loop) unless ``forward_events``, and events not in ``events``.

Every message carries ``integrations: {"Hull": false}`` so no destination sends it back to
Hull, and stable ``messageId`` values so a notification Hull re-sends is deduplicated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from crossdock_hull.settings import HullSourceSettings

LOOP_SOURCES: Final = frozenset({"segment", "crossdock"})
"""``event_source`` values of events that reached Hull from Segment or Crossdock."""

INTEGRATIONS: Final[Mapping[str, bool]] = {"Hull": False}
"""The opt-out every message carries (Hull's Segment connector sets the same)."""

_HULL_TIME: Final = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC$")


def hull_time(value: Any) -> str | None:
    """Convert Hull's ``"2018-10-08 16:33:15 UTC"`` to ISO-8601 ``2018-10-08T16:33:15Z``;
    ISO-8601 strings pass unchanged; anything else gives ``None``."""
    if not isinstance(value, str):
        return None
    match = _HULL_TIME.match(value.strip())
    if match is not None:
        return f"{match.group(1)}T{match.group(2)}Z"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def _segments(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [s for s in value if isinstance(s, dict)]


def _names(segments: Iterable[Mapping[str, Any]]) -> list[str]:
    return [s["name"] for s in segments if isinstance(s.get("name"), str)]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def message_id(text: str) -> str:
    """``text`` as a ``messageId``: kept when it fits Segment's 100 characters, else hashed."""
    if len(text) <= 100:
        return text
    return "hull:" + hashlib.sha256(text.encode()).hexdigest()


def trait_name(attribute: str) -> str:
    """The Segment trait name of a Hull attribute (contract §5.3)."""
    if attribute.startswith("account."):
        return "account_" + attribute[len("account.") :].replace("/", "_")
    if attribute.startswith("traits_"):
        attribute = attribute[len("traits_") :]
    return attribute.replace("/", "_")


class NotificationMapper:
    """Turns the ``messages`` of a ``user:update`` notification into Spec messages."""

    def __init__(self, settings: HullSourceSettings) -> None:
        segments = settings.synchronized_segments or []
        self._all_users = not segments or "ALL" in segments
        self._segments = frozenset(segments)
        self._user_attributes = [a for a in settings.attributes if not a.startswith("account.")]
        self._account_attributes = [
            a[len("account.") :] for a in settings.attributes if a.startswith("account.")
        ]
        self._events = None if settings.events is None else frozenset(settings.events)
        self._forward_events = settings.forward_events
        self._send_groups = settings.send_groups
        accounts = settings.account_segments or []
        self._all_accounts = not accounts or "ALL" in accounts
        self._account_segments = frozenset(accounts)

    def messages(self, notification: Mapping[str, Any]) -> list[dict[str, Any]]:
        """All Spec messages of one notification body, in order."""
        out: list[dict[str, Any]] = []
        items = notification.get("messages")
        if not isinstance(items, list):
            return out
        prefix = _id(notification.get("notification_id")) or ""
        for index, item in enumerate(items):
            if isinstance(item, dict):
                key = _id(item.get("message_id")) or f"{prefix}:{index}"
                out.extend(self.message(item, key))
        return out

    def synchronized(self, message: Mapping[str, Any]) -> bool:
        """Whether the message's user is in one of the synchronized segments."""
        if self._all_users:
            return True
        user = _object(message.get("user"))
        ids = {s for s in user.get("segment_ids") or () if isinstance(s, str)}
        for segment in _segments(message.get("segments")):
            ids.add(segment.get("id"))
            ids.add(segment.get("name"))
        return not self._segments.isdisjoint(ids)

    def message(self, message: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        """The Spec messages of one user update; ``key`` makes their ``messageId`` stable."""
        if not self.synchronized(message):
            return []
        user = _object(message.get("user"))
        account = _object(message.get("account"))
        events = [e for e in message.get("events") or () if isinstance(e, dict)]
        user_id = _id(user.get("external_id"))
        anonymous_id = next(
            (a for a in (_id(e.get("anonymous_id")) for e in events) if a is not None), None
        )
        if anonymous_id is None:
            anonymous_ids = user.get("anonymous_ids")
            if isinstance(anonymous_ids, list) and anonymous_ids:
                anonymous_id = _id(anonymous_ids[0])
        if user_id is None and anonymous_id is None:
            return []
        ids: dict[str, str] = {}
        if user_id is not None:
            ids["userId"] = user_id
        if anonymous_id is not None:
            ids["anonymousId"] = anonymous_id
        changes = _object(message.get("changes"))
        out: list[dict[str, Any]] = []
        identify_sent = self._changed(changes)
        if identify_sent:
            out.append(self._identify(message, user, account, ids, key))
        group = self._group(message, account, changes, ids, key, identify_sent)
        if group is not None:
            out.append(group)
        for event in events:
            spec = self._event(event, ids)
            if spec is not None:
                out.append(spec)
        return out

    def _changed(self, changes: Mapping[str, Any]) -> bool:
        for part in ("segments", "account_segments"):
            moved = _object(changes.get(part))
            if moved.get("entered") or moved.get("left"):
                return True
        user_changes = _object(changes.get("user"))
        if any(a in user_changes for a in self._user_attributes):
            return True
        account_changes = _object(changes.get("account"))
        return any(a in account_changes for a in self._account_attributes)

    def _identify(
        self,
        message: Mapping[str, Any],
        user: Mapping[str, Any],
        account: Mapping[str, Any],
        ids: Mapping[str, str],
        key: str,
    ) -> dict[str, Any]:
        traits: dict[str, Any] = {}
        for attribute in self._user_attributes:
            if attribute in user:
                traits[trait_name(attribute)] = user[attribute]
        for attribute in self._account_attributes:
            if attribute in account:
                traits[trait_name("account." + attribute)] = account[attribute]
        traits["hull_segments"] = _names(_segments(message.get("segments")))
        return {
            "type": "identify",
            "messageId": message_id(f"hull:{key}:identify"),
            **ids,
            "traits": traits,
            "context": {"active": False, "ip": 0},
            "integrations": dict(INTEGRATIONS),
        }

    def _group(
        self,
        message: Mapping[str, Any],
        account: Mapping[str, Any],
        changes: Mapping[str, Any],
        ids: Mapping[str, str],
        key: str,
        identify_sent: bool,
    ) -> dict[str, Any] | None:
        group_id = _id(account.get("external_id")) or _id(account.get("id"))
        if group_id is None or not self._group_wanted(message):
            return None
        moved = _object(changes.get("account_segments"))
        if not (
            identify_sent or _object(changes.get("account")) or moved.get("entered")
            or moved.get("left")
        ):  # fmt: skip
            return None
        traits: dict[str, Any] = {}
        for attribute in self._account_attributes:
            if attribute in account:
                traits[trait_name(attribute)] = account[attribute]
        traits["hull_segments"] = _names(_segments(message.get("account_segments")))
        return {
            "type": "group",
            "messageId": message_id(f"hull:{key}:group"),
            **ids,
            "groupId": group_id,
            "traits": traits,
            "context": {"active": False, "ip": 0},
            "integrations": dict(INTEGRATIONS),
        }

    def _group_wanted(self, message: Mapping[str, Any]) -> bool:
        """Whether groups are sent and the message's account is in an ``account_segments``
        segment (by name or id)."""
        if not self._send_groups:
            return False
        if self._all_accounts:
            return True
        found = set()
        for segment in _segments(message.get("account_segments")):
            found.add(segment.get("id"))
            found.add(segment.get("name"))
        return not self._account_segments.isdisjoint(found)

    def _event(self, event: Mapping[str, Any], ids: Mapping[str, str]) -> dict[str, Any] | None:
        name = event.get("event")
        if not isinstance(name, str) or not name:
            return None
        if event.get("event_source") in LOOP_SOURCES and not self._forward_events:
            return None
        if self._events is not None and name not in self._events:
            return None
        properties = dict(_object(event.get("properties")))
        context = _object(event.get("context"))
        page = _object(context.get("page"))
        referrer = _object(context.get("referrer"))
        spec_context: dict[str, Any] = {"active": True}
        for target, value in (
            ("ip", context.get("ip")),
            ("userAgent", context.get("useragent")),
            ("os", context.get("os")),
            ("location", context.get("location")),
            ("campaign", context.get("campaign")),
        ):
            if value is not None:
                spec_context[target] = value
        page_context = {k: v for k, v in page.items() if v is not None}
        if referrer.get("url") is not None:
            page_context["referrer"] = referrer["url"]
        event_id = _id(event.get("event_id"))
        out: dict[str, Any] = {**ids}
        if event_id is not None:
            out["messageId"] = message_id(event_id)
        anonymous_id = _id(event.get("anonymous_id"))
        if anonymous_id is not None:
            out["anonymousId"] = anonymous_id
        if name in ("page", "screen"):
            out["type"] = name
            page_name = properties.get("name")
            if isinstance(page_name, str) and page_name:
                out["name"] = page_name
            if name == "page":
                page_context = {**page_context, **properties}
        else:
            out["type"] = "track"
            out["event"] = name
        out["properties"] = properties
        if page_context:
            spec_context["page"] = page_context
        out["context"] = spec_context
        timestamp = hull_time(event.get("created_at"))
        if timestamp is not None:
            out["timestamp"] = timestamp
        out["integrations"] = dict(INTEGRATIONS)
        return out
