"""Mappings: target paths, null omission, ".", where, overrides, tables, functions, errors."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jmespath
import pytest

import crossdock
from crossdock.transform.jmes import functions as jfunctions
from crossdock.transform.mapping import (
    compile_expression,
    compile_mapping,
    format_path,
    load_mapping,
    load_mapping_file,
    merge_mapping,
    parse_path,
    register_function,
    validate_expression,
    validate_mapping,
)

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def test_golden_reference_mapping() -> None:
    mapping = json.loads((DATA / "insider_like_mapping.json").read_text())
    event = json.loads((DATA / "order_completed.json").read_text())
    expected = json.loads((DATA / "insider_like_expected.json").read_text())
    transform = compile_mapping(mapping)
    assert transform.fallbacks == 0
    assert transform(event) == without_nulls(expected)
    assert list(transform(event)) == ["identifiers", "attributes", "event"]
    assert event == json.loads((DATA / "order_completed.json").read_text())  # not modified


def test_golden_reference_mapping_drops_nulls() -> None:
    mapping = json.loads((DATA / "insider_like_mapping.json").read_text())
    event = json.loads((DATA / "order_completed.json").read_text())
    del event["properties"]["coupon"]
    del event["context"]["locale"]
    out = compile_mapping(mapping)(event)
    assert "coupon" not in out["event"]["event_params"]
    assert "locale" not in out["attributes"]
    assert out["event"]["event_params"]["order_id"] == "50314b8e9bcf000000000000"


def test_null_values_are_omitted_but_other_falsy_values_kept() -> None:
    fields = {k: k for k in ["n", "f", "z", "s", "l", "o"]} | {"missing": "nope"}
    out = compile_mapping(fields)({"n": None, "f": False, "z": 0, "s": "", "l": [], "o": {}})
    assert out == {"f": False, "z": 0, "s": "", "l": [], "o": {}}


def test_nested_targets_and_empty_parents_left_out() -> None:
    fields = {"a.b.c": "x", "a.b.d": "y", "a.e": "z", "p.q": "missing"}
    assert compile_mapping(fields)({"x": 1, "y": 2, "z": 3}) == {
        "a": {"b": {"c": 1, "d": 2}, "e": 3}
    }
    assert compile_mapping(fields)({"z": 3}) == {"a": {"e": 3}}
    assert compile_mapping(fields)({}) == {}


def test_nested_tables_equal_dotted_keys() -> None:
    nested = {"a": {"b": "x", "c.d": "y"}}
    assert compile_mapping(nested)({"x": 1, "y": 2}) == {"a": {"b": 1, "c.d": 2}}
    assert merge_mapping(nested, {"a.b": "y"}) == {"a.b": "y", "a.c\\.d": "y"}


def test_escaped_dots_in_target_names() -> None:
    out = compile_mapping({"attributes.a\\.b": "x", "c\\\\d": "x"})({"x": 1})
    assert out == {"attributes": {"a.b": 1}, "c\\d": 1}
    assert parse_path("a\\.b.c") == ("a.b", "c")
    assert format_path(("a.b", "c\\")) == "a\\.b.c\\\\"
    assert parse_path(format_path(("x.y", "z"))) == ("x.y", "z")
    assert parse_path(".") == ()
    for bad in ["a..b", ".a", "a.", "a\\b", "a\\"]:
        with pytest.raises(ValueError):  # noqa: PT011
            parse_path(bad)


def test_dot_target_is_the_whole_output() -> None:
    event = {"type": "track", "properties": {"a": 1}}
    copy = compile_mapping({".": "@"})
    assert copy(event) == event
    assert compile_mapping({".": "properties"})(event) == {"a": 1}
    assert compile_mapping({".": "missing"})(event) is None


def test_dot_target_with_fields_copies_on_write() -> None:
    event = {"type": "track", "properties": {"a": 1}, "n": None}
    transform = compile_mapping({".": "@", "properties.b": "type", "extra": "type", "x": "nope"})
    out = transform(event)
    assert out == {
        "type": "track",
        "properties": {"a": 1, "b": "track"},
        "n": None,
        "extra": "track",
    }
    assert event == {"type": "track", "properties": {"a": 1}, "n": None}
    assert compile_mapping({".": "missing", "k": "type"})(event) == {"k": "track"}


def test_where_drops_events() -> None:
    transform = compile_mapping({"e": "event"}, where="type == 'track' && event")
    assert transform({"type": "track", "event": "A"}) == {"e": "A"}
    assert transform({"type": "identify"}) is None
    assert transform({"type": "track", "event": ""}) is None
    assert compile_mapping({"e": "event"}, where="count")({"count": 0, "event": "A"}) == {"e": "A"}


def test_merge_overrides_replace_add_and_remove() -> None:
    default = {"a.x": "x", "a.y": "y", "b": "b", "c.d.e": "e"}
    merged = merge_mapping(default, {"a.x": "other", "new.f": "f", "b": "", "c": "c"})
    assert merged == {"a.x": "other", "a.y": "y", "new.f": "f", "c": "c"}
    assert merge_mapping(default, {"a": ""}) == {"b": "b", "c.d.e": "e"}
    assert merge_mapping(default, {"b.z": "z"}) == {
        "a.x": "x",
        "a.y": "y",
        "c.d.e": "e",
        "b.z": "z",
    }
    assert merge_mapping(default, {"missing": ""}) == default
    assert merge_mapping({".": "@"}, {"extra": "type"}) == {".": "@", "extra": "type"}
    assert list(merge_mapping(default, {"a.x": "z"})) == ["a.x", "a.y", "b", "c.d.e"]


def test_empty_expression_means_no_field() -> None:
    assert compile_mapping({"a": "x", "b": ""})({"x": 1}) == {"a": 1}


def test_tables_and_lookup() -> None:
    tables = {"events": {"Order Completed": "purchase", "1": "one"}}
    transform = compile_mapping(
        {
            "name": "lookup('events', event, event)",
            "plain": "lookup('events', event)",
            "number": "lookup('events', n)",
        },
        tables=tables,
    )
    assert transform({"event": "Order Completed", "n": 1}) == {
        "name": "purchase",
        "plain": "purchase",
        "number": "one",
    }
    assert transform({"event": "Other"}) == {"name": "Other"}
    with pytest.raises(crossdock.MappingError) as info:
        compile_mapping({"a": "lookup('nope', event)"}, tables=tables)
    assert info.value.path == "a"
    assert "no table named 'nope'" in info.value.message


def test_custom_functions() -> None:
    event = {
        "ts": "2026-11-22T14:00:00.5+02:00",
        "n": "42",
        "name": "Jane",
        "phone": "+1 (555) 123-4567",
        "tags": ["a", 1, None],
    }
    out = compile_mapping(
        {
            "iso": "iso_time(ts)",
            "rfc": "rfc3339(ts)",
            "ms": "epoch_ms(ts)",
            "s": "epoch(`1700000000.9`)",
            "lower": "lower(name)",
            "upper": "upper(name)",
            "int": "to_int(n)",
            "float": "to_float(n)",
            "bad": "number(name)",
            "fallback": "number(name, `0`)",
            "default": "default(missing, 'x')",
            "array": "array(name)",
            "phone": "e164(phone)",
            "joined": "string_join('-', tags)",
        }
    )(event)
    assert out == {
        "iso": "2026-11-22T12:00:00.500Z",
        "rfc": "2026-11-22T12:00:00Z",
        "ms": 1795348800500,
        "s": 1700000000,
        "lower": "jane",
        "upper": "JANE",
        "int": 42,
        "float": 42.0,
        "fallback": 0,
        "default": "x",
        "array": ["Jane"],
        "phone": "+15551234567",
        "joined": "a-1",
    }


def test_per_mapping_functions_and_interpreter_agree() -> None:
    def shout(value: Any, suffix: Any = "!") -> Any:
        return None if value is None else f"{value}{suffix}"

    functions = {"shout": shout}
    transform = compile_mapping({"a": "shout(name)", "b": "shout(name, '?')"}, functions=functions)
    assert transform({"name": "hi"}) == {"a": "hi!", "b": "hi?"}
    assert transform.functions is not None
    options = jmespath.Options(custom_functions=transform.functions)
    assert jmespath.search("shout(name)", {"name": "x"}, options=options) == "x!"
    with pytest.raises(crossdock.MappingError, match="cannot take 3"):
        compile_mapping({"a": "shout(a, b, c)"}, functions=functions)


@pytest.mark.filterwarnings("ignore:crossdock.register_function:DeprecationWarning")
def test_plugin_registered_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deprecated global registry still works (its warning is tested in
    test_mapping_sections.py)."""
    monkeypatch.setattr(jfunctions, "_REGISTRY", dict(jfunctions._REGISTRY))
    register_function("vendor_id", lambda v: f"v-{v}", ["string"])
    transform = compile_mapping({"id": "vendor_id(userId)"})
    assert transform({"userId": "u1"}) == {"id": "v-u1"}
    with pytest.raises(crossdock.MappingError) as info:
        transform({"userId": 5})
    assert info.value.path == "id"
    assert "vendor_id(): invalid type number" in info.value.message
    with pytest.raises(ValueError, match="already registered"):
        register_function("vendor_id", lambda v: v)
    with pytest.raises(ValueError, match="built-in"):
        register_function("length", lambda v: v)
    with pytest.raises(ValueError, match="unknown JMESPath type"):
        register_function("x_y", lambda v: v, ["strin"])


