"""The JMESPath compiler against the interpreter: same values, same types, same errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jexc

from crossdock.transform.jmes import CrossdockFunctions, compile_expression

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
FUNCTIONS = CrossdockFunctions(tables={"names": {"a": "A", "1": "one"}})
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)


def typed(value: Any) -> Any:
    """A structure whose equality also compares JSON types (``1`` vs ``1.0`` vs ``true``)."""
    if isinstance(value, dict):
        return ("object", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("array", [typed(v) for v in value])
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, value)


def outcome(fn: Any, data: Any) -> Any:
    try:
        return ("ok", typed(fn(data)))
    except Exception as exc:
        return ("error", type(exc))


def check(expression: str, data: Any) -> None:
    compiled = compile_expression(expression, FUNCTIONS)
    expected = outcome(lambda d: jmespath.search(expression, d, options=OPTIONS), data)
    assert outcome(compiled, data) == expected, (expression, data, compiled.source)


SAMPLES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2.5,
    "",
    "abc",
    [],
    {},
    [0, 1, 2, 3, 4, 5],
    [None, 1, [2, [3]], "x", {"a": 1}],
    {"a": {"b": {"c": 1}}, "list": [1, 2, 3]},
    {
        "a": 0,
        "b": False,
        "c": "",
        "d": [],
        "e": {},
        "f": None,
        "g": 1,
        "h": True,
        "s": "foo",
        "t": "Foo Bar",
        "n": [3, 1, 2],
        "ns": ["b", "a", "c"],
        "people": [
            {"name": "a", "age": 30, "tags": ["x", "y"]},
            {"name": "b", "age": 0, "tags": []},
            {"name": "c", "age": None},
            {"name": "d", "age": 50.5, "tags": ["z"]},
            "notanobject",
            None,
        ],
        "obj": {"x": {"v": 1}, "y": {"v": 2}, "z": {"w": 3}, "n": None},
        "nested": [[1, 2], [3, [4, 5]], 6, None],
        "one": 1,
        "zero": 0,
        "fl": 1.0,
        "when": "2026-11-22T12:00:00.123456+02:00",
        "epoch": 1700000000.25,
        "phone": "(555) 123-4567",
        "intl": "0044 20 7946 0958",
    },
]

EXPRESSIONS = [
    # fields, subexpressions, identity, current
    "a",
    "a.b",
    "a.b.c",
    "@",
    "@.a",
    '"a"',
    '"with space"',
    "s.length",
    "people.name",
    # index, slice
    "[0]",
    "[-1]",
    "[10]",
    "[-10]",
    "n[1]",
    "[1:3]",
    "[::2]",
    "[::-1]",
    "[-2:]",
    "[:0]",
    "n[::0]",
    "[1:10:3].a",
    "n[:2]",
    # projections
    "[*]",
    "people[*].name",
    "people[*].tags[0]",
    "people[*].tags[]",
    "people[].name",
    "nested[]",
    "nested[][]",
    "nested[].[@]",
    "obj.*",
    "obj.*.v",
    "*.v",
    "*",
    "obj.*.*",
    "people[*]",
    "people[*].[name, age]",
    "people[*].{n: name, a: age}",
    "[]",
    "[].a",
    "a[]",
    # filters
    "people[?age > `20`].name",
    "people[?age]",
    "people[?!age]",
    "people[?age == `0`].name",
    "people[?age != `0`].name",
    "people[?tags].name",
    "people[?name == 'a' || name == 'd'].age",
    "people[?contains(tags || `[]`, 'x')].name",
    "[?@ > `2`]",
    "[?@]",
    "n[?@ >= `2`]",
    "people[?age > `20`] | [0].name",
    # comparators
    "a == `0`",
    "a == b",
    "g == h",
    "h == `1`",
    "one == `true`",
    "fl == one",
    "zero == `false`",
    "b == `false`",
    "h == `true`",
    "s == 'foo'",
    "f == `null`",
    "x == `null`",
    "n == `[3, 1, 2]`",
    "obj == obj",
    "a != `0`",
    "h != `1`",
    "g < `2`",
    "g <= `1`",
    "g > fl",
    "g >= `2`",
    "s < 'z'",
    "s > t",
    "s < `1`",
    "h < `2`",
    "f < `1`",
    "n < `1`",
    # boolean logic
    "a || g",
    "b || c || d || e || f || s",
    "a && g",
    "g && s",
    "f && g",
    "c && g",
    "!a",
    "!b",
    "!c",
    "!d",
    "!e",
    "!f",
    "!g",
    "!s",
    "!fl",
    "!`0.0`",
    "!!n",
    "g == `1` && 'yes' || 'no'",
    "(a || g) && s",
    # multiselect
    "[a, g]",
    "{a: a, g: g}",
    "{a: a, a: g}",
    "missing.[a, b]",
    "missing.{a: a}",
    "[`1`, 'x', @]",
    "a.[b, c]",
    "a.{b: b, c: b.c}",
    "[[a, b], {c: c}]",
    # literals
    "`null`",
    "`true`",
    "`1.5`",
    '`"x"`',
    "`[1, 2]`",
    '`{"k": [1]}`',
    "'raw'",
    "`-0`",
    # pipes
    "people | [0]",
    "people[*].name | [0]",
    "people[*].name | sort(@)",
    "n | [1]",
    "a | b",
    # functions: built-ins
    "length(s)",
    "length(n)",
    "length(obj)",
    "length(g)",
    "length(f)",
    "length(@)",
    "contains(n, `1`)",
    "contains(s, 'o')",
    "contains(s, `1`)",
    "contains(obj, 'x')",
    "starts_with(s, 'f')",
    "starts_with(s, `1`)",
    "ends_with(t, 'Bar')",
    "ends_with(g, 'x')",
    "join(', ', ns)",
    "join(', ', n)",
    "join(`1`, ns)",
    "to_string(s)",
    "to_string(n)",
    "to_string(obj)",
    "to_string(fl)",
    "to_string(`null`)",
    "to_number('12')",
    "to_number('1.5')",
    "to_number('x')",
    "to_number(g)",
    "to_number(h)",
    "to_number(n)",
    "keys(obj)",
    "keys(n)",
    "values(obj)",
    "values(s)",
    "not_null(f, a, g)",
    "not_null(f, missing)",
    "not_null()",
    "type(@)",
    "type(f)",
    "type(h)",
    "type(fl)",
    "type(s)",
    "type(n)",
    "type(obj)",
    "sort(n)",
    "sort(ns)",
    "sort(people)",
    "max(n)",
    "min(ns)",
    "max(`[]`)",
    "max(people)",
    "sum(n)",
    "sum(ns)",
    "avg(n)",
    "abs(`-2`)",
    "abs(s)",
    "floor(`2.5`)",
    "ceil(`2.5`)",
    "floor(h)",
    "reverse(n)",
    "reverse(s)",
    "reverse(g)",
    'merge(obj, `{"q": 1}`)',
    "merge(obj, s)",
    "to_array(g)",
    "to_array(n)",
    "map(&name, people[?@])",
    "map(&age, `[]`)",
    "sort_by(people[?age], &age)[*].name",
    "sort_by(people[?age], &name)[*].name",
    "sort_by(people, &age)",
    "max_by(people[?age], &age).name",
    "min_by(people[?age], &age).name",
    "min_by(people, &tags)",
    "length(n, s)",
    "unknown_function(a)",
    "abs()",
    # Crossdock's functions
    "iso_time(when)",
    "iso_time(epoch)",
    "iso_time(s)",
    "rfc3339(when)",
    "epoch(when)",
    "epoch_ms(epoch)",
    "lower(t)",
    "upper(t)",
    "lower(g)",
    "string_join('-', people[*].name)",
    "string_join(', ', n)",
    "to_int('12')",
    "to_int('1.9')",
    "to_int(fl)",
    "to_float('x')",
    "number('7')",
    "number('x', `0`)",
    "default(f, 'fallback')",
    "default(a, 'fallback')",
    "array(f)",
    "array(g)",
    "array(n)",
    "e164(phone)",
    "e164(intl)",
    "lookup('names', 'a')",
    "lookup('names', `1`)",
    "lookup('names', 'zz', 'dflt')",
    "lookup('nothere', 'a')",
    "lookup(`1`, 'a')",
    "lookup('names')",
    "iso_time()",
    "number(`1`, `2`, `3`)",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_hand_picked(expression: str) -> None:
    compiled = compile_expression(expression, FUNCTIONS)
    assert compiled.fallbacks == 0, compiled.source
    for data in SAMPLES:
        check(expression, data)


def test_hand_picked_cover_every_node_type() -> None:
    from crossdock.transform.jmes.compiler import CodeGen, parse

    seen: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        seen.add(node["type"])
        for child in node.get("children", ()):
            if isinstance(child, dict):
                walk(child)

    for expression in EXPRESSIONS:
        walk(parse(expression))
    handled = {name[2:] for name in dir(CodeGen) if name.startswith("n_")}
    assert handled <= seen, handled - seen
    called = {e.split("(")[0] for e in EXPRESSIONS if "(" in e and not e.startswith("(")}
    builtins = set(jmespath.functions.Functions.FUNCTION_TABLE)
    assert builtins <= called, builtins - called


def test_results_are_fresh_objects_where_the_interpreter_builds_them() -> None:
    fn = compile_expression("{a: a, l: [a]}", FUNCTIONS)
    first = fn({"a": 1})
    first["a"] = 2
    assert fn({"a": 1}) == {"a": 1, "l": [1]}


def test_subtrees_the_compiler_does_not_know_fall_back_to_the_interpreter() -> None:
    from crossdock.transform.jmes.compiler import CodeGen

    class Partial(CodeGen):
        n_filter_projection = None  # as if the node type were unknown

    ast = jmespath.compile("people[?age > `20`].name | [0]").parsed
    gen = Partial(FUNCTIONS)
    gen.add_function("_main", ast)
    fn = gen.build()["_main"]
    assert gen.fallbacks == 1
    assert "_visit(" in gen.source()
    for data in SAMPLES:
        expected = outcome(lambda d: jmespath.search("people[?age > `20`].name | [0]", d), data)
        assert outcome(fn, data) == expected


def test_unknown_node_type_falls_back() -> None:
    from crossdock.transform.jmes.compiler import compile_expression as compile_ast

    ast = {"type": "made_up", "children": []}
    fn = compile_ast(
        {
            "type": "subexpression",
            "children": [{"type": "field", "value": "a", "children": []}, ast],
        }
    )
    assert fn.fallbacks == 1
    with pytest.raises(NotImplementedError):
        fn({"a": 1})


def test_parse_errors_are_jmespath_errors() -> None:
    with pytest.raises(jexc.ParseError):
        compile_expression("a.[", FUNCTIONS)
    with pytest.raises(jexc.LexerError):
        compile_expression("a $ b", FUNCTIONS)


# ---------------------------------------------------------------------------------------------
# Generated inputs and expressions

KEYS = ["a", "b", "c"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, 1.5, -2.5])
    | st.sampled_from(["", "a", "b", "foo"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=3)
    ),
    max_leaves=12,
)

leaves = st.sampled_from(
    ["a", "b", "c", "@", "`1`", "`0`", "'a'", "`null`", "`true`", "`[]`", "`{}`", "''", "`1.5`"]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.tuples(children, st.sampled_from(KEYS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(
            children, st.sampled_from(["[0]", "[-1]", "[1:]", "[::-1]", "[*]", "[]", ".*"])
        ).map(lambda t: f"({t[0]}){t[1]}"),
        pair.map(lambda t: f"({t[0]})[?{t[1]}]"),
        st.tuples(
            children, st.sampled_from(["||", "&&", "==", "!=", "<", ">=", "|"]), children
        ).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        children.map(lambda c: f"!({c})"),
        pair.map(lambda t: f"[{t[0]}, {t[1]}]"),
        pair.map(lambda t: f"{{x: {t[0]}, y: {t[1]}}}"),
        st.tuples(
            st.sampled_from(
                [
                    "length",
                    "to_string",
                    "type",
                    "keys",
                    "sort",
                    "max",
                    "not_null",
                    "to_number",
                    "abs",
                    "reverse",
                    "to_array",
                    "lower",
                    "array",
                ]
            ),
            children,
        ).map(lambda t: f"{t[0]}({t[1]})"),
        pair.map(lambda t: f"contains({t[0]}, {t[1]})"),
        pair.map(lambda t: f"not_null({t[0]}, {t[1]})"),
        pair.map(lambda t: f"default({t[0]}, {t[1]})"),
        children.map(lambda c: f"map(&({c}), @)"),
    )


expressions = st.recursive(leaves, _combine, max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=expressions,
    data=st.one_of(json_values, st.dictionaries(st.sampled_from(KEYS), json_values)),
)
def test_random_expressions_match_the_interpreter(expression: str, data: Any) -> None:
    try:
        jmespath.compile(expression)
    except jexc.JMESPathError:
        assume(False)
    check(expression, data)


def _reference_expressions() -> list[str]:
    mapping = json.loads((DATA / "insider_like_mapping.json").read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
            else:
                found.append(value)

    walk(mapping)
    return found


REFERENCE = _reference_expressions()
text = st.sampled_from(["", "x", "Order Completed", "purchase", "jane@example.com"])
scalar = st.none() | st.booleans() | st.integers(-2, 5) | st.floats(-10, 10, allow_nan=False) | text
product = (
    st.dictionaries(
        st.sampled_from(
            ["product_id", "name", "price", "quantity", "category", "url", "image_url"]
        ),
        scalar | st.lists(scalar, max_size=2),
    )
    | scalar
)
event = st.fixed_dictionaries(
    {},
    optional={
        "event": scalar,
        "userId": scalar,
        "timestamp": scalar,
        "traits": st.dictionaries(st.sampled_from(["email", "phone", "first_name"]), scalar)
        | scalar,
        "context": st.fixed_dictionaries(
            {},
            optional={
                "traits": st.dictionaries(
                    st.sampled_from(["email", "phone", "first_name", "last_name"]), scalar
                )
                | scalar,
                "locale": scalar,
                "page": st.dictionaries(st.sampled_from(["url", "referrer"]), scalar) | scalar,
                "userAgent": scalar,
            },
        )
        | scalar,
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "order_id": scalar,
                "revenue": scalar,
                "total": scalar,
                "products": st.lists(product, max_size=4) | scalar,
            },
        )
        | scalar,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=event)
def test_reference_mapping_expressions_match_the_interpreter(data: Any) -> None:
    for expression in REFERENCE:
        check(expression, data)
