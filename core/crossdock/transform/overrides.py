"""Operator overrides of a mapping (``[destinations.mapping]``) merged into the type's spec.

Rules (what ``crossdock check`` enforces, each problem with its full path):

- plain keys are common fields (:func:`~crossdock.merge_mapping` rules), except that a key whose
  first path segment names a section addresses that section's field:
  ``"checkout_purchase.orderNo" = "..."`` is ``sections.checkout_purchase.fields.orderNo``
  (a bare ``"checkout_purchase"`` is that section's ``"."``);
- ``[destinations.mapping.sections.<name>]`` overrides a section (``where``, ``drop``,
  ``fields.*``; ``where = ""`` removes its condition) or adds one after the declared ones;
  an empty field expression removes the field from that section, common one included;
- ``[destinations.mapping.dispatch] select`` replaces the dispatch (``""``: file order);
- ``tables`` (``[destinations.tables.<name>]``) add or replace rows of the type's tables;
- the ``settings`` table holds the destination's own non-secret scalar settings by attribute
  name (:func:`settings_rows`), so a mapping can depend on them
  (``where = "lookup('settings', 'store_page_calls')"``); a plugin declares it with defaults in
  its ``mapping.toml`` (``[tables.settings]``) to use it in its default mapping.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from crossdock.transform.mapping import Functions
from crossdock.transform.paths import flat, format_path, merge_mapping, parse_path
from crossdock.transform.sections import validate_spec
from crossdock.transform.spec import (
    MappingFile,
    Section,
    check_section_name,
    read_dispatch,
    read_section,
)

__all__ = ["SETTINGS_TABLE", "merge_section_fields", "merge_spec", "settings_rows"]

SETTINGS_TABLE = "settings"
"""The lookup table that holds a destination's non-secret scalar settings."""


def settings_rows(settings: Any) -> dict[str, Any]:
    """``{attribute: value}`` of ``settings`` (an attrs instance) for the ``settings`` table:
    strings, numbers and booleans only, never a :class:`~crossdock.Secret`."""
    from crossdock.secrets import Secret

    if not attrs.has(type(settings)):
        return {}
    rows: dict[str, Any] = {}
    for a in attrs.fields(type(settings)):
        value = getattr(settings, a.name, None)
        if isinstance(value, Secret):
            continue
        if isinstance(value, str | int | float | bool):
            rows[a.name] = value
    return rows


def merge_section_fields(own: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, str]:
    """A section's fields with ``overrides`` applied; an empty expression stays as a removal
    marker, so it also removes the common field of that path from the section."""
    over = flat(overrides)
    merged = merge_mapping(own, over)
    for key, expr in over.items():
        if expr == "":
            merged[key] = ""
    return merged


