"""The ``miso`` transformer: the core's compiled mapping, then Miso's strict schema.

Everything that picks and computes fields is in ``mapping.toml`` (sections, tables, the
functions in :mod:`.functions`); this module is kept only for what a mapping cannot express:

- **Miso's schema applies after the operator's overrides.** :func:`~.schema.shape` keeps only
  the fields the record's ``type`` has and leaves out a value of the wrong type, whatever
  expression produced it (the README promises it: an override that yields a string ``category``
  is left out, a string ``rating`` becomes a number). An override replaces the default
  expression with its coercing function, so no mapping field can guarantee this; a record
  Miso refuses would otherwise be dead-lettered for a field it could have done without.
- **Two deprecated settings hold JMESPath expressions.** ``user_id_field`` and
  ``anonymous_id_field`` (replaced by the mapping fields ``user_id`` / ``anonymous_id``,
  removed in crossdock-miso 0.3) are expressions to evaluate, not values; the ``settings``
  lookup table can only give their text. While they exist, a non-default value replaces the
  default expression of its field, unless ``[destinations.mapping]`` sets that field.
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs

import crossdock

from .schema import shape

__all__ = ["ID_SETTINGS", "MisoTransformer", "id_fields"]

ID_SETTINGS = {"user_id": "user_id_field", "anonymous_id": "anonymous_id_field"}
"""Mapping field → the deprecated setting that used to give its expression."""


def id_fields(destination: crossdock.Destination) -> dict[str, str]:
    """The destination's common fields with the deprecated id settings applied: a setting that
    is not its default replaces its field's expression when the field is still the type's
    default (an operator's ``[destinations.mapping]`` entry wins), with a FutureWarning each."""
    fields = dict(destination.mapping)
    defaults = destination.type.spec.fields
    for key, setting in ID_SETTINGS.items():
        expression = getattr(destination.settings, setting)
        if expression == defaults[key]:
            continue
        warnings.warn(
            f"miso destination {destination.id!r}: the setting {setting} is deprecated and will "
            f"be removed in crossdock-miso 0.3; set {key} under [destinations.mapping] instead",
            FutureWarning,
            stacklevel=2,
        )
        if fields.get(key) == defaults[key]:
            fields[key] = expression
    return fields


class MisoTransformer:
    """``event -> Miso record | None``: the destination's whole mapping spec (sections,
    dispatch, tables, the type's functions, its ``where``), compiled once, then
    :func:`~.schema.shape` (see the module docstring for why this step is Python)."""

    def __init__(self, destination: crossdock.Destination) -> None:
        spec = attrs.evolve(destination.spec, fields=id_fields(destination))
        self.mapping = crossdock.compile_spec(
            spec, where=destination.where, functions=destination.functions
        )

    def matches(self, event: Any) -> bool:
        """Whether the destination's ``where`` holds (lets the worker count a false ``where``
        as filtered rather than dropped)."""
        return self.mapping.matches(event)

    def drop_reason(self, event: Any) -> str | None:
        """Why ``event`` is dropped: the mapping's reason (``no section (type identify)``, …),
        or ``no type`` when an override left the record without a Miso ``type``."""
        reason = self.mapping.drop_reason(event)
        if reason is None and self(event) is None:
            return "no type"
        return reason

    def __call__(self, event: Any) -> dict[str, Any] | None:
        """The Miso record for ``event``; ``None`` when it is dropped (see :meth:`drop_reason`)."""
        return shape(self.mapping(event))
