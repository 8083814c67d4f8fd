"""Sectioned mappings: sections, dispatch, drop reasons, overrides, type functions, docs."""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

import crossdock
from crossdock.config.load import parse_config
from crossdock.errors import ConfigError
from crossdock.plugins.registry import load_registry
from crossdock.testing.events import golden_event, golden_events
from crossdock.transform.jmes import functions as jfunctions

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mappings.md"

# A segmentify-like mapping: common fields, dispatch through two tables, sections, a dropped kind.
SEGMENTIFY_LIKE = textwrap.dedent(
    """
    name = "`null`"
    step = "`null`"
    userId = "userId || anonymousId"
    pageUrl = "context.page.url"

    [dispatch]
    select = "type == 'track' && lookup('events', event) || lookup('types', type)"

    [sections.page_view.fields]
    name = "'PAGE_VIEW'"
    category = "properties.category || name"

    [sections.checkout_purchase]
    where = "properties.order_id != `null`"
    [sections.checkout_purchase.fields]
    name = "'CHECKOUT'"
    step = "'purchase'"
    orderNo = "vendor_id(properties.order_id)"
    pageUrl = ""

    [sections.custom_event.fields]
    name = "'CUSTOM_EVENT'"
    type = "event"

    [sections.group]
    drop = true

    [tables.types]
    page = "page_view"
    track = "custom_event"
    group = "group"
    identify = ""

    [tables.events]
    "Order Completed" = "checkout_purchase"
    """
)


def vendor_id(value: Any) -> str | None:
    return None if value is None else f"v-{value}"


FUNCTIONS = [crossdock.JmesFunction.create("vendor_id", vendor_id, ["any"])]


def spec() -> crossdock.MappingFile:
    return crossdock.parse_mapping(SEGMENTIFY_LIKE, functions=FUNCTIONS)


def compiled(where: str | None = None) -> crossdock.SectionedMapping:
    made = crossdock.compile_spec(spec(), where=where, functions=FUNCTIONS)
    assert isinstance(made, crossdock.SectionedMapping)
    return made


# -- routing ---------------------------------------------------------------------------------


def test_golden_events_route_to_their_sections() -> None:
    m = compiled()
    page = m(golden_event("page"))
    assert list(page) == ["name", "userId", "pageUrl", "category"]  # common order, name first
    assert page["name"] == "PAGE_VIEW"
    order = golden_event("order_completed")
    assert m(order) == {
        "name": "CHECKOUT",
        "step": "purchase",
        "userId": order["userId"],
        "orderNo": f"v-{order['properties']['order_id']}",
    }  # pageUrl removed by the section's ""
    custom = m(golden_event("product_viewed"))
    assert (custom["name"], custom["type"]) == ("CUSTOM_EVENT", "Product Viewed")
    assert m.section_of(golden_event("page")) == ("page_view", None)


def test_every_golden_event_maps_or_has_a_reason() -> None:
    m = compiled()
    for slug, event in golden_events().items():
        payload = m(event)
        reason = m.drop_reason(event)
        assert (payload is None) == (reason is not None), slug


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("group", "section group: drop"),
        ("identify", "no section (type identify)"),
        ("alias", "no section (type alias)"),
    ],
)
def test_drop_reasons(slug: str, reason: str) -> None:
    m = compiled()
    assert m(golden_event(slug)) is None
    assert m.drop_reason(golden_event(slug)) == reason
    assert not m.matches(golden_event(slug))  # not for this vendor: counted as filtered


def test_section_where_false_is_named() -> None:
    event = golden_event("order_completed")
    del event["properties"]["order_id"]
    m = compiled()
    assert m(event) is None
    assert m.drop_reason(event) == "section checkout_purchase: where false"
    assert m.matches(event)  # meant for the vendor but unusable: counted as dropped


def test_unknown_section_name_never_shows_event_data() -> None:
    m = crossdock.compile_spec(
        crossdock.MappingFile(
            fields={"a": "event"},
            sections={"x": crossdock.Section(fields={"b": "'x'"})},
            select="event",
        )
    )
    event = golden_event("order_completed")
    assert m(event) is None
    assert m.drop_reason(event) == "unknown section (type track)"
    event["type"] = "secret-data"
    assert m.drop_reason(event) == "unknown section (type other)"


def test_destination_where_first_counts_as_filtered() -> None:
    m = compiled(where="type != 'page'")
    assert m(golden_event("page")) is None
    assert not m.matches(golden_event("page"))
    assert m.drop_reason(golden_event("page")) == "filtered"
    assert m(golden_event("order_completed")) is not None


