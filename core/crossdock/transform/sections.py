"""Sectioned mappings: route each event to its section, compiled once (see :mod:`.spec`).

:func:`compile_spec` compiles a :class:`~crossdock.MappingFile`. Without sections it is
:func:`~crossdock.compile_mapping`. With sections, each section that does not ``drop`` is
compiled into one function (the common fields with the section's fields laid over them), and
the routing (the destination's ``where``, then ``select`` or the sections' ``where`` in file
order) into one more, which calls the chosen section's function. Per event: the routing
function, one dict lookup, the section's function.

Routing:

- the destination's ``where`` (config) first: false → reason ``filtered``;
- with ``select``: its value names the section; ``null``/``""`` → ``no section (type <t>)``,
  an undeclared name → ``unknown section (type <t>)``; the section's ``where``, if any, must
  hold (else ``section <name>: where false``);
- without ``select``: the first section whose ``where`` holds (no ``where``: always) wins;
  none → ``no section (type <t>)``;
- a ``drop`` section's events → ``section <name>: drop``.

Reasons name only a section or the Spec ``type`` (``other`` for anything else), never event
data, so they can label metrics. ``filtered``, ``no section`` and ``drop`` mean the event is not
for this destination (:meth:`SectionedMapping.matches` is false: counted as filtered); the others
mean it was, but could not be mapped (counted as dropped, by reason).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen

from crossdock.errors import MappingError, Unsendable
from crossdock.transform.jmes.compiler import CodeGen, _truthy
from crossdock.transform.jmes.functions import CrossdockFunctions
from crossdock.transform.mapping import (
    CompiledMapping,
    Functions,
    _compile_node,
    _describe,
    compile_expression,
    compile_mapping,
    validate_expression,
    validate_mapping,
)
from crossdock.transform.paths import merge_mapping
from crossdock.transform.spec import MappingFile, Section

__all__ = ["SectionedMapping", "compile_spec", "section_fields", "validate_spec"]

SPEC_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})


def _true(value: Any) -> bool:
    """JMESPath truth: null, false, "", [] and {} are false; numbers (0 too) are true."""
    return not (value is None or value is False or value in ("", [], {}))


def _kind(event: Any) -> str:
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if kind in SPEC_TYPES else "other"


def _deliberate(reason: str | None) -> bool:
    """Whether a routing reason means "not for this destination" (counted as filtered)."""
    return reason is not None and (reason.startswith("no section") or reason.endswith(": drop"))


def section_fields(spec: MappingFile, name: str) -> dict[str, str]:
    """The fields section ``name`` maps with: the common fields, its own laid over them (an
    empty expression removes a common field)."""
    return merge_mapping(spec.fields, spec.sections[name].fields)


def validate_spec(
    spec: MappingFile, prefix: str = "", *, functions: Functions | None = None
) -> list[str]:
    """Every expression problem of ``spec`` as ``<prefix>.<path>: message`` (paths like
    ``sections.page_view.fields.category``, ``sections.x.where``, ``dispatch.select``)."""

    def join(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    tables = spec.tables
    problems = validate_mapping(spec.fields, prefix, tables=tables, functions=functions)
    if spec.select is not None:
        problems += validate_expression(
            spec.select, join("dispatch.select"), tables=tables, functions=functions
        )
    for name, section in spec.sections.items():
        if section.where is not None:
            problems += validate_expression(
                section.where, join(f"sections.{name}.where"), tables=tables, functions=functions
            )
        problems += validate_mapping(
            section.fields, join(f"sections.{name}.fields"), tables=tables, functions=functions
        )
    return problems


def compile_spec(
    spec: MappingFile, *, where: str | None = None, functions: Functions | None = None
) -> CompiledMapping | SectionedMapping:
    """Compile a whole mapping: a :class:`~crossdock.CompiledMapping` when it has no sections,
    else a :class:`SectionedMapping`. ``where`` is the destination's condition; ``functions``
    the type's. Raises :class:`~crossdock.MappingError` naming the path of a bad expression."""
    if not spec.sectioned:
        return compile_mapping(spec.fields, where=where, tables=spec.tables, functions=functions)
    return SectionedMapping.compile(spec, where=where, functions=functions)


def _section_error(name: str, exc: MappingError) -> MappingError:
    path = f"sections.{name}.where" if exc.path == "where" else f"sections.{name}.fields.{exc.path}"
    return MappingError(path, exc.message)


