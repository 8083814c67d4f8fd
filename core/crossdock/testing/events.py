"""Event factories and golden Segment events for tests (part of the public test kit).

Factories build realistic, valid Spec messages with fresh ``messageId`` values; keyword
arguments override top-level fields, and ``drop=`` removes some::

    from crossdock.testing.events import track, identify, golden_event

    event = track("Order Completed", properties={"revenue": 9.5}, userId="u-7")
    anonymous = identify(drop=("userId",))
    order = golden_event("Order Completed")  # or golden_event("order_completed")

Golden events are package data (``crossdock/testing/golden/*.json``): one per Spec type
(``identify``, ``track``, ``page``, ``screen``, ``group``, ``alias``), every event of Segment's
E-commerce v2 Spec (``Product Viewed``, ``Checkout Step Completed``, ``Order Completed``, …)
with the properties the Spec gives it, and the B2B SaaS events (``Signed Up``, ``Signed In``,
``Signed Out``, ``Account Created``, ``Account Deleted``, ``Trial Started``, ``Trial Ended``).
They look like stored canonical events (``messageId``, ``receivedAt``, ``originalTimestamp``,
``sentAt``, ``timestamp`` set) but carry no ``context.crossdock`` mark, so they can be posted to
any source without being taken for a loop.
Every call returns fresh copies: mutate them freely.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from importlib import resources
from typing import Any

import orjson

__all__ = [
    "alias",
    "golden_event",
    "golden_events",
    "group",
    "identify",
    "make_event",
    "page",
    "screen",
    "track",
]

_TIMESTAMP = "2025-03-02T10:15:04.120Z"


def _base(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "userId": "u-1042",
        "anonymousId": "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40",
        "timestamp": _TIMESTAMP,
        "context": {
            "library": {"name": "crossdock-testing", "version": "1.0"},
            "ip": "203.0.113.9",
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
            "page": {
                "path": "/",
                "referrer": "",
                "search": "",
                "title": "Acme",
                "url": "https://shop.example.com/",
            },
        },
        "integrations": {},
    }


_DEFAULTS: dict[str, dict[str, Any]] = {
    "identify": {"traits": {"email": "ana.silva@example.com", "name": "Ana Silva", "plan": "pro"}},
    "track": {"event": "Product Viewed", "properties": {"product_id": "p-1", "price": 14.95}},
    "page": {"name": "Home", "properties": {"path": "/", "url": "https://shop.example.com/"}},
    "screen": {"name": "Home", "properties": {}},
    "group": {"groupId": "c-77", "traits": {"name": "Acme GmbH", "plan": "enterprise"}},
    "alias": {"previousId": "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"},
}


def make_event(
    type: str = "track", *, drop: Iterable[str] = (), **overrides: Any
) -> dict[str, Any]:
    """A valid Spec message of ``type`` with realistic defaults.

    ``overrides`` replace top-level fields (``userId=None`` sets ``null``); ``drop`` removes
    fields. Unknown types are built anyway (useful to test rejection).
    """
    event = _base(type)
    if type == "alias":
        event.pop("anonymousId")
    event.update(orjson.loads(orjson.dumps(_DEFAULTS.get(type, {}))))
    event.update(overrides)
    for name in drop:
        event.pop(name, None)
    return event


def track(
    event: str = "Product Viewed", properties: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A ``track`` message named ``event``."""
    fields: dict[str, Any] = {"event": event, **overrides}
    if properties is not None:
        fields["properties"] = properties
    return make_event("track", **fields)


def identify(traits: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """An ``identify`` message."""
    if traits is not None:
        overrides["traits"] = traits
    return make_event("identify", **overrides)


def page(
    name: str | None = "Home", properties: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A ``page`` message (``name=None`` leaves the name out)."""
    return _named("page", name, properties, overrides)


def screen(
    name: str | None = "Home", properties: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A ``screen`` message (``name=None`` leaves the name out)."""
    return _named("screen", name, properties, overrides)


def _named(
    kind: str, name: str | None, properties: dict[str, Any] | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    if properties is not None:
        overrides["properties"] = properties
    if name is None:
        return make_event(kind, drop=("name",), **overrides)
    return make_event(kind, name=name, **overrides)


def group(
    group_id: str = "c-77", traits: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A ``group`` message for ``group_id``."""
    if traits is not None:
        overrides["traits"] = traits
    return make_event("group", groupId=group_id, **overrides)


def alias(
    previous_id: str = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40",
    user_id: str = "u-1042",
    **overrides: Any,
) -> dict[str, Any]:
    """An ``alias`` message from ``previous_id`` to ``user_id``."""
    return make_event("alias", previousId=previous_id, userId=user_id, **overrides)


# ---------------------------------------------------------------------------------------------
# Golden events


@functools.cache
def _golden_raw() -> dict[str, bytes]:
    folder = resources.files("crossdock.testing") / "golden"
    found: dict[str, bytes] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            found[entry.name[: -len(".json")]] = entry.read_bytes()
    return dict(sorted(found.items()))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def golden_events() -> dict[str, dict[str, Any]]:
    """Every golden event by slug (``"order_completed"``, ``"identify"``...), as fresh copies."""
    return {slug: orjson.loads(data) for slug, data in _golden_raw().items()}


def golden_event(name: str) -> dict[str, Any]:
    """One golden event, by slug or Spec name (``"Order Completed"``), as a fresh copy.

    Raises :class:`KeyError` naming the known events for an unknown name.
    """
    raw = _golden_raw()
    slug = _slug(name)
    if slug not in raw:
        msg = f"no golden event {name!r}; known: {', '.join(raw)}"
        raise KeyError(msg)
    return orjson.loads(raw[slug])