def test_runtime_errors_name_the_field_without_values() -> None:
    transform = compile_mapping({"ok": "a", "len": "length(secret)"})
    with pytest.raises(crossdock.MappingError) as info:
        transform({"a": 1, "secret": 12345})
    assert info.value.path == "len"
    assert "12345" not in str(info.value)
    assert isinstance(info.value.__cause__, jmespath.exceptions.JMESPathTypeError)


def test_invalid_expressions_raise_mapping_error() -> None:
    with pytest.raises(crossdock.MappingError) as info:
        compile_mapping({"good": "a", "bad.key": "foo.[sekr3t"})
    assert info.value.path == "bad.key"
    assert info.value.message.startswith("invalid JMESPath:")
    assert "sekr3t" not in str(info.value)
    with pytest.raises(crossdock.MappingError) as info:
        compile_mapping({"a": "a"}, where="type ==")
    assert info.value.path == "where"
    with pytest.raises(crossdock.MappingError, match="unknown function nope"):
        compile_mapping({"a": "nope(a)"})
    with pytest.raises(crossdock.MappingError, match="takes 1 argument"):
        compile_mapping({"a": "length(a, b)"})
    with pytest.raises(crossdock.MappingError, match="expected a JMESPath expression"):
        compile_mapping({"a": 3})
    with pytest.raises(crossdock.MappingError, match="invalid target path"):
        compile_mapping({"a..b": "x"})
    with pytest.raises(crossdock.MappingError, match="conflicts"):
        compile_mapping({"a": "x", "a.b": "y"})
    with pytest.raises(crossdock.MappingError, match="conflicts"):
        compile_mapping({"a.b": "y", "a": "x"})
    with pytest.raises(crossdock.MappingError):
        compile_expression("a.[", path="sources[0].mapping.x")


