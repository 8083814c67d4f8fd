"""Recognise the analytics events Product Fruits itself emits (``contracts/productfruits.md`` §4).

Product Fruits calls ``analytics.track(<name>, <data>)`` in the browser, so its events reach
Crossdock as ordinary ``track`` calls on the ``segment`` source. They must never be routed back
to Product Fruits (DESIGN, loop prevention). An event is a Product Fruits event when it is a
``track`` and:

1. the operator's table says so: ``overrides[name]`` is ``true`` (force) or ``false`` (never),
   checked first so a customer event that happens to look like one can be let through; else
2. its name is one of the **verified** names (:data:`VERIFIED_EVENTS`, both the human "Event
   name" and the snake_case "Raw name"); else
3. its name follows the documented **families**: a Product Fruits feature word followed by an
   action, in the human form (``Tour Finished``, ``Checklist Item Completed``, ``Hint Dismissed``)
   or the raw form (``tour_finished``, ``tour-skipped``, ``checklist_item_launched``). The
   feature words are :data:`FEATURES`. Inferred: Product Fruits documents the categories but
   not every name, and the contract says not to depend on a closed list; else
4. ``context.integration.name`` names Product Fruits (inferred origin mark).

:func:`is_product_fruits_event` answers yes/no; :func:`describe` returns what was recognised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from attrs import frozen

__all__ = [
    "FEATURES",
    "VERIFIED_EVENTS",
    "ProductFruitsEvent",
    "describe",
    "is_product_fruits_event",
]

VERIFIED_EVENTS: Final[Mapping[str, str]] = {
    "Announcements Banner Action Consumed": "announcements_banner_action_consumed",
    "Announcements Banner Dismissed": "announcements_banner_dismissed",
    "Announcements Banner Opened": "announcements_banner_opened",
    "Announcements Newsfeed Item Consumed": "announcements_newsitem_action_consumed",
    "Announcements Popup Action Consumed": "announcements_popup_action_consumed",
    "Announcements Popup Dismissed": "announcements_popup_dismissed",
    "Announcements Popup Opened": "announcements_popup_opened",
}
"""Event name → raw name, as Product Fruits' analytics table lists them (VERIFIED rows)."""

_RAW_TO_NAME: Final = {raw: name for name, raw in VERIFIED_EVENTS.items()}

FEATURES: Final[Mapping[str, str]] = {
    "announcement": "announcements",
    "announcements": "announcements",
    "newsfeed": "announcements",
    "tour": "tours",
    "tours": "tours",
    "checklist": "checklists",
    "checklists": "checklists",
    "hint": "hints",
    "hints": "hints",
    "survey": "surveys",
    "surveys": "surveys",
    "feedback": "feedback",
}
"""Leading word of a Product Fruits event name (lower case) → feature category."""

_WORDS = "|".join(sorted(FEATURES, key=len, reverse=True))
# Human form: "Tour Finished", "Checklist Item Completed" (capitalised words after the feature).
_HUMAN: Final = re.compile(
    rf"^(?P<feature>(?i:{_WORDS})) (?P<action>[A-Z][A-Za-z0-9]*(?: [A-Z][A-Za-z0-9]*)*)$"
)
# Raw form: "tour_finished", "tour-skipped", "checklist_item_launched" (lower case only).
_RAW: Final = re.compile(rf"^(?P<feature>{_WORDS})[_-](?P<action>[a-z0-9]+(?:[_-][a-z0-9]+)*)$")
_INITIALS: Final = frozenset(w[0] for w in FEATURES) | frozenset(w[0].upper() for w in FEATURES)
_ORIGINS: Final = frozenset({"productfruits", "product fruits", "product-fruits"})


@frozen
class ProductFruitsEvent:
    """A recognised Product Fruits event.

    ``name`` is the event name as received; ``feature`` one of ``announcements``, ``tours``,
    ``checklists``, ``hints``, ``surveys``, ``feedback`` (``None`` when only an origin mark or
    the operator's table said so); ``verified`` whether the name is in Product Fruits' published
    table; ``id``/``internal_id`` the ``properties.id``/``properties.internalId`` of the item
    (tour, checklist item, announcement ...), when present.
    """

    name: str
    feature: str | None
    verified: bool
    id: Any = None
    internal_id: Any = None


def describe(
    event: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *, forced: Any = None
) -> ProductFruitsEvent | None:
    """What Product Fruits event ``event`` is, or ``None`` if it is not one (module docstring).

    :param event: a Spec message.
    :param overrides: event name → ``true``/``false`` (the destination's
        ``product_fruits_events`` table); a name listed ``false`` is never recognised.
    :param forced: the operator's answer for this event's name, already looked up (what
        ``overrides`` would give; ``None``: no answer). Used when ``overrides`` is not given.
    """
    if event.get("type") != "track":
        return None
    name = event.get("event")
    if not isinstance(name, str):
        return None
    if overrides:
        forced = overrides.get(name)
    if forced is not None and not _truthy(forced):
        return None
    feature = _feature(name)
    if not (feature or _truthy(forced) or _origin_marked(event)):
        return None
    properties = event.get("properties")
    if not isinstance(properties, Mapping):
        properties = {}
    return ProductFruitsEvent(
        name=name,
        feature=feature,
        verified=name in VERIFIED_EVENTS or name in _RAW_TO_NAME,
        id=properties.get("id"),
        internal_id=properties.get("internalId"),
    )


def is_product_fruits_event(
    event: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``event`` was emitted by Product Fruits itself (see :func:`describe`)."""
    return describe(event, overrides) is not None


def _feature(name: str) -> str | None:
    # Both forms start with a feature word: most names are ruled out by their first letter,
    # which is much cheaper than the two patterns (this runs for every track call).
    if name[:1] not in _INITIALS:
        return None
    match = _HUMAN.match(name) or _RAW.match(name)
    if match is None:
        return None
    word = match.group("feature")
    if match.re is _HUMAN and not word[0].isupper():
        return None  # "tour Finished" is neither form
    return FEATURES[word.lower()]


def _origin_marked(event: Mapping[str, Any]) -> bool:
    context = event.get("context")
    if not _is_mapping(context):
        return False
    integration = context.get("integration")
    if not _is_mapping(integration):
        return False
    name = integration.get("name")
    return isinstance(name, str) and name.strip().lower() in _ORIGINS


def _is_mapping(value: Any) -> bool:
    # dict first: the events are JSON, and the ABC check costs several times more
    return isinstance(value, dict) or (value is not None and isinstance(value, Mapping))


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1"))
