"""Compile JMESPath expressions to Python source, ``exec`` once, get a plain function.

The generated code follows ``jmespath.visitor.TreeInterpreter`` node by node, so results are
identical to ``jmespath.search`` (same values, same types, same exception types), only faster:
no per-node method dispatch, field chains become ``dict.get`` calls, ``||``/``&&`` become ``if``s.

How the code is generated: :meth:`CodeGen.emit` turns one AST node into statements appended
to a block plus a Python *expression* for the node's value. An expression handed back is pure
(never raises, reads only variables that are never reassigned), so callers may place it after
later statements without changing evaluation order; anything that may raise (function calls,
ordering comparisons, slices) is assigned to a fresh temporary at once.

What is not compiled runs in the interpreter, per sub-expression: node types this module does
not know (``default_visit``) call ``TreeInterpreter.visit`` on that subtree with the same
``Functions`` object. Function calls are compiled as a fast path guarded by exact type tests
and otherwise go through ``Functions.call_function``, which does JMESPath's own checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath import functions as jfunctions
from jmespath import visitor as jvisitor
from jmespath.parser import Parser

from crossdock.transform.jmes.functions import BUILTIN_NAMES, CrossdockFunctions

__all__ = ["CodeGen", "Unsupported", "compile_expression", "parse"]

_PARSER = Parser()


def parse(expression: str) -> dict[str, Any]:
    """Parse ``expression`` into JMESPath's AST (raises ``jmespath.exceptions.ParseError``)."""
    return _PARSER.parse(expression).parsed


class Unsupported(Exception):
    """Raised inside the generator for a node it does not compile (that subtree is interpreted)."""


class _Expression(jvisitor._Expression):
    """An expref whose body is compiled; named like JMESPath's so its type checks accept it."""

    def __init__(self, expression: dict[str, Any], fn: Callable[[Any], Any]) -> None:
        super().__init__(expression, None)
        self.fn = fn

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args)


_Expression.__name__ = "_Expression"
_Expression.__qualname__ = "_Expression"


# Runtime helpers: the exact interpreter behaviour for the non-fast paths.


def _field(value: Any, name: str) -> Any:
    try:
        return value.get(name)
    except AttributeError:
        return None


def _index(value: Any, i: int) -> Any:
    if not isinstance(value, list):
        return None
    try:
        return value[i]
    except IndexError:
        return None


def _slice(value: Any, s: slice) -> Any:
    if not isinstance(value, list):
        return None
    return value[s]


def _values(value: Any) -> Any:
    try:
        return value.values()
    except AttributeError:
        return None


def _flatten(base: Any) -> Any:
    if not isinstance(base, list):
        return None
    merged: list[Any] = []
    for element in base:
        if isinstance(element, list):
            merged.extend(element)
        else:
            merged.append(element)
    return merged


