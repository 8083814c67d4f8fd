"""Mappings: target path → JMESPath expression, compiled once into one Python function.

A mapping is a table whose keys are *target paths* in the output object and whose values are
JMESPath expressions evaluated against the event::

    fields = {
        "identifiers.uuid": "userId",
        "attributes.email": "context.traits.email || traits.email",
        "event.name": "event == 'Order Completed' && 'purchase' || event",
    }
    transform = compile_mapping(fields, where="type == 'track'", tables={...})
    payload = transform(event)          # dict, or None when ``where`` is false

Rules:

- **Nulls are omitted.** A field whose expression gives ``null`` is left out of the output
  (JMESPath cannot tell "missing" from "null"). Objects created only to hold nested fields are
  left out too when nothing ends up in them. Other falsy values (``false``, ``0``, ``""``,
  ``[]``, ``{}``) are kept. To send an explicit null, there is no way on purpose.
- **Dotted targets nest.** ``"event.params.total"`` sets ``out["event"]["params"]["total"]``.
  A backslash escapes a dot or a backslash inside a name: ``"attributes.a\\.b"`` (in TOML
  ``'attributes.a\\.b'`` as a literal key) sets ``out["attributes"]["a.b"]``. Empty segments
  and other escapes are errors. Nested tables (``{"event": {"name": "..."}}``, or TOML
  sub-tables) are the same as dotted keys; keys *inside* a nested table are taken literally
  (a dot there is part of the name), top-level keys are paths.
- **``"."`` is the whole output.** ``{".": "@"}`` copies the event. Alone, the output *is*
  the expression's value (``null`` drops the event). With other fields, the value is the base
  object (shallow-copied; nested objects copied on write, the event is never modified) and the
  other fields are set on top; a non-object base counts as ``{}``.
- **A target cannot be both a value and a parent** in one mapping (``a`` and ``a.b``).
- **Overrides** (:func:`merge_mapping`) replace a default field by key; setting ``a`` drops the
  defaults under ``a`` (and a default leaf that is an ancestor of it); an empty string ``""``
  removes the field and everything under it. In :func:`compile_mapping` an empty expression
  means "no field".
- **``where``** is a JMESPath condition on the event; when it is false (JMESPath truth:
  ``null``, ``false``, ``""``, ``[]``, ``{}``) the mapping returns ``None`` (event dropped).
- **Tables**: ``lookup('name', key)`` / ``lookup('name', key, default)`` read the named table
  bound at compile time (``tables=``); a missing key (or ``null`` key) gives ``default``
  (``null`` if not given). Non-string keys are also tried as JSON text (``1`` → ``"1"``).
  A literal table name that is not bound is a compile error.
- **Functions**: JMESPath's built-ins, Crossdock's extras (``iso_time``, ``rfc3339``,
  ``epoch``, ``epoch_ms``, ``lower``, ``upper``, ``string_join``, ``to_int``, ``to_float``,
  ``number``, ``default``, ``array``, ``e164``, ``lookup``; see
  :mod:`crossdock.transform.jmes.functions`), and per-mapping ``functions=`` (a plugin declares
  them with its type: ``DestinationType(functions=[crossdock.JmesFunction.create(...)])``;
  the deprecated :func:`crossdock.register_function` still adds process-wide ones). Unknown
  function names and wrong argument counts are compile errors.

Runtime errors (e.g. ``length(`5`)``) raise :class:`~crossdock.MappingError` naming the target
field, with a message that contains no event data.

Mapping files (``mapping.toml`` in a plugin package) hold the same keys and values at top
level; ``[tables.<name>]`` defines a lookup table, ``[sections.<name>]`` and ``[dispatch]``
vary the fields by event kind (see :mod:`crossdock.transform.spec`; compiled by
:func:`crossdock.transform.sections.compile_spec`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import jmespath
from attrs import field, frozen
from jmespath import exceptions as jexc

from crossdock.errors import MappingError, Unsendable
from crossdock.transform.jmes.compiler import CodeGen, _truthy, parse
from crossdock.transform.jmes.functions import (
    BUILTIN_NAMES,
    CrossdockFunctions,
    JmesFunction,
    register_function,
)
from crossdock.transform.paths import flat as _flat
from crossdock.transform.paths import format_path, merge_mapping, parse_path
from crossdock.transform.spec import MappingFile, read_spec

__all__ = [
    "CompiledMapping",
    "MappingFile",
    "compile_expression",
    "compile_mapping",
    "format_path",
    "load_mapping",
    "load_mapping_file",
    "merge_mapping",
    "parse_mapping",
    "parse_path",
    "register_function",
    "validate_expression",
    "validate_mapping",
]

Functions = Mapping[str, JmesFunction | Callable[..., Any]] | Sequence[JmesFunction]
Tables = Mapping[str, Mapping[str, Any]]


# ---------------------------------------------------------------------------------------------
# Validation


def _parse_message(exc: jexc.JMESPathError) -> str:
    """A parser error without the expression text (it could hold a secret)."""
    if isinstance(exc, jexc.EmptyExpressionError):
        return "invalid JMESPath: empty expression"
    if isinstance(exc, jexc.IncompleteExpressionError):
        return "invalid JMESPath: incomplete expression"
    if isinstance(exc, jexc.LexerError):
        return f"invalid JMESPath: {exc.message} at column {exc.lexer_position}"
    if isinstance(exc, jexc.ParseError):
        token = exc.token_type.lower() if exc.token_type else "end"
        return f"invalid JMESPath: {exc.msg} at column {exc.lex_position} ({token} token)"
    return "invalid JMESPath"


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", ()):
        if isinstance(child, dict):
            yield from _walk(child)


def _check_ast(node: dict[str, Any], functions: CrossdockFunctions) -> str | None:
    """Static checks the interpreter would only hit at run time: names, arity, table names."""
    from jmespath.functions import Functions as JFunctions

    for sub in _walk(node):
        if sub["type"] != "function_expression":
            continue
        name = sub["value"]
        count = len(sub["children"])
        if name in BUILTIN_NAMES:
            sig = JFunctions.FUNCTION_TABLE[name]["signature"]
            variadic = bool(sig) and sig[-1].get("variadic")
            if (count < len(sig)) if variadic else (count != len(sig)):
                return f"{name}() takes {len(sig)} argument(s), got {count}"
            continue
        func = functions.lookup_function(name)
        if func is None:
            return f"unknown function {name}()"
        if not func.arity_ok(count):
            return f"{name}() cannot take {count} argument(s)"
        if name == "lookup":
            table = sub["children"][0]
            if (
                table["type"] == "literal"
                and isinstance(table["value"], str)
                and table["value"] not in functions.tables
            ):
                return f"lookup(): no table named {table['value']!r}"
    return None


def _compile_node(expr: Any, functions: CrossdockFunctions) -> tuple[dict[str, Any] | None, str]:
    """``(ast, "")`` or ``(None, problem)``."""
    if not isinstance(expr, str):
        return None, "expected a JMESPath expression (a string)"
    try:
        node = parse(expr)
    except jexc.JMESPathError as exc:
        return None, _parse_message(exc)
    problem = _check_ast(node, functions)
    return (None, problem) if problem else (node, "")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def validate_expression(
    expression: Any,
    path: str,
    *,
    tables: Tables | None = None,
    functions: Functions | None = None,
) -> list[str]:
    """Problems (``path: message``) with one expression, e.g. a ``where`` condition."""
    _, problem = _compile_node(expression, CrossdockFunctions(tables=tables, extra=functions))
    return [f"{path}: {problem}"] if problem else []


def validate_mapping(
    fields: Mapping[str, Any],
    path_prefix: str,
    *,
    tables: Tables | None = None,
    functions: Functions | None = None,
) -> list[str]:
    """Every problem in ``fields`` as ``<path_prefix>.<key>: <message>`` (empty list: valid).

    Messages never echo the expression. Checks target paths, JMESPath syntax, function names
    and argument counts, literal ``lookup`` table names, and value/parent conflicts.
    """
    fns = CrossdockFunctions(tables=tables, extra=functions)
    problems: list[str] = []
    seen: dict[tuple[str, ...], str] = {}
    for key, expr in _flat(fields).items():
        where = _join(path_prefix, key)
        try:
            segments = parse_path(key)
        except ValueError as exc:
            problems.append(f"{where}: invalid target path: {exc}")
            continue
        if expr == "":
            continue
        _, problem = _compile_node(expr, fns)
        if problem:
            problems.append(f"{where}: {problem}")
        for other, other_key in seen.items():
            if (
                other
                and segments
                and (other == segments[: len(other)] or segments == other[: len(segments)])
            ):
                problems.append(f"{where}: conflicts with target {other_key!r}")
                break
        seen[segments] = key
    return problems


# ---------------------------------------------------------------------------------------------
# Compilation


def _describe(exc: BaseException) -> str:
    """An error message without data values."""
    if isinstance(exc, jexc.JMESPathTypeError):
        expected = ", ".join(exc.expected_types)
        return f"{exc.function_name}(): invalid type {exc.actual_type}, expected one of: {expected}"
    if isinstance(exc, jexc.ArityError | jexc.UnknownFunctionError):
        return str(exc)
    return f"{type(exc).__name__} while evaluating the expression"


@frozen(eq=False)
class CompiledMapping:
    """A compiled mapping: call it with an event to get the payload, or ``None`` (dropped).

    ``source`` is the generated Python code; ``fallbacks`` counts sub-expressions left to the
    JMESPath interpreter (0 for everything Crossdock compiles).
    """

    fields: Mapping[str, str]
    where: str | None
    fn: Callable[[Any], Any] = field(repr=False)
    source: str = field(repr=False)
    fallbacks: int = 0
    functions: CrossdockFunctions = field(repr=False, default=None)
    where_fn: Callable[[Any], Any] | None = field(repr=False, default=None)

    @property
    def is_identity(self) -> bool:
        """Whether this mapping returns every event as it is (``"." = "@"``, no ``where``)."""
        return self.where is None and dict(self.fields) == {".": "@"}

    def matches(self, event: Any) -> bool:
        """Whether ``where`` holds for ``event`` (always true without one). The worker asks this
        only for events the mapping dropped, to count a false ``where`` as *filtered*."""
        if self.where_fn is None:
            return True
        value = self.where_fn(event)
        # JMESPath truth: null, false, "", [] and {} are false; numbers (0 too) are true.
        return not (value is None or value is False or value in ("", [], {}))

    def drop_reason(self, event: Any) -> str | None:
        """Why ``event`` is dropped: ``"filtered"`` (``where`` is false), ``"null payload"``
        (the ``"."`` value is null), or ``None`` when it is not dropped. Slow path: call it only
        for events the mapping dropped."""
        if not self.matches(event):
            return "filtered"
        return "null payload" if self(event) is None else None

    def __call__(self, event: Any) -> Any:
        """Map one event (``None`` when ``where`` is false or the ``"."`` value is null)."""
        try:
            return self.fn(event)
        except Unsendable:
            raise
        except Exception as exc:
            raise self._locate(event, exc) from exc

    def _locate(self, event: Any, exc: Exception) -> MappingError:
        """Find which field failed (slow path, only on errors)."""
        items = [("where", self.where)] if self.where else []
        items += [(k, v) for k, v in self.fields.items() if v]
        for key, expr in items:
            try:
                jmespath.search(expr, event, jmespath.Options(custom_functions=self.functions))
            except Exception as inner:
                return MappingError(key, _describe(inner))
        return MappingError("mapping", _describe(exc))


class _Tree:
    """Target paths as a tree, in order of first appearance."""

    def __init__(self) -> None:
        self.children: dict[str, _Tree | tuple[str, dict[str, Any]]] = {}


def compile_mapping(
    fields: Mapping[str, Any],
    *,
    where: str | None = None,
    tables: Tables | None = None,
    functions: Functions | None = None,
) -> CompiledMapping:
    """Compile ``fields`` (target path → expression) and ``where`` into one Python function.

    Raises :class:`~crossdock.MappingError` (path = the target key, or ``"where"``) for an
    invalid path, expression, function call, table name or a value/parent conflict.
    """
    fns = CrossdockFunctions(tables=tables, extra=functions)
    flat = _flat(fields)
    gen = CodeGen(fns)
    root = _Tree()
    base: dict[str, Any] | None = None
    kept: dict[str, str] = {}
    for key, expr in flat.items():
        try:
            segments = parse_path(key)
        except ValueError as exc:
            raise MappingError(key, f"invalid target path: {exc}") from None
        if expr == "":
            continue
        node, problem = _compile_node(expr, fns)
        if node is None:
            raise MappingError(key, problem)
        kept[key] = expr
        if not segments:
            base = node
            continue
        tree = root
        for seg in segments[:-1]:
            child = tree.children.setdefault(seg, _Tree())
            if not isinstance(child, _Tree):
                raise MappingError(key, f"conflicts with target {format_path(segments[:1])!r}")
            tree = child
        if segments[-1] in tree.children:
            raise MappingError(key, "conflicts with another target")
        tree.children[segments[-1]] = (key, node)

    where_node = None
    if where is not None:
        where_node, problem = _compile_node(where, fns)
        if where_node is None:
            raise MappingError("where", problem)

    out: list[str] = []
    ind = "    "
    gen.begin_function()
    if where_node is not None:
        cond = gen.var(gen.emit(where_node, "d", out, ind), out, ind)
        out.append(f"{ind}if not {_truthy(cond)}:")
        out.append(f"{ind}    return None")
    if base is not None and not root.children:
        result = gen.emit(base, "d", out, ind)
        out.append(f"{ind}return {result}")
    else:
        if base is not None:
            b = gen.var(gen.emit(base, "d", out, ind), out, ind)
            out.append(f"{ind}o = dict({b}) if type({b}) is dict else {{}}")
        else:
            out.append(f"{ind}o = {{}}")
        _emit_tree(gen, root, "o", base is not None, out, ind)
        out.append(f"{ind}return o")
    gen.defs.append("\n".join(["def _map(d):", *out]))
    ns = gen.build()
    return CompiledMapping(
        fields=kept,
        where=where,
        fn=ns["_map"],
        source=gen.source(),
        fallbacks=gen.fallbacks,
        functions=fns,
        where_fn=(
            compile_expression(where, tables=tables, functions=functions, path="where")
            if where
            else None
        ),
    )


def _emit_tree(
    gen: CodeGen, tree: _Tree, target: str, copy: bool, out: list[str], ind: str
) -> None:
    for name, child in tree.children.items():
        key = repr(name)
        if isinstance(child, _Tree):
            sub = gen.tmp("o")
            if copy:
                out.append(f"{ind}{sub} = {target}.get({key})")
                out.append(f"{ind}{sub} = dict({sub}) if type({sub}) is dict else {{}}")
            else:
                out.append(f"{ind}{sub} = {{}}")
            _emit_tree(gen, child, sub, copy, out, ind)
            out.append(f"{ind}if {sub}:")
            out.append(f"{ind}    {target}[{key}] = {sub}")
        else:
            node = child[1]
            value = gen.emit(node, "d", out, ind)
            if node["type"] == "literal" and node["value"] is not None:
                out.append(f"{ind}{target}[{key}] = {value}")
                continue
            value = gen.var(value, out, ind)
            out.append(f"{ind}if {value} is not None:")
            out.append(f"{ind}    {target}[{key}] = {value}")


def compile_expression(
    expression: str,
    *,
    tables: Tables | None = None,
    functions: Functions | None = None,
    path: str = "expression",
) -> Callable[[Any], Any]:
    """Compile one expression to ``f(data) -> value`` (same result as ``jmespath.search``).

    Raises :class:`~crossdock.MappingError` with ``path`` for invalid expressions.
    """
    from crossdock.transform.jmes.compiler import compile_expression as compile_jmes

    fns = CrossdockFunctions(tables=tables, extra=functions)
    node, problem = _compile_node(expression, fns)
    if node is None:
        raise MappingError(path, problem)
    return compile_jmes(node, fns)


# ---------------------------------------------------------------------------------------------
# Files and overrides


def parse_mapping(
    text: str, where: str = "mapping.toml", *, functions: Functions | None = None
) -> MappingFile:
    """Read mapping-file TOML ``text`` (the format of :func:`load_mapping_file`).

    Checks the structure and every expression (Crossdock's functions and ``functions`` are
    known) and raises :class:`~crossdock.MappingError` with path ``<where>:<key>`` for the
    first problem.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(where, f"cannot read mapping file: {type(exc).__name__}") from None
    return _checked(data, where, functions)