def test_validate_mapping_reports_every_problem_with_paths() -> None:
    problems = validate_mapping(
        {"ok": "a", "bad": "a.[", "fn": "nope()", "x..y": "a", "lex": "a $ b", "t": 1, "gone": ""},
        "destinations[0].mapping",
    )
    assert problems == [
        "destinations[0].mapping.bad: invalid JMESPath: incomplete expression",
        "destinations[0].mapping.fn: unknown function nope()",
        "destinations[0].mapping.x..y: invalid target path: empty segment in target path",
        "destinations[0].mapping.lex: invalid JMESPath: Unknown token $ at column 2",
        "destinations[0].mapping.t: expected a JMESPath expression (a string)",
    ]
    assert validate_mapping({"a": "x", "a.b": "y"}, "m") == ["m.a.b: conflicts with target 'a'"]
    assert validate_mapping({"a": "x"}, "m") == []
    assert validate_expression("type ==", "destinations[1].where") == [
        "destinations[1].where: invalid JMESPath: incomplete expression"
    ]
    assert validate_mapping({"a": "lookup('t', x)"}, "m", tables={"t": {}}) == []
    assert validate_mapping({"a": "lookup('t', x)"}, "m") == ["m.a: lookup(): no table named 't'"]


def test_compile_expression_matches_search() -> None:
    fn = compile_expression("people[?age > `20`].name | sort(@)")
    data = {"people": [{"name": "b", "age": 30}, {"name": "a", "age": 40}, {"name": "c"}]}
    assert fn(data) == ["a", "b"] == jmespath.search("people[?age > `20`].name | sort(@)", data)
    assert compile_expression("lookup('t', k)", tables={"t": {"x": 1}})({"k": "x"}) == 1