def test_file_order_first_matching_section_wins() -> None:
    spec = crossdock.parse_mapping(
        textwrap.dedent(
            """
            id = "messageId"
            [sections.purchase]
            where = "event == 'Order Completed'"
            fields.kind = "'purchase'"
            [sections.skip]
            where = "type == 'group'"
            drop = true
            [sections.other_track]
            where = "type == 'track'"
            fields.kind = "'track'"
            """
        )
    )
    m = crossdock.compile_spec(spec)
    assert m(golden_event("order_completed"))["kind"] == "purchase"
    assert m(golden_event("product_viewed"))["kind"] == "track"
    assert m.drop_reason(golden_event("group")) == "section skip: drop"
    assert m.drop_reason(golden_event("identify")) == "no section (type identify)"


def test_plain_mapping_drop_reason() -> None:
    m = crossdock.compile_mapping({".": "properties"}, where="type == 'track'")
    assert m.drop_reason(golden_event("page")) == "filtered"
    assert m.drop_reason(golden_event("identify")) == "filtered"
    assert m.drop_reason(golden_event("order_completed")) is None
    assert crossdock.compile_mapping({".": "nothing"}).drop_reason({}) == "null payload"


def test_routing_is_one_generated_function() -> None:
    m = compiled()
    assert m.source.count("def ") == 1
    assert "_call(" not in m.source  # lookups on literal tables are plain dict lookups


@pytest.mark.parametrize("key", ["a", "zz", 1, 1.5, None, True, ["a"], {"a": 1}])
def test_literal_table_lookup_fast_path_keeps_the_rules(key: Any) -> None:
    tables = {"t": {"a": "A", "1": "one", "true": "T"}}
    fast = crossdock.compile_mapping({"v": "lookup('t', k)"}, tables=tables)
    slow = crossdock.compile_mapping({"v": "lookup('t', k, `null`)"}, tables=tables)
    assert "_call(" not in fast.source
    assert fast({"k": key}) == slow({"k": key})


def test_runtime_error_names_the_section_field() -> None:
    m = crossdock.compile_spec(
        crossdock.MappingFile(
            fields={"id": "messageId"},
            sections={"t": crossdock.Section(fields={"n": "length(properties.revenue)"})},
        )
    )
    with pytest.raises(crossdock.MappingError) as info:
        m(golden_event("order_completed"))
    assert info.value.path == "sections.t.fields.n"


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('[sections.a]\nwhen = "x"', "mapping.toml:sections.a.when"),
        ("[sections.a]\ndrop = 1", "mapping.toml:sections.a.drop"),
        ('[sections.a.fields]\nb = "a.("', "mapping.toml:sections.a.fields.b"),
        ('[sections.a]\nwhere = "("', "mapping.toml:sections.a.where"),
        ('[dispatch]\nselect = "type"', "mapping.toml:dispatch.select"),
        ('[dispatch]\npick = "type"\n[sections.a]', "mapping.toml:dispatch.pick"),
        ('"a.b" = "x"\n[sections.a]', "mapping.toml:a.b"),
        ('[sections."1x"]', "mapping.toml:sections.1x"),
    ],
)
def test_mapping_file_problems_have_paths(text: str, path: str) -> None:
    with pytest.raises(crossdock.MappingError) as info:
        crossdock.parse_mapping(text)
    assert info.value.path == path


def test_unknown_function_is_an_error_unless_declared() -> None:
    with pytest.raises(crossdock.MappingError, match=r"orderNo: unknown function vendor_id\(\)"):
        crossdock.parse_mapping(SEGMENTIFY_LIKE)
    with pytest.raises(crossdock.MappingError, match=r"unknown function vendor_id\(\)"):
        crossdock.compile_spec(spec())
    assert crossdock.compile_spec(spec(), functions=FUNCTIONS)


# -- config overrides ------------------------------------------------------------------------


@frozen
class Settings:
    """Nothing to set."""


def registry(*types: crossdock.DestinationType):
    import types as pytypes

    @crossdock.hookimpl
    def crossdock_destination_types():
        return list(types)

    module = pytypes.ModuleType("sectioned_test_plugin")
    module.crossdock_destination_types = crossdock_destination_types
    return load_registry(entrypoints=False, extra_plugins=[("sectioned", module)])


def vendor_type(name: str = "vendor", **kw: Any) -> crossdock.DestinationType:
    return crossdock.DestinationType(
        name, Settings, "vendor", mapping=spec(), functions=FUNCTIONS, **kw
    )


def config(mapping_toml: str, *, where: str = "") -> crossdock.Destination:
    text = f'[[destinations]]\nid = "v"\nplugin = "vendor"\n{where}\n{mapping_toml}'
    return parse_config(text, registry(vendor_type()), env={}).destinations[0]


def transform(destination: crossdock.Destination) -> Any:
    from crossdock.transform.default import crossdock_make_transformer

    return crossdock_make_transformer(destination=destination)


