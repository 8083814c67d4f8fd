"""The ``productfruits`` transformer: the JMESPath mapping behind two fixed gates.

Only ``identify`` and ``track`` go to Product Fruits (the other Spec calls have no effect
there), never Product Fruits' own events (:mod:`crossdock_productfruits.events`; routing them
back is useless and can loop), and never a payload without a ``userId`` or an email, which
Product Fruits could only match by creating an orphan user. Everything else is the
destination's compiled mapping: the default ``mapping.toml`` with ``[destinations.mapping]``
overrides, the configured ``where`` and the lookup tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import crossdock
from crossdock_productfruits.events import is_product_fruits_event

FORWARDED_TYPES = frozenset({"identify", "track"})
"""Spec types sent to Product Fruits."""

EVENTS_TABLE = "product_fruits_events"
"""Lookup table of event names forced to count (``true``) or not (``false``) as Product Fruits'
own events."""


class ProductFruitsTransformer:
    """Event → webhook payload for Product Fruits, or ``None`` (module docstring)."""

    def __init__(self, mapping: crossdock.CompiledMapping, overrides: Mapping[str, Any]) -> None:
        self.mapping = mapping
        self.overrides = dict(overrides)

    def eligible(self, event: crossdock.Event) -> bool:
        """Whether the fixed gates let ``event`` through (type, not a Product Fruits event)."""
        return event.get("type") in FORWARDED_TYPES and not is_product_fruits_event(
            event, self.overrides
        )

    def matches(self, event: crossdock.Event) -> bool:
        """False when ``event`` is filtered out (gates or ``where``), for the worker's counts."""
        return self.eligible(event) and self.mapping.matches(event)

    def __call__(self, event: crossdock.Event) -> Any:
        """The payload for ``event``, or ``None`` when it must not go to Product Fruits."""
        if not self.eligible(event):
            return None
        payload = self.mapping(event)
        if payload is None or not identified(payload):
            return None
        return payload


def identified(payload: Any) -> bool:
    """Whether Product Fruits can match ``payload`` to a user: a ``userId``, ``traits.email`` or
    ``context.traits.email``. A payload that is not an object (an operator's own ``"."``) is
    left alone."""
    if not isinstance(payload, Mapping):
        return True
    if _text(payload.get("userId")):
        return True
    traits = payload.get("traits")
    if isinstance(traits, Mapping) and _text(traits.get("email")):
        return True
    context = payload.get("context")
    if isinstance(context, Mapping):
        traits = context.get("traits")
        if isinstance(traits, Mapping) and _text(traits.get("email")):
            return True
    return False


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def make_transformer(destination: crossdock.Destination) -> ProductFruitsTransformer:
    """Compile ``destination``'s mapping, ``where`` and tables behind the gates."""
    compiled = crossdock.compile_mapping(
        destination.mapping, where=destination.where, tables=destination.tables
    )
    return ProductFruitsTransformer(compiled, destination.tables.get(EVENTS_TABLE, {}))
