"""The ``insider`` transformer: the core's compiled mapping, then one Insider event per product.

Everything that picks, converts and names values is in ``mapping.toml`` (sections, tables, the
functions in :mod:`.functions`). This module is kept only for what a mapping cannot express:

- **One event per product.** For an Insider event name listed in the ``per_product_events``
  table, each element of ``properties.products`` gives one event: the ``event.*`` fields are
  evaluated again on the Spec event with that product's fields laid over the other properties,
  so they all share ``event_group_id``. A mapping evaluates each field once per Spec event;
  JMESPath cannot read the order from inside a projection over its products (no root
  reference), and one projection expression for the whole event would stop operators from
  overriding ``event.*`` fields one by one.
- **A user object with neither attributes nor events is dropped** (an ``identify`` whose traits
  give no attribute): a section's ``where`` cannot test what its fields produced.
- The mapping's ``event`` object becomes Insider's ``events`` array, in the key order of a user
  object (``identifiers``, ``insider_id``, ``attributes``, ``events``, ``not_append``).

Every event yields its own user object, so Insider's per-user errors map back to exactly one
Crossdock event. What Insider requires but the event lacks (an event name in its form, a
currency) is dead-lettered by the mapping itself (``insider_required``);
:meth:`InsiderTransformer.notes` tells ``crossdock check`` when the destination has no default
currency.
"""

from __future__ import annotations

from typing import Any

import crossdock

__all__ = ["InsiderTransformer", "product_lines"]

_SPEC_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})


def product_lines(event: crossdock.Event) -> list[crossdock.Event]:
    """One copy of ``event`` per object in ``properties.products``, that product's fields laid
    over the other properties (``products`` itself left out); ``[]`` without products."""
    properties = event.get("properties")
    products = properties.get("products") if isinstance(properties, dict) else None
    if not isinstance(products, list):
        return []
    shared = {k: v for k, v in properties.items() if k != "products"}
    return [{**event, "properties": {**shared, **p}} for p in products if isinstance(p, dict)]


def _event_fields(spec: crossdock.MappingFile) -> dict[str, str]:
    """The ``event.*`` fields a track call maps with (the ``track`` section over the common
    fields, when the mapping has that section)."""
    fields = spec.fields
    if "track" in spec.sections:
        fields = crossdock.merge_mapping(fields, spec.sections["track"].fields)
    return {k: v for k, v in fields.items() if k == "event" or k.startswith("event.")}


class InsiderTransformer:
    """The transformer of an ``insider`` destination (see the module docstring)."""

    def __init__(self, destination: crossdock.Destination) -> None:
        spec = destination.spec
        functions = destination.functions
        self.mapping = crossdock.compile_spec(spec, where=destination.where, functions=functions)
        # Only the event fields are evaluated again per product (without ``where``).
        self.line = crossdock.compile_mapping(
            _event_fields(spec), tables=spec.tables, functions=functions
        )
        per_product = spec.tables.get("per_product_events", {})
        self.per_product = frozenset(k for k, v in per_product.items() if v)
        self.default_currency = spec.tables.get("defaults", {}).get("currency")
        required = spec.tables.get("currency_required", {})
        self.currency_required = sorted(k for k, v in required.items() if v)

    def notes(self) -> list[str]:
        """What ``crossdock check`` tells the operator: no default currency means the events
        Insider requires one for are dead-lettered when they carry none."""
        if self.default_currency or not self.currency_required:
            return []
        names = " and ".join(", ".join(self.currency_required).rsplit(", ", 1))
        return [
            "no default currency ([destinations.tables.defaults] currency): "
            f"{names} events without a currency are dead-lettered (no currency)"
        ]

    def matches(self, event: crossdock.Event) -> bool:
        """Whether the destination's ``where`` holds (the worker counts the rest as filtered)."""
        return self.mapping.matches(event)

    def drop_reason(self, event: crossdock.Event) -> str | None:
        """Why ``event`` is dropped: the mapping's reason (``filtered``, ``no section (type
        page)``…), or ``nothing to send (type <t>)`` for a user object with neither attributes
        nor events. Slow path: only for dropped events."""
        reason = self.mapping.drop_reason(event)
        if reason is not None or self(event) is not None:
            return reason
        kind = event.get("type")
        return f"nothing to send (type {kind if kind in _SPEC_TYPES else 'other'})"

    def __call__(self, event: crossdock.Event) -> dict[str, Any] | None:
        """The user object for ``event``, or ``None`` when there is nothing to send."""
        out = self.mapping(event)
        if out is None:
            return None
        events = self._events(event, out.get("event"))
        attributes = out.get("attributes")
        if not attributes and not events:
            return None
        user: dict[str, Any] = {}
        if "identifiers" in out:
            user["identifiers"] = out["identifiers"]
        if "insider_id" in out:
            user["insider_id"] = out["insider_id"]
        if attributes:
            user["attributes"] = attributes
        if events:
            user["events"] = events
        if "not_append" in out:
            user["not_append"] = out["not_append"]
        return user

    def _events(self, event: crossdock.Event, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, dict) or raw.get("event_name") is None:
            return []
        name = raw["event_name"]
        if not isinstance(name, str) or name not in self.per_product:
            return [raw]
        lines = product_lines(event)
        if not lines:
            return [raw]
        return [self.line(line).get("event") or {"event_name": name} for line in lines]