def test_destination_carries_the_whole_spec_and_the_default_transformer_uses_it() -> None:
    d = config("")
    assert d.spec == spec()
    assert d.mapping == spec().fields  # flattened common fields, as before
    assert d.tables["events"] == {"Order Completed": "checkout_purchase"}
    assert list(d.functions) == FUNCTIONS
    assert transform(d)(golden_event("page"))["name"] == "PAGE_VIEW"


def test_override_shorthand_addresses_a_section_field() -> None:
    d = config(
        '[destinations.mapping]\n"checkout_purchase.orderNo" = "properties.checkout_id"\n'
        '"lang" = "context.locale"\n'
        "[destinations.mapping.page_view]\ncategory = \"'fixed'\""
    )
    t = transform(d)
    order = t(golden_event("order_completed"))
    assert order["orderNo"] == golden_event("order_completed")["properties"]["checkout_id"]
    assert order["lang"] == golden_event("order_completed")["context"]["locale"]
    assert t(golden_event("page"))["category"] == "fixed"


def test_a_dotted_override_for_a_kind_the_tables_name_must_declare_the_section() -> None:
    """``"wishlist.name"`` with a table row naming ``wishlist`` but no such section would
    silently become a common object on every event: ``check`` says to declare the section."""
    text = (
        '[destinations.mapping]\n"wishlist.name" = "\'WISH\'"\n'
        '[destinations.tables.events]\n"Wishlisted" = "wishlist"\n'
    )
    with pytest.raises(ConfigError) as info:
        config(text)
    [problem] = [p for p in info.value.problems if "wishlist" in p]
    assert problem.startswith("destinations[0].mapping.wishlist.name: 'wishlist' is named by")
    assert "[destinations.mapping.sections.wishlist]" in problem
    declared = text + '[destinations.mapping.sections.wishlist.fields]\ntype = "event"\n'
    event = {**golden_event("order_completed"), "event": "Wishlisted"}
    assert transform(config(declared))(event)["name"] == "WISH"


def test_override_sections_and_dispatch() -> None:
    d = config(
        textwrap.dedent(
            """
            [destinations.mapping.sections.page_view]
            where = "properties.path != '/'"
            fields.pageUrl = ""
            [destinations.mapping.sections.identify_user]
            fields.name = "'USER'"
            [destinations.mapping.sections.group]
            drop = false
            [destinations.tables.types]
            identify = "identify_user"
            """
        )
    )
    t = transform(d)
    assert t(golden_event("identify"))["name"] == "USER"
    assert "pageUrl" not in (t(golden_event("page")) or {"pageUrl": None})
    assert t(golden_event("group")) is not None
    assert list(d.sections) == [
        "page_view", "checkout_purchase", "custom_event", "group", "identify_user",
    ]  # fmt: skip
    d = config("[destinations.mapping.dispatch]\nselect = \"'custom_event'\"")
    assert transform(d)(golden_event("page"))["name"] == "CUSTOM_EVENT"


def test_bad_overrides_are_reported_with_their_full_path() -> None:
    with pytest.raises(ConfigError) as info:
        config(
            textwrap.dedent(
                """
                [destinations.mapping]
                "checkout_purchase.orderNo" = "a.("
                [destinations.mapping.sections.page_view]
                colour = "red"
                fields.category = "b.("
                [destinations.mapping.dispatch]
                select = "lookup('nope', type)"
                """
            )
        )
    problems = info.value.problems
    assert any(
        p.startswith("destinations[0].mapping.sections.page_view.fields.category: invalid JMESPath")
        for p in problems
    ), problems
    assert any(
        p.startswith("destinations[0].mapping.checkout_purchase.orderNo: invalid JMESPath")
        for p in problems
    ), problems
    assert "destinations[0].mapping.sections.page_view.colour: unknown key" in "\n".join(problems)
    assert any(
        p.startswith("destinations[0].mapping.dispatch.select: lookup(): no table named")
        for p in problems
    ), problems


def test_where_may_call_the_type_functions() -> None:
    d = config("", where='where = "vendor_id(userId) != `null`"')
    assert transform(d)(golden_event("identify")) is None
    assert transform(d).drop_reason(golden_event("identify")) == "no section (type identify)"


# -- functions ---------------------------------------------------------------------------------


def test_type_functions_are_not_global() -> None:
    assert "vendor_id" not in jfunctions.registered_functions()
    with pytest.raises(crossdock.MappingError, match="unknown function"):
        crossdock.compile_mapping({"a": "vendor_id(userId)"})


def test_a_function_shadowing_a_builtin_or_extra_is_a_problem() -> None:
    for name, what in (("length", "a JMESPath built-in"), ("iso_time", "a Crossdock function")):
        bad = crossdock.JmesFunction.create(name, len, ["any"])
        reg = registry(crossdock.DestinationType("bad", Settings, "x", functions=[bad]))
        assert "bad" not in reg.destination_types
        assert any(f"function {name}() shadows {what}" in p for p in reg.problems), reg.problems