def _order(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    comparable = jvisitor._is_comparable

    def compare(left: Any, right: Any) -> Any:
        if not (comparable(left) and comparable(right)):
            return None
        return op(left, right)

    return compare


_ORDER = {
    "lt": ("<", _order(lambda a, b: a < b)),
    "lte": ("<=", _order(lambda a, b: a <= b)),
    "gt": (">", _order(lambda a, b: a > b)),
    "gte": (">=", _order(lambda a, b: a >= b)),
}

_HELPERS: dict[str, Any] = {
    "_field": _field,
    "_index": _index,
    "_slice": _slice,
    "_values": _values,
    "_flatten": _flatten,
    "_equals": jvisitor._equals,
    "_lt": _ORDER["lt"][1],
    "_lte": _ORDER["lte"][1],
    "_gt": _ORDER["gt"][1],
    "_gte": _ORDER["gte"][1],
    "_floor": math.floor,
    "_ceil": math.ceil,
    "_SLD": (str, list, dict),
    "_NUM": (int, float),
}

_F = jfunctions.Functions

# Built-in functions with a fast path: (arity, guard, body). ``{0}``... are argument names.
# When the guard fails the call goes through ``call_function`` (exact checks and errors).
_FAST: dict[str, tuple[int, str, str]] = {
    "length": (1, "type({0}) in _SLD", "len({0})"),
    "contains": (2, "type({0}) is list or type({0}) is str", "{1} in {0}"),
    "starts_with": (2, "type({0}) is str and type({1}) is str", "{0}.startswith({1})"),
    "ends_with": (2, "type({0}) is str and type({1}) is str", "{0}.endswith({1})"),
    "to_string": (1, "type({0}) is str", "{0}"),
    "to_number": (1, "type({0}) in _NUM", "{0}"),
    "abs": (1, "type({0}) in _NUM", "abs({0})"),
    "floor": (1, "type({0}) in _NUM", "_floor({0})"),
    "ceil": (1, "type({0}) in _NUM", "_ceil({0})"),
    "keys": (1, "type({0}) is dict", "list({0})"),
    "values": (1, "type({0}) is dict", "list({0}.values())"),
    "to_array": (1, "type({0}) is list", "{0}"),
    "type": (1, "True", "_b_type(None, {0})"),
}


def _truthy(name: str) -> str:
    """JMESPath truth of variable ``name``: false for null, false, "", [], {} (0 is true)."""
    return f"({name} or ({name} == 0 and {name} is not False))"


def _is_number_literal(node: dict[str, Any]) -> bool:
    value = node.get("value")
    return node["type"] == "literal" and type(value) in (int, float)


def _is_pure_literal(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


class CodeGen:
    """Generates the source of one module: a main function plus compiled expref bodies."""

    def __init__(self, functions: CrossdockFunctions) -> None:
        self.functions = functions
        self.interpreter = jvisitor.TreeInterpreter(jmespath.Options(custom_functions=functions))
        self.ns: dict[str, Any] = dict(_HELPERS)
        self.ns["_call"] = functions.call_function
        self.ns["_visit"] = self.interpreter.visit
        self.ns["_b_type"] = _F._func_type
        self.defs: list[str] = []
        self.fallbacks = 0
        self._n = 0
        self._exprefs: list[tuple[str, dict[str, Any], str]] = []
        self.top = "    "
        self._literals: set[str] = set()
        self._dicts: set[str] = set()
        self._cache: dict[tuple[str, str], str] = {}
        self._stable: set[str] = set()

    def begin_function(self, arg: str = "d") -> None:
        """Start a new generated function whose argument ``arg`` is never reassigned."""
        self._cache = {}
        self._stable = {arg}

    # -- names ----------------------------------------------------------------------------

    def tmp(self, prefix: str = "t") -> str:
        """A fresh local variable name."""
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any) -> str:
        """A name bound to ``value`` in the module namespace (or its repr for simple scalars)."""
        if _is_pure_literal(value) and not (isinstance(value, float) and not math.isfinite(value)):
            text = repr(value)
            self._literals.add(text)
            return text
        name = self.tmp("_c")
        self.ns[name] = value
        return name

    def atom(self, expr: str, out: list[str], ind: str) -> str:
        """``expr`` as a variable name (assigning it to a temporary when needed)."""
        if expr.isidentifier() or expr in self._literals:
            return expr
        name = self.tmp()
        out.append(f"{ind}{name} = {expr}")
        return name

    def var(self, expr: str, out: list[str], ind: str) -> str:
        """``expr`` as a variable name (never a literal)."""
        if expr.isidentifier() and expr not in self._literals:
            return expr
        return self.materialize(expr, out, ind)

    def materialize(self, expr: str, out: list[str], ind: str) -> str:
        """Assign ``expr`` to a fresh temporary now (used for anything that may raise)."""
        name = self.tmp()
        out.append(f"{ind}{name} = {expr}")
        return name

    # -- nodes ----------------------------------------------------------------------------

    def emit(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        """Append statements computing ``node`` on variable ``inp``; return its expression."""
        method = getattr(self, "n_" + node["type"], None)
        if method is not None:
            try:
                mark = len(out)
                return method(node, inp, out, ind)
            except Unsupported:
                del out[mark:]
        self.fallbacks += 1
        return self.materialize(f"_visit({self.const(node)}, {inp})", out, ind)

    def n_field(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        key = repr(node["value"])
        cached = self._cache.get((inp, key))
        if cached is not None:
            return cached
        stable = ind == self.top and inp in self._stable
        x = self.var(inp, out, ind)
        if x in self._dicts:
            expr = f"{x}.get({key})"
        else:
            expr = f"({x}.get({key}) if type({x}) is dict else _field({x}, {key}))"
        if not stable:
            return expr
        # a field chain at the function's top level, on a value never reassigned: reuse it
        name = self.materialize(expr, out, ind)
        self._cache[(inp, key)] = name
        self._stable.add(name)
        return name

    def n_current(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        return inp

    n_identity = n_current

    def n_literal(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        return self.const(node["value"])

    def n_subexpression(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        cur = inp
        for child in node["children"]:
            cur = self.emit(child, cur, out, ind)
        return cur

    n_index_expression = n_subexpression
    n_pipe = n_subexpression

    def n_key_val_pair(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        return self.emit(node["children"][0], inp, out, ind)

    def n_index(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        i = node["value"]
        if not isinstance(i, int):
            raise Unsupported
        x = self.var(inp, out, ind)
        bound = f"len({x}) > {i}" if i >= 0 else f"len({x}) >= {-i}"
        return f"({x}[{i}] if type({x}) is list and {bound} else _index({x}, {i}))"

    def n_slice(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        s = self.const(slice(*node["children"]))
        return self.materialize(f"_slice({inp}, {s})", out, ind)

    def n_comparator(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        op = node["value"]
        left_node, right_node = node["children"]
        left = self.emit(left_node, inp, out, ind)
        right_out: list[str] = []
        right = self.emit(right_node, inp, right_out, ind)
        if right_out and not left.isidentifier():
            left = self.materialize(left, out, ind)
        out.extend(right_out)
        if op in ("eq", "ne"):
            expr = self._equals(left, right, left_node, right_node, out, ind)
            return expr if op == "eq" else f"(not {expr})"
        if op not in _ORDER:
            raise Unsupported
        a = self.atom(left, out, ind)
        b = self.atom(right, out, ind)
        symbol = _ORDER[op][0]
        checks = [
            f"type({v}) in _NUM"
            for v, n in ((a, left_node), (b, right_node))
            if not _is_number_literal(n)
        ]
        fast = " and ".join(checks) or "True"
        return self.materialize(f"({a} {symbol} {b} if {fast} else _{op}({a}, {b}))", out, ind)

    def _equals(
        self,
        left: str,
        right: str,
        left_node: dict[str, Any],
        right_node: dict[str, Any],
        out: list[str],
        ind: str,
    ) -> str:
        for expr, other in ((left, right_node), (right, left_node)):
            if other["type"] != "literal":
                continue
            value = other["value"]
            lit = self.const(value)
            if value is True or value is False:
                return f"({self.var(expr, out, ind)} is {value})"
            if value is None or isinstance(value, str):
                return f"({expr} == {lit})"
            if isinstance(value, int | float) and value not in (0, 1):
                return f"({expr} == {lit})"
        return f"_equals({left}, {right})"

    def n_or_expression(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        x = self.atom(inp, out, ind)
        result = self.materialize(self.emit(node["children"][0], x, out, ind), out, ind)
        out.append(f"{ind}if not {_truthy(result)}:")
        inner = ind + "    "
        right = self.emit(node["children"][1], x, out, inner)
        out.append(f"{inner}{result} = {right}")
        return result

    def n_and_expression(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        x = self.atom(inp, out, ind)
        result = self.materialize(self.emit(node["children"][0], x, out, ind), out, ind)
        out.append(f"{ind}if {_truthy(result)}:")
        inner = ind + "    "
        right = self.emit(node["children"][1], x, out, inner)
        out.append(f"{inner}{result} = {right}")
        return result

    def n_not_expression(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        value = self.var(self.emit(node["children"][0], inp, out, ind), out, ind)
        return f"(not {_truthy(value)})"

    def _children(
        self, children: list[dict[str, Any]], x: str, out: list[str], ind: str
    ) -> list[str]:
        exprs: list[str] = []
        for child in children:
            buf: list[str] = []
            expr = self.emit(child, x, buf, ind)
            # earlier expressions are pure (see the module docstring): they may run after these
            out.extend(buf)
            exprs.append(expr)
        return exprs

    def n_multi_select_list(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        x = self.var(inp, out, ind)
        if x in self._dicts:
            return f"[{', '.join(self._children(node['children'], x, out, ind))}]"
        result = self.tmp()
        out.append(f"{ind}if {x} is None:")
        out.append(f"{ind}    {result} = None")
        out.append(f"{ind}else:")
        inner = ind + "    "
        exprs = self._children(node["children"], x, out, inner)
        out.append(f"{inner}{result} = [{', '.join(exprs)}]")
        return result

    def n_multi_select_dict(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        x = self.var(inp, out, ind)
        result = self.tmp()
        out.append(f"{ind}if {x} is None:")
        out.append(f"{ind}    {result} = None")
        inner = ind + "    "
        if x not in self._dicts:
            # the usual case, an object: a branch where field access needs no type test
            out.append(f"{ind}elif type({x}) is dict:")
            self._dicts.add(x)
            try:
                self._select_dict(node, x, result, out, inner)
            finally:
                self._dicts.discard(x)
        out.append(f"{ind}else:")
        self._select_dict(node, x, result, out, inner)
        return result

    def _select_dict(
        self, node: dict[str, Any], x: str, result: str, out: list[str], ind: str
    ) -> None:
        exprs = self._children(node["children"], x, out, ind)
        items = ", ".join(
            f"{child['value']!r}: {expr}"
            for child, expr in zip(node["children"], exprs, strict=True)
        )
        out.append(f"{ind}{result} = {{{items}}}")

    def _project(
        self,
        iterable: str,
        right: dict[str, Any],
        condition: dict[str, Any] | None,
        result: str,
        out: list[str],
        ind: str,
    ) -> None:
        """``result = [right(e) for e in iterable if condition(e)]``, nulls dropped."""
        el = self.tmp("e")
        body: list[str] = []
        inner = ind + "    "
        if condition is not None:
            cond = self.var(self.emit(condition, el, body, inner), body, inner)
            body.append(f"{inner}if {_truthy(cond)}:")
            inner += "    "
        value_out: list[str] = []
        value = self.emit(right, el, value_out, inner)
        if condition is None and not value_out:
            if value == el:
                out.append(f"{ind}{result} = [{el} for {el} in {iterable} if {el} is not None]")
            else:
                v = self.tmp("v")
                out.append(
                    f"{ind}{result} = [{v} for {el} in {iterable} if ({v} := {value}) is not None]"
                )
            return
        body.extend(value_out)
        v = self.var(value, body, inner)
        body.append(f"{inner}if {v} is not None:")
        body.append(f"{inner}    {result}.append({v})")
        out.append(f"{ind}{result} = []")
        out.append(f"{ind}for {el} in {iterable}:")
        out.extend(body)

    def n_projection(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        base = self.atom(self.emit(node["children"][0], inp, out, ind), out, ind)
        result = self.tmp()
        out.append(f"{ind}if isinstance({base}, list):")
        self._project(base, node["children"][1], None, result, out, ind + "    ")
        out.append(f"{ind}else:")
        out.append(f"{ind}    {result} = None")
        return result

    def n_filter_projection(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        left, right, condition = node["children"]
        base = self.atom(self.emit(left, inp, out, ind), out, ind)
        result = self.tmp()
        out.append(f"{ind}if isinstance({base}, list):")
        self._project(base, right, condition, result, out, ind + "    ")
        out.append(f"{ind}else:")
        out.append(f"{ind}    {result} = None")
        return result

    def n_value_projection(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        base = self.emit(node["children"][0], inp, out, ind)
        values = self.materialize(f"_values({base})", out, ind)
        result = self.tmp()
        out.append(f"{ind}if {values} is None:")
        out.append(f"{ind}    {result} = None")
        out.append(f"{ind}else:")
        self._project(values, node["children"][1], None, result, out, ind + "    ")
        return result

    def n_flatten(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        base = self.emit(node["children"][0], inp, out, ind)
        return self.materialize(f"_flatten({base})", out, ind)

    def n_expref(self, node: dict[str, Any], inp: str, out: list[str], ind: str) -> str:
        body = node["children"][0]
        name = self.tmp("_x")
        self.add_function(name, body)
        holder = self.tmp("_r")
        self._exprefs.append((holder, body, name))  # bound to an _Expression after exec
        return holder

    def n_function_expression(
        self, node: dict[str, Any], inp: str, out: list[str], ind: str
    ) -> str:
        name = node["value"]
        x = self.atom(inp, out, ind)
        args = [self.atom(a, out, ind) for a in self._children(node["children"], x, out, ind)]
        count = len(args)
        fast = _FAST.get(name)
        if fast is not None and fast[0] == count:
            _, guard, body = fast
            guard = guard.format(*args)
            body = body.format(*args)
            if guard == "True":
                return self.materialize(body, out, ind)
            call = f"_call({name!r}, [{', '.join(args)}])"
            return self.materialize(f"({body} if {guard} else {call})", out, ind)
        if name == "lookup" and count == 2:
            table = node["children"][0]
            rows = self.functions.tables.get(table["value"]) if table["type"] == "literal" else None
            if isinstance(rows, dict) and isinstance(table["value"], str):
                # a literal table: a string key is one dict lookup (other keys: the full rules)
                key = args[1]
                lk = self.const(self.functions.custom["lookup"].fn)
                return self.materialize(
                    f"({self.const(rows)}.get({key}) if type({key}) is str"
                    f" else {lk}({args[0]}, {key}))",
                    out,
                    ind,
                )
        if name == "not_null" and count >= 1:
            expr = "None"
            for a in reversed(args):
                if a in self._literals:
                    expr = expr if a == "None" else a
                else:
                    expr = f"({a} if {a} is not None else {expr})"
            return expr
        if name not in BUILTIN_NAMES:
            func = self.functions.lookup_function(name)
            if func is not None and func.untyped and func.arity_ok(count):
                fn_name = self.const(func.fn)
                return self.materialize(f"{fn_name}({', '.join(args)})", out, ind)
        return self.materialize(f"_call({name!r}, [{', '.join(args)}])", out, ind)

    # -- functions ------------------------------------------------------------------------

    def add_function(self, name: str, node: dict[str, Any]) -> None:
        """Add ``def name(d): return <node>`` to the module."""
        out: list[str] = []
        saved = self._cache, self._stable
        self.begin_function()
        result = self.emit(node, "d", out, "    ")
        self._cache, self._stable = saved
        self.defs.append("\n".join([f"def {name}(d):", *out, f"    return {result}"]))

    def build(self) -> dict[str, Any]:
        """Exec the module; return its namespace (functions bound by name)."""
        source = self.source()
        ns = self.ns
        exec(compile(source, "<crossdock.transform.jmes>", "exec"), ns)
        for holder, body, name in self._exprefs:
            ns[holder] = _Expression(body, ns[name])
        return ns

    def source(self) -> str:
        """The generated module source."""
        return "\n\n".join(self.defs) + "\n"


def compile_expression(
    expression: str | dict[str, Any], functions: CrossdockFunctions | None = None
) -> Callable[[Any], Any]:
    """Compile one JMESPath expression (text or parsed AST) to ``f(data) -> value``.

    ``f.source`` holds the generated code and ``f.fallbacks`` the number of interpreted
    sub-expressions. Raises ``jmespath.exceptions.ParseError`` for invalid text.
    """
    node = parse(expression) if isinstance(expression, str) else expression
    gen = CodeGen(functions or CrossdockFunctions())
    gen.add_function("_main", node)
    ns = gen.build()
    fn = ns["_main"]
    fn.source = gen.source()
    fn.fallbacks = gen.fallbacks
    return fn