@frozen(eq=False)
class SectionedMapping:
    """A compiled sectioned mapping: call it with an event for the payload, or ``None``.

    ``sections`` holds the compiled mapping of each section that does not drop; ``route`` is the
    generated function that routes an event and calls its section's function (``None`` when no
    section takes it) and ``source`` its code. :meth:`matches` and :meth:`drop_reason` are the
    slow path for dropped events.
    """

    spec: MappingFile
    where: str | None
    sections: Mapping[str, CompiledMapping] = field(repr=False)
    route: Callable[[Any], Any] = field(repr=False)
    source: str = field(repr=False)
    where_fn: Callable[[Any], Any] | None = field(repr=False, default=None)
    select_fn: Callable[[Any], Any] | None = field(repr=False, default=None)
    section_where: Mapping[str, Callable[[Any], Any]] = field(repr=False, factory=dict)

    @classmethod
    def compile(
        cls, spec: MappingFile, *, where: str | None = None, functions: Functions | None = None
    ) -> SectionedMapping:
        """Compile ``spec`` (see the module docstring); use :func:`compile_spec`."""
        tables = spec.tables
        if not spec.sections:
            raise MappingError("dispatch.select", "no [sections.<name>] to select from")

        def expression(text: str, path: str) -> Callable[[Any], Any]:
            return compile_expression(text, tables=tables, functions=functions, path=path)

        compiled: dict[str, CompiledMapping] = {}
        for name, section in spec.sections.items():
            if section.drop:
                continue
            # with select the section's own where is checked in its function; in file order,
            # the routing already checked it
            own_where = section.where if spec.select is not None else None
            try:
                compiled[name] = compile_mapping(
                    section_fields(spec, name), where=own_where, tables=tables, functions=functions
                )
            except MappingError as exc:
                raise _section_error(name, exc) from None
        section_where = {
            name: expression(s.where, f"sections.{name}.where")
            for name, s in spec.sections.items()
            if s.where is not None
        }
        route, source = _route(
            spec, where, compiled, CrossdockFunctions(tables=tables, extra=functions)
        )
        return cls(
            spec=spec,
            where=where,
            sections=compiled,
            route=route,
            source=source,
            where_fn=expression(where, "where") if where else None,
            select_fn=expression(spec.select, "dispatch.select") if spec.select else None,
            section_where=section_where,
        )

    def __call__(self, event: Any) -> Any:
        """The payload for ``event``, or ``None`` when it is dropped (see :meth:`drop_reason`)."""
        try:
            return self.route(event)
        except Unsendable:
            raise
        except Exception as exc:
            raise self._locate(event, exc) from exc

    def matches(self, event: Any) -> bool:
        """Whether ``event`` is meant for this destination: ``False`` when the destination's
        ``where`` is false, no section takes the event (``no section``) or its section drops
        it (``drop = true``): the mapping says "not for this vendor", and the worker counts the
        event as *filtered*. A section whose ``where`` is false, an unknown section name or a
        null payload count as *dropped*: the event was for this vendor but unusable."""
        if not self._where_holds(event):
            return False
        name, reason = self.section_of(event)
        return name is not None or not _deliberate(reason)

    def _where_holds(self, event: Any) -> bool:
        return self.where_fn is None or _true(self.where_fn(event))

    def section_of(self, event: Any) -> tuple[str | None, str | None]:
        """``(section name, None)`` for an event that maps, ``(None, reason)`` for one that is
        routed nowhere (slow path: evaluates the conditions one by one)."""
        if not self._where_holds(event):
            return None, "filtered"
        kind = _kind(event)
        sections = self.spec.sections
        if self.select_fn is not None:
            name = self.select_fn(event)
            if name is None or name == "":
                return None, f"no section (type {kind})"
            if not isinstance(name, str) or name not in sections:
                return None, f"unknown section (type {kind})"
            test = self.section_where.get(name)
            if test is not None and not _true(test(event)):
                return None, f"section {name}: where false"
            return self._take(name)
        for name in sections:
            test = self.section_where.get(name)
            if test is None or _true(test(event)):
                return self._take(name)
        return None, f"no section (type {kind})"

    def _take(self, name: str) -> tuple[str | None, str | None]:
        if self.spec.sections[name].drop:
            return None, f"section {name}: drop"
        return name, None

    def drop_reason(self, event: Any) -> str | None:
        """Why ``event`` is dropped (a short label naming at most a section and the Spec type),
        or ``None`` when it maps to a payload. Slow path: for events the mapping dropped."""
        name, reason = self.section_of(event)
        if name is None:
            return reason
        if self.sections[name](event) is None:
            return f"section {name}: null payload"
        return None

    def _locate(self, event: Any, exc: Exception) -> MappingError:
        """The failing condition or field, named by its path (slow path, only on errors)."""
        try:
            name, _ = self.section_of(event)
        except Exception as inner:
            return MappingError("dispatch", _describe(inner))
        if name is None:
            return MappingError("dispatch", _describe(exc))
        found = self.sections[name]._locate(event, exc)
        return _section_error(name, found)


def _route(
    spec: MappingFile,
    where: str | None,
    compiled: Mapping[str, CompiledMapping],
    functions: CrossdockFunctions,
) -> tuple[Callable[[Any], Any], str]:
    """Generate ``_route(d)``: the destination's ``where``, then ``select`` (one dict lookup) or
    the sections' conditions in file order; returns what the chosen section's function returns
    for ``d`` (``None`` when no section takes it)."""
    gen = CodeGen(functions)
    gen.begin_function()
    out: list[str] = []
    ind = "    "

    def condition(text: str, path: str) -> str:
        node, problem = _compile_node(text, functions)
        if node is None:
            raise MappingError(path, problem)
        return gen.var(gen.emit(node, "d", out, ind), out, ind)

    if where:
        value = condition(where, "where")
        out.append(f"{ind}if not {_truthy(value)}:")
        out.append(f"{ind}    return None")
    if spec.select is not None:
        name = condition(spec.select, "dispatch.select")
        table = gen.const({n: m.fn for n, m in compiled.items()})
        out.append(f"{ind}f = {table}.get({name}) if type({name}) is str else None")
        out.append(f"{ind}return None if f is None else f(d)")
    else:
        out.append(_file_order(gen, spec.sections, compiled, condition, out, ind))
    gen.defs.append("\n".join(["def _route(d):", *out]))
    ns = gen.build()
    return ns["_route"], gen.source()


def _file_order(
    gen: CodeGen,
    sections: Mapping[str, Section],
    compiled: Mapping[str, CompiledMapping],
    condition: Callable[[str, str], str],
    out: list[str],
    ind: str,
) -> str:
    """Append ``if <where>: return <section fn>(d)`` per section; the final statement is
    returned."""
    for name, section in sections.items():
        target = f"{gen.const(compiled[name].fn)}(d)" if name in compiled else "None"
        if section.where is None:
            return f"{ind}return {target}"
        value = condition(section.where, f"sections.{name}.where")
        out.append(f"{ind}if {_truthy(value)}:")
        out.append(f"{ind}    return {target}")
    return f"{ind}return None"
