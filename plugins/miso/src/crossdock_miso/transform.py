"""The ``miso`` transformer: the destination's mapping, the id fields from the settings, and
:func:`~crossdock_miso.schema.shape` for Miso's strict types."""

from __future__ import annotations

from typing import Any

import crossdock

from .schema import shape


class MisoTransformer:
    """``event -> Miso record | None``, compiled once per destination.

    The mapping is ``destination.mapping`` (the plugin's defaults with the config's
    ``[destinations.mapping]`` overrides already applied), plus ``user_id`` and
    ``anonymous_id`` read with the settings' ``user_id_field`` / ``anonymous_id_field``
    expressions unless the mapping names those fields itself. ``where`` and the lookup tables
    (defaults extended by ``[destinations.tables.<name>]``) are the destination's.
    """

    def __init__(self, destination: crossdock.Destination) -> None:
        settings = destination.settings
        ids = {
            key: expression
            for key, expression in (
                ("user_id", settings.user_id_field),
                ("anonymous_id", settings.anonymous_id_field),
            )
            if key not in destination.mapping
        }
        fields: dict[str, Any] = {}
        for key, expression in destination.mapping.items():
            fields[key] = expression
            if key == "type":  # ids right after the type: easier to read in dry runs
                fields.update(ids)
        fields.update(ids)
        self.mapping = crossdock.compile_mapping(
            fields, where=destination.where, tables=destination.tables
        )

    def matches(self, event: Any) -> bool:
        """Whether the destination's ``where`` holds (lets the worker count a false ``where``
        as filtered rather than dropped)."""
        return self.mapping.matches(event)

    def __call__(self, event: Any) -> dict[str, Any] | None:
        """The Miso record for ``event``; ``None`` when ``where`` is false or the event maps
        to no interaction type (dropped on purpose)."""
        return shape(self.mapping(event))
