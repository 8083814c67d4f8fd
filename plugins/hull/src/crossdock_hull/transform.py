"""The ``hull`` destination's transformer: its mapping (``mapping.toml``, compiled by the core's
:func:`crossdock.compile_spec`) plus the two checks a mapping cannot make.

``mapping.toml`` builds every entry ``{"timestamp", "type", "body", "claims"}`` and routes the
events that are not for Hull (the loop guard, the calls a setting switches off) to drop
sections, so they count as filtered. What remains here:

- **Checks on the finished entry.** An entry Hull would refuse (no identity claim, a group
  without an account, a track without a name, an alias without ``previousId``) is dead-lettered
  with :class:`crossdock.Unsendable` naming what is missing. The checks read the entry, not the
  event, because operators override single claims (``'claims.io\\.hull\\.asUser.external_id' =
  "context.traits.customer_id"``): a mapping function sees only the event, never the other
  fields' output, so a check written as one would refuse events whose identity comes from an
  override (or pass ones whose override gave nothing).
- **Stray fields reported.** The deliverer reads only an entry's ``timestamp``, ``type``,
  ``body`` and ``claims``; another top-level field (a typo, or a key of the mapping format before
  this version that :data:`~crossdock_hull.renamed.RENAMED` cannot translate, such as ``kind``)
  would be ignored silently, so it is an error that ``crossdock check`` shows with its path. The
  core has no hook that validates a type's merged mapping, and this is where it is compiled.
"""

from __future__ import annotations

from typing import Any, Final

import crossdock

ENTRY_KEYS: Final = ("timestamp", "type", "body", "claims")
"""The top-level fields of an entry: what the deliverer sends."""


def stray_fields(spec: crossdock.MappingFile) -> list[str]:
    """The paths (as ``[destinations.mapping]`` names them) of fields outside :data:`ENTRY_KEYS`."""
    found = [f"mapping.{key}" for key, expr in spec.fields.items() if _stray(key, expr)]
    for name, section in spec.sections.items():
        found += [
            f"mapping.sections.{name}.fields.{key}"
            for key, expr in section.fields.items()
            if _stray(key, expr)
        ]
    return found


def _stray(key: str, expr: str) -> bool:
    return expr != "" and key != "." and key.split(".", 1)[0] not in ENTRY_KEYS


def entry_problem(kind: Any, entry: dict[str, Any]) -> str | None:
    """Why Hull would refuse ``entry`` (mapped from an event of Spec type ``kind``), or
    ``None``."""
    claims = _object(entry.get("claims"))
    body = _object(entry.get("body"))
    if claims.get("io.hull.subjectType") == "account":
        if "io.hull.asAccount" not in claims:
            return "group: no account claim (groupId)"
        return None
    if entry.get("type") == "track" and not _text(body.get("event")):
        return "track: event name required"
    if entry.get("type") == "alias" and not _text(body.get("anonymous_id")):
        return "alias: previousId required"
    if "io.hull.asUser" not in claims:
        return f"{kind}: no identity claim (userId, anonymousId or email)"
    return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


class HullTransformer:
    """``event → entry | None`` for one ``hull`` destination (see the module docstring).

    ``None`` for filtered and dropped events (:meth:`matches`, :meth:`drop_reason` tell which);
    :class:`crossdock.Unsendable` (dead-lettered with its reason) for an entry Hull would
    refuse.
    """

    def __init__(self, mapping: crossdock.CompiledMapping | crossdock.SectionedMapping) -> None:
        self._mapping = mapping
        self.matches = mapping.matches
        self.drop_reason = mapping.drop_reason

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        entry = self._mapping(event)
        if entry is None:
            return None
        problem = entry_problem(event.get("type"), entry)
        if problem is not None:
            raise crossdock.Unsendable(problem)
        return entry


def make_transformer(destination: crossdock.Destination) -> HullTransformer:
    """Compile the destination's whole mapping (the core's rules: its ``where`` first).

    Raises :class:`crossdock.MappingError` for a field outside the entry (:func:`stray_fields`).
    """
    stray = stray_fields(destination.spec)
    if stray:
        keys = ", ".join(ENTRY_KEYS)
        raise crossdock.MappingError(stray[0], f"not a field of a Hull entry ({keys})")
    mapping = crossdock.compile_spec(
        destination.spec, where=destination.where, functions=destination.functions
    )
    return HullTransformer(mapping)