def test_two_types_with_one_function_name_and_different_callables_is_a_problem() -> None:
    other = crossdock.JmesFunction.create("vendor_id", lambda v: v, ["any"])
    reg = registry(
        crossdock.DestinationType("one", Settings, "x", functions=FUNCTIONS),
        crossdock.DestinationType("two", Settings, "x", functions=[other]),
        crossdock.DestinationType("three", Settings, "x", functions=FUNCTIONS),
    )
    (problem,) = [p for p in reg.problems if "vendor_id()" in p]
    assert "declared with different callables" in problem
    assert "'one'" in problem
    assert "'two'" in problem
    assert "sectioned" in problem
    assert {"one", "two", "three"} <= set(reg.destination_types)  # each keeps its own function


def test_same_function_shared_by_two_types_is_fine() -> None:
    reg = registry(
        crossdock.DestinationType("one", Settings, "x", functions=FUNCTIONS),
        crossdock.DestinationType("two", Settings, "x", functions=FUNCTIONS),
    )
    assert not [p for p in reg.problems if "vendor_id" in p]


def test_register_function_is_deprecated_but_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jfunctions, "_REGISTRY", dict(jfunctions._REGISTRY))
    with pytest.warns(DeprecationWarning, match=r"JmesFunction\.create") as record:
        crossdock.register_function("old_style", lambda v: f"o-{v}", ["any"])
    assert record[0].filename == __file__  # points at the caller
    assert crossdock.compile_mapping({"a": "old_style(userId)"})({"userId": 1}) == {"a": "o-1"}


def test_register_function_docstring_names_the_public_path() -> None:
    doc = crossdock.register_function.__doc__ or ""
    assert "crossdock.register_function" in doc
    assert "crossdock.transform" not in doc


# -- docs ------------------------------------------------------------------------------------


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)


def test_docs_name_the_public_import_path() -> None:
    guide = (DOCS.parent / "plugin-guide.md").read_text(encoding="utf-8")
    for text in (DOCS.read_text(encoding="utf-8"), guide):
        assert "crossdock.transform." not in text
    assert "crossdock.JmesFunction" in DOCS.read_text(encoding="utf-8")


@pytest.mark.parametrize("index", range(len(_toml_blocks())))
def test_every_toml_example_in_mappings_md_loads_and_compiles(index: int) -> None:
    block = _toml_blocks()[index]
    if "[[destinations]]" in block:
        # an operator's config: against a type with the segmentify-like default mapping
        reg = registry(vendor_type("example"), vendor_type("insider"), vendor_type("segmentify"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = parse_config(block, reg, env={})
        for d in loaded.destinations:
            assert transform(d)(golden_event("order_completed")) is not None or d.where
        return
    made = crossdock.compile_spec(
        crossdock.parse_mapping(block, functions=FUNCTIONS), functions=FUNCTIONS
    )
    for event in golden_events().values():
        made(event)


def test_renamed_override_keys_keep_working_with_a_warning() -> None:
    """A plugin that renamed its fields lists the old keys; operators' old overrides still work
    (prefixes, templates, removals) and are told the new name."""

    @frozen
    class Settings:
        pass

    vendor = crossdock.DestinationType(
        "renamer",
        Settings,
        "renamed fields",
        mapping={"body.source": "'segment'", "claims.user.id": "userId", "body.attrs": "traits"},
        renamed={
            "source": "body.source",
            "user": "claims.user",
            "traits": {"body.attrs": "merge(`{}`, $)"},
        },
    )
    reg = registry(vendor)
    text = (
        '[[destinations]]\nid = "v"\nplugin = "renamer"\n[destinations.mapping]\n'
        'source = "\'crossdock\'"\n"user.id" = "anonymousId"\ntraits = "context.traits"\n'
    )
    with pytest.warns(FutureWarning) as caught:
        [d] = parse_config(text, reg, env={}).destinations
    messages = [str(w.message) for w in caught]
    assert any("destinations[0].mapping.source" in m and "'body.source'" in m for m in messages)
    assert any("'claims.user.id'" in m for m in messages)
    out = transform(d)({"anonymousId": "a1", "context": {"traits": {"plan": "x"}}})
    assert out == {
        "body": {"source": "crossdock", "attrs": {"plan": "x"}},
        "claims": {"user": {"id": "a1"}},
    }
    with pytest.warns(FutureWarning):
        [d] = parse_config(text.replace('"context.traits"', '""'), reg, env={}).destinations
    assert "attrs" not in transform(d)({"traits": {"plan": "x"}})["body"]