def _checked(data: dict[str, Any], where: str, functions: Functions | None) -> MappingFile:
    from crossdock.transform.sections import validate_spec

    spec, problems = read_spec(data)
    if not problems:
        problems = validate_spec(spec, "", functions=functions)
    if problems:
        key, _, message = problems[0].partition(": ")
        raise MappingError(f"{where}:{key}", message)
    return spec


def load_mapping_file(
    package: str, resource: str = "mapping.toml", *, functions: Functions | None = None
) -> MappingFile:
    """Read a mapping file shipped as package data (TOML) into a :class:`MappingFile`.

    Top-level keys (and nested tables) are the common fields; ``[tables.<name>]`` lookup
    tables, ``[sections.<name>]`` event kinds and ``[dispatch]`` are read as such. Pass the
    type's ``functions`` when the expressions call them (they are checked by name). Raises
    :class:`~crossdock.MappingError` (path ``<package>/<resource>`` or ``.../<key>``) for
    unreadable files or invalid content.
    """
    where = f"{package}/{resource}"
    try:
        text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, ModuleNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(where, f"cannot read mapping file: {type(exc).__name__}") from None
    return _checked(data, where, functions)


def load_mapping(package: str, resource: str = "mapping.toml") -> dict[str, str]:
    """The fields of a plugin's mapping file (see :func:`load_mapping_file` for tables)."""
    return load_mapping_file(package, resource).fields
