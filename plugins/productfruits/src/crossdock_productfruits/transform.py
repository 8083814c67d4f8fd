"""Why a Python transformer remains: which drops count as *filtered*.

``mapping.toml`` says everything about the payload and about which events are sent, and this
transformer calls the compiled mapping unchanged. What a mapping cannot say is how the core
counts a drop: with the default transformer, only a false destination ``where`` is *filtered*
and every other drop is *dropped* (with the mapping's reason). Product Fruits has always
counted the kinds of events it never takes as *filtered* (``crossdock_events_filtered_total``,
the admin API's ``filtered``): page, screen, group and alias calls (no section) and Product
Fruits' own events (a ``drop`` section). Only an identify or track call it cannot match to a
user (its section's ``where``) is *dropped*. :meth:`ProductFruitsTransformer.matches` keeps
that from the mapping's drop reason; it runs only for events the mapping dropped.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

import crossdock

NOT_TAKEN = ("no section ", "unknown section ")
"""Drop reasons of an event no section takes (see docs/mappings.md)."""


@frozen
class ProductFruitsTransformer:
    """The compiled mapping, with drops of kinds Product Fruits never takes counted as
    filtered (module docstring)."""

    mapping: crossdock.CompiledMapping | crossdock.SectionedMapping

    def __call__(self, event: crossdock.Event) -> Any:
        """The payload for ``event``, or ``None`` when it is not sent to Product Fruits."""
        return self.mapping(event)

    def matches(self, event: crossdock.Event) -> bool:
        """False for an event the destination's ``where`` filters out, that no section takes,
        or that a ``drop`` section takes; the core counts these as filtered."""
        if not self.mapping.matches(event):
            return False
        reason = self.mapping.drop_reason(event) or ""
        return not (reason.startswith(NOT_TAKEN) or reason.endswith(": drop"))

    def drop_reason(self, event: crossdock.Event) -> str | None:
        """The mapping's reason for dropping ``event`` (docs/mappings.md)."""
        return self.mapping.drop_reason(event)


def make_transformer(destination: crossdock.Destination) -> ProductFruitsTransformer:
    """Compile ``destination``'s whole mapping spec as the core's default transformer does."""
    return ProductFruitsTransformer(
        crossdock.compile_spec(
            destination.spec, where=destination.where, functions=destination.functions
        )
    )