def merge_spec(
    default: MappingFile,
    overrides: Mapping[str, Any] | None = None,
    *,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    functions: Functions | None = None,
    prefix: str = "mapping",
    renamed: Mapping[str, str | Mapping[str, str]] | None = None,
    settings: Any = None,
) -> tuple[MappingFile, list[str]]:
    """``default`` with an operator's ``overrides`` and extra table ``tables`` rows applied
    (see the module docstring), and every problem as ``<prefix>.<path>: message``.

    The merged spec is validated whole (expressions, function names, table names, target
    conflicts); a problem in a field the operator wrote by shorthand is reported at the path
    they wrote. ``renamed`` (a type's :attr:`~crossdock.DestinationType.renamed`) translates
    old override keys, with a :class:`FutureWarning` naming the new key. ``settings`` (the
    destination's structured settings) fill the ``settings`` table (:func:`settings_rows`).
    """
    over = dict(overrides or {})
    problems: list[str] = []
    sections = dict(default.sections)
    raw_sections = over.pop("sections", None)
    if raw_sections is not None and not isinstance(raw_sections, Mapping):
        problems.append(f"{prefix}.sections: expected tables ([sections.<name>])")
    elif raw_sections is not None:
        for name, raw in raw_sections.items():
            path = f"{prefix}.sections.{name}"
            found = check_section_name(name, path)
            given, more = read_section(raw, path)
            problems += found + more
            if found:
                continue
            base = sections.get(name, Section())
            sections[name] = Section(
                fields=merge_section_fields(base.fields, given.get("fields", {})),
                where=given.get("where", base.where),
                drop=given.get("drop", base.drop),
            )
    select = default.select
    if "dispatch" in over:
        given, more = read_dispatch(over.pop("dispatch"), f"{prefix}.dispatch")
        problems += more
        select = given.get("select", select)
    common: dict[str, Any] = {}
    origins: dict[str, str] = {}
    # With a dispatch, a table value that is not a section looks like a kind the operator meant
    # to add; a dotted override under that name would otherwise become a common object.
    kinds_named = _table_values(default.tables, tables) - set(sections) if select else set()
    for key, expr in _renamed(flat(over), renamed or {}, prefix).items():
        try:
            segments = parse_path(key)
        except ValueError:
            segments = ()
        if not segments or segments[0] not in sections:
            if segments and segments[0] in kinds_named:
                problems.append(
                    f"{prefix}.{key}: {segments[0]!r} is named by the lookup tables but is not "
                    f"a section; declare [destinations.mapping.sections.{segments[0]}] to add it"
                )
                continue
            common[key] = expr
            continue
        name, field_key = segments[0], format_path(segments[1:])
        origins[f"{prefix}.sections.{name}.fields.{field_key}"] = f"{prefix}.{key}"
        section = sections[name]
        sections[name] = Section(
            fields=merge_section_fields(section.fields, {field_key: expr}),
            where=section.where,
            drop=section.drop,
        )
    merged_tables = {name: dict(rows) for name, rows in default.tables.items()}
    for name, rows in (tables or {}).items():
        merged_tables.setdefault(name, {}).update(rows)
    rows = settings_rows(settings) if settings is not None else {}
    if rows:
        merged_tables.setdefault(SETTINGS_TABLE, {}).update(rows)
    spec = MappingFile(
        fields=merge_mapping(default.fields, common),
        tables=merged_tables,
        sections=sections,
        select=select,
    )
    if select is not None and not sections:
        problems.append(f"{prefix}.dispatch.select: no [sections.<name>] to select from")
    for problem in validate_spec(spec, prefix, functions=functions):
        path, _, message = problem.partition(": ")
        problems.append(f"{origins.get(path, path)}: {message}")
    return spec, problems


def _table_values(*groups: Mapping[str, Mapping[str, Any]] | None) -> set[str]:
    """Every non-empty string value in the rows of the given tables."""
    return {
        value
        for group in groups
        for rows in (group or {}).values()
        for value in rows.values()
        if isinstance(value, str) and value
    }


def _renamed(
    fields: Mapping[str, Any], renamed: Mapping[str, str | Mapping[str, str]], prefix: str
) -> dict[str, Any]:
    """``fields`` with every key under an old name of ``renamed`` moved to its new key(s)
    (the rest of the path kept; an expression wrapped by the new key's template, an empty one
    left empty so a removal still removes); warns once per renamed key."""
    if not renamed:
        return dict(fields)
    olds = []
    for old, new in renamed.items():
        try:
            olds.append((parse_path(old), {new: "$"} if isinstance(new, str) else dict(new)))
        except ValueError:
            continue
    out: dict[str, Any] = {}
    for key, expr in fields.items():
        try:
            segments = parse_path(key)
        except ValueError:
            out[key] = expr
            continue
        for old_segments, targets in olds:
            if old_segments and segments[: len(old_segments)] == old_segments:
                rest = segments[len(old_segments) :]
                new_keys = []
                for new_key, template in targets.items():
                    target = format_path((*parse_path(new_key), *rest))
                    use = expr
                    if isinstance(expr, str) and expr != "" and template != "$":
                        use = template.replace("$", f"({expr})")
                    out[target] = use
                    new_keys.append(target)
                warnings.warn(
                    f"{prefix}.{key}: this key was renamed; write "
                    + " and ".join(repr(k) for k in new_keys)
                    + " instead (the old name goes in the plugin's next minor version)",
                    FutureWarning,
                    stacklevel=2,
                )
                break
        else:
            out[key] = expr
    return out
