"""Event → Firehose entry (without its JWT): the ``hull`` destination's transformer.

The default mapping (``mapping.toml``, overridable) picks the fields; this module shapes them
into an entry ``{"type", "body", "timestamp", "claims"}``. The deliverer signs ``claims`` into
the entry's ``Hull-Access-Token`` at send time (``iss``/``iat`` added then), so a retried entry
carries a fresh token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import crossdock
from crossdock_hull.settings import HullDestinationSettings

RENAMED_TRAITS: Final[Mapping[str, str]] = {
    "firstname": "first_name",
    "lastname": "last_name",
    "createdat": "created_at",
}
"""Top-level trait names (compared lower-cased) Hull's Segment connector renames."""

DROPPED_TRAITS: Final = frozenset({"id", "external_id", "guest_id", "uniqToken", "visitToken"})
"""Top-level traits Hull's Segment connector never stores (they are identity, not data)."""

OPERATIONS: Final = frozenset({"set", "setIfNull", "inc", "dec"})
"""Operations a trait value may carry (``{"operation": "inc", "value": 1}``)."""

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hull_disabled(event: Mapping[str, Any]) -> bool:
    """Whether the event's ``integrations`` opt Hull out (``Hull: false``, or ``All: false``
    without ``Hull: true``): the loop guard Hull's own Segment connector applies."""
    integrations = event.get("integrations")
    if not isinstance(integrations, dict):
        return False
    hull = integrations.get("Hull")
    if hull is False:
        return True
    return integrations.get("All") is False and not hull


def flatten_traits(traits: Mapping[str, Any], *, rename: bool = True) -> dict[str, Any]:
    """Hull attributes from Segment traits: nulls dropped, nested objects flattened with ``/``
    (``address.city`` → ``address/city``), operation objects kept, identity traits dropped and
    ``firstName``/``lastName``/``createdAt`` renamed (top level only)."""
    out: dict[str, Any] = {}
    for key, value in traits.items():
        if rename:
            if key in DROPPED_TRAITS:
                continue
            key = RENAMED_TRAITS.get(key.lower(), key)
        _put(out, key, value)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        if value.get("operation") in OPERATIONS and "value" in value:
            out[key] = value
            return
        for sub, inner in value.items():
            _put(out, f"{key}/{sub}", inner)
        return
    out[key] = value


def email_claim(value: Any) -> str | None:
    """The ``email`` claim: lower-cased, only when it looks like an email address."""
    if isinstance(value, str) and _EMAIL.match(value.strip()):
        return value.strip().lower()
    return None


def _claims_of(values: Any, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(values, dict):
        return {}
    claims: dict[str, str] = {}
    for key in keys:
        value = values.get(key)
        if key == "email":
            value = email_claim(value)
        if isinstance(value, str) and value:
            claims[key] = value
    return claims


class HullTransformer:
    """``event → entry | None`` for one ``hull`` destination (see the module docstring).

    ``None`` (filtered) for events whose ``integrations`` opt Hull out and for the calls the
    settings switch off; :class:`ValueError` (dead-lettered) for an entry without identity.
    """

    def __init__(self, settings: HullDestinationSettings, mapping: Callable[[Any], Any]) -> None:
        self._settings = settings
        self._mapping = mapping

    def skipped(self, event: dict[str, Any]) -> bool:
        """Whether the event is not for Hull: its ``integrations`` opt Hull out, or it is a
        call the settings switch off."""
        if hull_disabled(event):
            return True
        kind = event.get("type")
        settings = self._settings
        return (
            (kind == "page" and not settings.store_page_calls)
            or (kind == "screen" and not settings.store_screen_calls)
            or (kind == "group" and not settings.handle_groups)
        )

    def matches(self, event: dict[str, Any]) -> bool:
        """Asked by the core for dropped events: ``False`` counts the event as *filtered*
        (skipped on purpose, or the destination's ``where`` is false)."""
        if self.skipped(event):
            return False
        matches = getattr(self._mapping, "matches", None)
        return True if matches is None else bool(matches(event))

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if self.skipped(event):
            return None
        fields = self._mapping(event)
        if fields is None:  # the destination's `where` is false
            return None
        return build_entry(fields)


def build_entry(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """Shape mapped ``fields`` into an entry; ``None`` for a kind Hull has no entry for."""
    kind = fields.get("kind")
    user = _claims_of(fields.get("user"), ("external_id", "email", "anonymous_id"))
    claims: dict[str, Any] = {"io.hull.subjectType": "user"}
    if fields.get("active") is True:
        claims["io.hull.active"] = True
    entry: dict[str, Any] = {"timestamp": fields.get("timestamp")}
    if kind == "identify":
        entry["type"] = "traits"
        entry["body"] = flatten_traits(_object(fields.get("traits")))
    elif kind in ("track", "page", "screen"):
        entry["type"] = "track"
        entry["body"] = _event_body(kind, fields)
    elif kind == "group":
        account = _claims_of(fields.get("account"), ("external_id", "domain"))
        if not account:
            msg = "group: no account claim (groupId)"
            raise ValueError(msg)
        claims["io.hull.subjectType"] = "account"
        claims["io.hull.asAccount"] = account
        entry["type"] = "traits"
        entry["body"] = flatten_traits(_object(fields.get("traits")))
    elif kind == "alias":
        previous = fields.get("previous_id")
        if not isinstance(previous, str) or not previous:
            msg = "alias: previousId required"
            raise ValueError(msg)
        entry["type"] = "alias"
        entry["body"] = {"anonymous_id": previous}
    else:
        return None
    if user:
        claims["io.hull.asUser"] = user
    elif kind != "group":
        msg = f"{kind}: no identity claim (userId, anonymousId or email)"
        raise ValueError(msg)
    entry["claims"] = claims
    return entry


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event_body(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    properties = dict(_object(fields.get("properties")))
    if kind == "track":
        name = fields.get("event")
    else:
        name = kind
        if fields.get("name") is not None:
            properties["name"] = fields["name"]
    if not isinstance(name, str) or not name:
        msg = "track: event name required"
        raise ValueError(msg)
    return {
        "event": name,
        "properties": properties,
        "event_id": fields.get("event_id"),
        "created_at": fields.get("created_at"),
        "source": fields.get("source"),
        "type": kind,
        "ip": fields.get("ip"),
        "url": fields.get("url"),
        "referer": fields.get("referer"),
    }


def make_transformer(destination: crossdock.Destination) -> HullTransformer:
    """Compile the destination's mapping once and wrap it in a :class:`HullTransformer`."""
    mapping = crossdock.compile_mapping(
        destination.mapping, where=destination.where, tables=destination.tables
    )
    return HullTransformer(destination.settings, mapping)
