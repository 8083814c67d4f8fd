"""The mapping spec: common fields, per-kind sections, dispatch and lookup tables.

A mapping file (``mapping.toml``) reads into one :class:`MappingFile`::

    userId = "userId || anonymousId"        # common fields: on every payload
    [dispatch]
    select = "type == 'track' && lookup('events', event) || lookup('types', type)"
    [sections.page_view]                     # one section per event kind
    where = "name != `null`"                 # optional condition
    fields.name = "'PAGE_VIEW'"              # laid over the common fields
    [sections.group]
    drop = true                              # events of this kind are dropped, reason named
    [tables.types]                           # lookup tables
    page = "page_view"

``tables``, ``sections`` and ``dispatch`` are reserved top-level names; every other top-level
key is a common field. This module holds the records and reads raw tables into them (problems
as ``path: message``); :mod:`crossdock.transform.sections` compiles them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from crossdock.transform.paths import flat, parse_path

__all__ = [
    "DISPATCH_KEYS",
    "RESERVED",
    "SECTION_KEYS",
    "MappingFile",
    "Section",
    "check_section_name",
    "read_dispatch",
    "read_section",
    "read_spec",
]

RESERVED = ("tables", "sections", "dispatch")
SECTION_KEYS = ("where", "drop", "fields")
DISPATCH_KEYS = ("select",)
_SECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@frozen
class Section:
    """One event kind of a sectioned mapping.

    ``fields`` (target path → expression) are laid over the common fields with
    :func:`~crossdock.merge_mapping` rules; ``""`` removes a common field from this kind.
    ``where`` is an optional JMESPath condition on the event; with ``drop`` the events this
    section takes are dropped (counted as dropped with the reason ``section <name>: drop``).
    """

    fields: Mapping[str, str] = field(factory=dict)
    where: str | None = None
    drop: bool = False


@frozen
class MappingFile:
    """A whole mapping: common ``fields``, lookup ``tables``, ``sections`` and ``select``.

    ``fields`` are target path → expression, set on every payload. ``sections`` (in file order)
    are the event kinds; ``select`` is the ``[dispatch]`` expression whose string value names
    the section of an event (``None``: the first section whose ``where`` holds). Without
    sections it is a plain field map, as before sections existed.
    """

    fields: dict[str, str]
    tables: dict[str, dict[str, Any]] = field(factory=dict)
    sections: dict[str, Section] = field(factory=dict)
    select: str | None = None

    @property
    def sectioned(self) -> bool:
        """Whether events are routed to sections (else every event maps with ``fields``)."""
        return bool(self.sections) or self.select is not None


def read_section(raw: Any, path: str) -> tuple[dict[str, Any], list[str]]:
    """The keys ``raw`` (a section table) sets, checked: ``where`` (``""`` → ``None``),
    ``drop`` and ``fields`` (flattened); plus problems as ``path.key: message``."""
    if not isinstance(raw, Mapping):
        return {}, [f"{path}: expected a table (where, drop, fields)"]
    given: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key == "where":
            if isinstance(value, str):
                given["where"] = value or None
            else:
                problems.append(f"{where}: expected a JMESPath expression (a string)")
        elif key == "drop":
            if isinstance(value, bool):
                given["drop"] = value
            else:
                problems.append(f"{where}: expected true or false")
        elif key == "fields":
            if isinstance(value, Mapping):
                given["fields"] = flat(value)
            else:
                problems.append(f"{where}: expected a table of field = expression")
        else:
            problems.append(f"{where}: unknown key (a section has where, drop and fields)")
    return given, problems


def read_dispatch(raw: Any, path: str) -> tuple[dict[str, Any], list[str]]:
    """The keys a ``[dispatch]`` table sets (``select``, ``""`` → ``None``) and problems."""
    if not isinstance(raw, Mapping):
        return {}, [f"{path}: expected a table (select)"]
    given: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key != "select":
            problems.append(f"{where}: unknown key (dispatch has select)")
        elif not isinstance(value, str):
            problems.append(f"{where}: expected a JMESPath expression (a string)")
        else:
            given["select"] = value or None
    return given, problems


def check_section_name(name: Any, path: str) -> list[str]:
    """A problem when ``name`` cannot name a section (letters, digits, ``_``, ``-``)."""
    if isinstance(name, str) and _SECTION_NAME.match(name):
        return []
    return [f"{path}: a section name is letters, digits, '_' or '-' (not starting with a digit)"]


def read_spec(data: Mapping[str, Any], prefix: str = "") -> tuple[MappingFile, list[str]]:
    """A mapping file's TOML content as a :class:`MappingFile`, with its structural problems.

    Expressions are not checked here (see :func:`crossdock.transform.sections.validate_spec`).
    """
    data = dict(data)
    problems: list[str] = []
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: key)
    raw_tables = data.pop("tables", {})
    tables: dict[str, dict[str, Any]] = {}
    if not isinstance(raw_tables, Mapping):
        problems.append(f"{join('tables')}: each entry must be a table ([tables.<name>])")
    else:
        for name, rows in raw_tables.items():
            if isinstance(rows, Mapping):
                tables[name] = dict(rows)
            else:
                problems.append(f"{join('tables')}: each entry must be a table ([tables.<name>])")
    sections: dict[str, Section] = {}
    raw_sections = data.pop("sections", {})
    if not isinstance(raw_sections, Mapping):
        problems.append(f"{join('sections')}: expected tables ([sections.<name>])")
        raw_sections = {}
    for name, raw in raw_sections.items():
        path = join(f"sections.{name}")
        problems += check_section_name(name, path)
        given, found = read_section(raw, path)
        problems += found
        sections[name] = Section(**given)
    dispatch, found = read_dispatch(data.pop("dispatch", {}), join("dispatch"))
    problems += found
    select = dispatch.get("select")
    if select is not None and not sections:
        problems.append(f"{join('dispatch.select')}: no [sections.<name>] to select from")
    fields = flat(data)
    problems += _shadowed(fields, sections, join)
    return MappingFile(fields=fields, tables=tables, sections=sections, select=select), problems


def _shadowed(fields: Mapping[str, Any], sections: Mapping[str, Section], join: Any) -> list[str]:
    """A common field whose first segment is a section name would make the operator shorthand
    ``"<section>.<field>"`` ambiguous."""
    problems = []
    for key in fields:
        try:
            segments = parse_path(key)
        except ValueError:
            continue
        if segments and segments[0] in sections:
            problems.append(
                f"{join(key)}: the common field starts with the section name {segments[0]!r} "
                "(rename the section)"
            )
    return problems
