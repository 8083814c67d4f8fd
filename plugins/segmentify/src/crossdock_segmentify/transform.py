"""The transformer: pick the Segmentify event kind of each event, then apply its mapping.

The destination's mapping (the default ``mapping.toml`` with the operator's
``[destinations.mapping]`` overrides already merged in by the core) holds two kinds of keys:

- *common* fields (``userId``, ``sessionId``, ``lang``...), set on every event;
- *section* fields, ``<section>.<field>`` (``checkout_purchase.orderNo``), for one kind.

A key belongs to a section when its first path segment is a section name that the ``types`` or
``events`` lookup table refers to; every other key is common. Each section is compiled once, at
start-up, as ``common`` overlaid with its own fields (:func:`crossdock.merge_mapping`: a section
field replaces the common field of the same path), with the destination's ``where`` and tables.

Per event: a ``track`` uses ``events[event]`` when the name is listed, otherwise
``types[type]``; an empty (or missing) section name drops the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import crossdock

TYPES_TABLE = "types"
EVENTS_TABLE = "events"
LEADING = ("name", "step")


def split_key(key: str) -> tuple[str, str]:
    """``"a.b\\.c"`` → ``("a", "b\\.c")``: the first path segment (unescaped) and the rest as
    written; ``("a", "")`` when the key has one segment."""
    head: list[str] = []
    i = 0
    while i < len(key):
        ch = key[i]
        if ch == "\\" and i + 1 < len(key):
            head.append(key[i + 1])
            i += 2
            continue
        if ch == ".":
            return "".join(head), key[i + 1 :]
        head.append(ch)
        i += 1
    return "".join(head), ""


def section_names(tables: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Every section the dispatch tables can choose."""
    names: set[str] = set()
    for table in (TYPES_TABLE, EVENTS_TABLE):
        for value in tables.get(table, {}).values():
            if isinstance(value, str) and value:
                names.add(value)
    return names


def split_mapping(
    fields: Mapping[str, str], sections: set[str]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``(common fields, {section: its own fields})``; a bare ``<section>`` key becomes that
    section's ``"."`` (its base object)."""
    common: dict[str, str] = {}
    own: dict[str, dict[str, str]] = {name: {} for name in sections}
    for key, expr in fields.items():
        head, rest = split_key(key)
        if head in sections and key != ".":
            own[head][rest or "."] = expr
        else:
            common[key] = expr
    return common, own


class SegmentifyTransformer:
    """Event → one Segmentify event (a JSON object), or ``None`` to drop it.

    ``mappings`` holds the compiled mapping of each section (see the module docstring).
    """

    def __init__(self, destination: crossdock.Destination) -> None:
        tables = destination.tables
        self.types: Mapping[str, Any] = tables.get(TYPES_TABLE, {})
        self.events: Mapping[str, Any] = tables.get(EVENTS_TABLE, {})
        sections = section_names(tables)
        common, own = split_mapping(destination.mapping, sections)
        self.mappings: dict[str, crossdock.CompiledMapping] = {}
        for name in sorted(sections):
            if not any(own[name].values()):
                raise crossdock.MappingError(
                    f"tables.{EVENTS_TABLE}/{TYPES_TABLE}",
                    f"kind {name!r} is named but the mapping has no {name}.* fields",
                )
            merged = crossdock.merge_mapping(common, own[name])
            # name and step first: easier to read in request logs and `crossdock test`
            fields = {k: merged[k] for k in LEADING if k in merged}
            fields.update((k, v) for k, v in merged.items() if k not in LEADING)
            try:
                self.mappings[name] = crossdock.compile_mapping(
                    fields, where=destination.where, tables=tables
                )
            except crossdock.MappingError as exc:
                path = exc.path if exc.path == "where" else f"{name}.{exc.path}"
                raise crossdock.MappingError(path, exc.message) from None
        self._where = crossdock.compile_expression(
            destination.where or "`true`", tables=tables, path="where"
        )

    def section_of(self, event: Mapping[str, Any]) -> str | None:
        """The section ``event`` maps with, or ``None`` when it is dropped."""
        kind = event.get("type")
        name = None
        if kind == "track":
            event_name = event.get("event")
            if isinstance(event_name, str):
                name = self.events.get(event_name)
        if name is None and isinstance(kind, str):
            name = self.types.get(kind)
        return name if isinstance(name, str) and name else None

    def __call__(self, event: crossdock.Event) -> Any:
        """The Segmentify event for ``event`` (``None``: dropped, or ``where`` is false)."""
        name = self.section_of(event)
        if name is None:
            return None
        return self.mappings[name](event)

    def matches(self, event: crossdock.Event) -> bool:
        """Whether the destination's ``where`` holds (lets the core count a false ``where`` as
        *filtered* and an event without a Segmentify kind as *dropped*)."""
        value = self._where(event)
        return not (value is None or value is False or value in ("", [], {}))
