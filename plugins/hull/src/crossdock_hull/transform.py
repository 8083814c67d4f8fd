"""The ``hull`` destination's transformer: its mapping (``mapping.toml``, compiled by the core's
:func:`crossdock.compile_spec`) plus what a mapping cannot say.

``mapping.toml`` builds every entry ``{"timestamp", "type", "body", "claims"}``. What remains
here, because a mapping file cannot express it:

- **Filtered, not dropped.** The loop guard (events whose ``integrations`` opt Hull out) and
  the calls a setting switches off are *filtered* (``crossdock_events_filtered_total``, drop
  reason ``filtered``), as documented. A mapping counts its own drops as *dropped*; only the
  destination's ``where`` counts as filtered, so :data:`FILTER` is joined to it.
- **Dead-lettered with a reason.** An entry Hull would refuse (no identity claim, a group
  without an account, a track without a name, an alias without ``previousId``) is an error
  naming what is missing. A mapping function that raises is reported by the core without its
  message (on purpose: messages could carry event data), so the entry is checked here.
- **Stray fields reported.** The deliverer reads only an entry's ``timestamp``, ``type``,
  ``body`` and ``claims``; another top-level field (a typo, or a key of the mapping format before
  this version, such as ``source``) would be ignored silently, so it is an error that
  ``crossdock check`` shows with its path.
"""

from __future__ import annotations

from typing import Any, Final

import crossdock

FILTER: Final = (
    "!hull_opted_out(integrations)"
    " && (type != 'page' || lookup('settings', 'store_page_calls'))"
    " && (type != 'screen' || lookup('settings', 'store_screen_calls'))"
    " && (type != 'group' || lookup('settings', 'handle_groups'))"
)
"""The events a ``hull`` destination takes: Hull not opted out, the call not switched off."""

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
    :class:`ValueError` (dead-lettered) for an entry Hull would refuse.
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
            raise ValueError(problem)
        return entry


def make_transformer(destination: crossdock.Destination) -> HullTransformer:
    """Compile the destination's whole mapping, its ``where`` joined to :data:`FILTER`.

    Raises :class:`crossdock.MappingError` for a field outside the entry (:func:`stray_fields`).
    """
    stray = stray_fields(destination.spec)
    if stray:
        keys = ", ".join(ENTRY_KEYS)
        raise crossdock.MappingError(stray[0], f"not a field of a Hull entry ({keys})")
    where = FILTER if destination.where is None else f"({FILTER}) && ({destination.where})"
    mapping = crossdock.compile_spec(destination.spec, where=where, functions=destination.functions)
    return HullTransformer(mapping)