@pytest.fixture
def mapping_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "crossdock_test_mapping_pkg"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mapping.toml").write_text(
        textwrap.dedent(
            """
            "identifiers.uuid" = "userId"
            'attributes.a\\.b' = "traits.ab"
            "event.name" = "lookup('events', event, event)"

            [attributes]
            email = "traits.email"

            [tables.events]
            "Order Completed" = "purchase"
            """
        )
    )
    (pkg / "broken.toml").write_text('"a" = "foo.["\n')
    (pkg / "badtoml.toml").write_text("a = \n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_mapping_from_package_data(mapping_package: str) -> None:
    file = load_mapping_file(mapping_package)
    assert file.fields == {
        "identifiers.uuid": "userId",
        "attributes.a\\.b": "traits.ab",
        "event.name": "lookup('events', event, event)",
        "attributes.email": "traits.email",
    }
    assert file.tables == {"events": {"Order Completed": "purchase"}}
    assert load_mapping(mapping_package) == file.fields
    transform = compile_mapping(file.fields, tables=file.tables)
    event = {"userId": "u", "traits": {"ab": 1, "email": "e"}, "event": "Order Completed"}
    assert transform(event) == {
        "identifiers": {"uuid": "u"},
        "attributes": {"a.b": 1, "email": "e"},
        "event": {"name": "purchase"},
    }


def test_load_mapping_errors(mapping_package: str) -> None:
    with pytest.raises(crossdock.MappingError) as info:
        load_mapping(mapping_package, "broken.toml")
    assert info.value.path == f"{mapping_package}/broken.toml:a"
    with pytest.raises(crossdock.MappingError, match="cannot read mapping file"):
        load_mapping(mapping_package, "badtoml.toml")
    with pytest.raises(crossdock.MappingError, match="cannot read mapping file"):
        load_mapping(mapping_package, "missing.toml")


def test_default_transformer_hook() -> None:
    from crossdock.transform import default as jmespath_transform
    from crossdock.types import Destination, DestinationType

    dtype = DestinationType(name="x", settings=object, description="x")
    destination = Destination(
        id="d",
        plugin="x",
        type=dtype,
        settings=None,
        mapping={"name": "lookup('t', event, event)", "uid": "userId"},
        tables={"t": {"A": "a"}},
        where="type == 'track'",
    )
    transform = jmespath_transform.crossdock_make_transformer(destination)
    assert transform({"type": "track", "event": "A", "userId": "u"}) == {"name": "a", "uid": "u"}
    assert transform({"type": "identify", "userId": "u"}) is None
    assert isinstance(transform, crossdock.Transformer)
    assert crossdock.compile_mapping is compile_mapping


def test_matches_tells_a_false_where_from_an_empty_payload() -> None:
    mapping = compile_mapping({".": "payload"}, where="type == 'track'")
    assert mapping({"type": "track"}) is None
    assert mapping.matches({"type": "track"}) is True
    assert mapping.matches({"type": "page"}) is False
    assert compile_mapping({"a": "b"}).matches({}) is True
