"""Golden mapping cases: Spec event in → exact Insider user object out, for every mapped type.

Each expected body is also checked against the strict fake's validator, so the defaults produce
what Insider accepts.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

import crossdock
import crossdock_insider
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.harness import DestinationHarness
from crossdock_insider.testing import validate_user

SETTINGS = {"partner_name": "acme", "request_token": "ucd-test-token-0123456789"}
ANON = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"
IDS = {"uuid": "u-1042", "custom": {"segment_anonymous_id": ANON}}
UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
REF = "https://www.google.com/"
MUG = {
    "product_id": "507f1f77bcf86cd799439011",
    "name": "Blue Enamel Mug",
    "taxonomy": ["Kitchen"],
    "unit_price": 14.95,
    "unit_sale_price": 14.95,
    "quantity": 2,
    "product_image_url": "https://cdn.example.com/img/mug-blue.jpg",
    "url": "https://shop.example.com/p/blue-enamel-mug",
    "referrer": REF,
    "user_agent": UA,
}
PLATE = {
    "product_id": "505bd76785ebb509fc183733",
    "name": "Stoneware Plate",
    "taxonomy": ["Kitchen"],
    "unit_price": 19.0,
    "unit_sale_price": 19.0,
    "quantity": 1,
    "product_image_url": "https://cdn.example.com/img/plate-white.jpg",
    "url": "https://shop.example.com/p/stoneware-plate",
    "referrer": REF,
    "user_agent": UA,
}
MUG_CUSTOM = {"sku": "MUG-BLU-350", "brand": "Acme", "variant": "350 ml", "coupon": "SPRING10",
              "position": 1}  # fmt: skip
PLATE_CUSTOM = {"sku": "PLT-WHT-26", "brand": "Acme", "variant": "26 cm", "position": 2}
ORDER_CUSTOM = {
    "checkout_id": "chk-91c", "order_id": "A-5521", "affiliation": "Acme Online",
    "subtotal": 48.9, "total": 56.71, "revenue": 44.01, "shipping": 4.9, "tax": 7.8,
    "discount": 4.89, "coupon": "SPRING10",
}  # fmt: skip


def page_params(path: str) -> dict[str, Any]:
    return {"url": f"https://shop.example.com{path}", "referrer": REF, "user_agent": UA}


def user(*events: dict[str, Any]) -> dict[str, Any]:
    return {"identifiers": IDS, "events": list(events)}


GOLDEN: dict[str, dict[str, Any]] = {
    "identify": {
        "identifiers": {**IDS, "email": "ana.silva@example.com", "phone_number": "+49301234567"},
        "attributes": {
            "email": "ana.silva@example.com",
            "phone_number": "+49301234567",
            "name": "Ana",
            "surname": "Silva",
            "birthday": "1990-04-12T00:00:00Z",
            "gender": "female",
            "city": "Berlin",
            "country": "DE",
            "language": "en_US",
            "custom": {
                "name": "Ana Silva",
                "plan": "pro",
                "createdat": "2024-11-05T08:30:00.000Z",
                "company_name": "Acme GmbH",
                "company_id": "c-77",
                "company_industry": "Retail",
                "company_employee_count": 40,
                "company_plan": "enterprise",
                "username": "anasilva",
                "website": "https://ana.example.com",
            },
        },
    },
    "Order Completed": user(
        {
            "event_name": "purchase",
            "timestamp": "2025-03-02T10:15:21Z",
            "event_params": {
                "event_group_id": "A-5521",
                **MUG,
                "currency": "EUR",
                "custom": {**ORDER_CUSTOM, **MUG_CUSTOM},
            },
        },
        {
            "event_name": "purchase",
            "timestamp": "2025-03-02T10:15:21Z",
            "event_params": {
                "event_group_id": "A-5521",
                **PLATE,
                "currency": "EUR",
                "custom": {**ORDER_CUSTOM, **PLATE_CUSTOM},
            },
        },
    ),
    "Product List Viewed": user(
        {
            "event_name": "listing_page_view",
            "timestamp": "2025-03-02T10:15:08Z",
            "event_params": {
                "taxonomy": ["Kitchen"],
                **page_params("/mugs"),
                "custom": {"list_id": "hot_deals_1"},
            },
        },
    ),
    "Product Viewed": user(
        {
            "event_name": "product_detail_page_view",
            "timestamp": "2025-03-02T10:15:13Z",
            "event_params": {**MUG, "currency": "EUR", "custom": {**MUG_CUSTOM, "value": 14.95}},
        },
    ),
    "Product Added": user(
        {
            "event_name": "item_added_to_cart",
            "timestamp": "2025-03-02T10:15:14Z",
            "event_params": {
                "event_group_id": "cart-3f2a",
                **MUG,
                "custom": {**MUG_CUSTOM, "cart_id": "cart-3f2a"},
            },
        },
    ),
    "Product Removed": user(
        {
            "event_name": "item_removed_from_cart",
            "timestamp": "2025-03-02T10:15:15Z",
            "event_params": {
                "event_group_id": "cart-3f2a",
                **PLATE,
                "custom": {**PLATE_CUSTOM, "cart_id": "cart-3f2a"},
            },
        },
    ),
    "Checkout Started": user(
        {
            "event_name": "checkout_page_view",
            "timestamp": "2025-03-02T10:15:17Z",
            "event_params": {
                "event_group_id": "A-5521",
                "currency": "EUR",
                **page_params("/checkout"),
                "custom": {
                    "order_id": "A-5521",
                    "affiliation": "Acme Online",
                    "value": 48.9,
                    "revenue": 44.01,
                    "shipping": 4.9,
                    "tax": 7.8,
                    "discount": 4.89,
                    "coupon": "SPRING10",
                },
            },
        },
    ),
    "Checkout Step Viewed": user(
        {
            "event_name": "checkout_page_view",
            "timestamp": "2025-03-02T10:15:18Z",
            "event_params": {
                "event_group_id": "chk-91c",
                **page_params("/checkout/shipping"),
                "custom": {
                    "checkout_id": "chk-91c",
                    "step": 2,
                    "shipping_method": "DHL",
                    "payment_method": "Visa",
                },
            },
        },
    ),
    "Signed Up": user(
        {
            "event_name": "sign_up_confirmation",
            "timestamp": "2025-03-02T10:15:35Z",
            "event_params": {
                **page_params("/signup"),
                "custom": {
                    "type": "organic",
                    "first_name": "Ana",
                    "last_name": "Silva",
                    "email": "ana.silva@example.com",
                    "username": "anasilva",
                    "title": "Head of Ops",
                },
            },
        },
    ),
    # any other event: its name in Insider's form, properties under custom
    "track": user(
        {
            "event_name": "newsletter_subscribed",
            "timestamp": "2025-03-02T10:15:02Z",
            "event_params": {
                **page_params("/"),
                "custom": {"list_id": "weekly", "source": "footer"},
            },
        },
    ),
}


# Cart Viewed carries no currency, which Insider requires: sent only with a default currency
# ([destinations.tables.defaults] currency), else dead-lettered (see the currency tests).
CART_VIEWED_EUR = user(
    {
        "event_name": "cart_page_view",
        "timestamp": "2025-03-02T10:15:16Z",
        "event_params": {
            "event_group_id": "cart-3f2a",
            **MUG,
            "currency": "EUR",
            "custom": {"cart_id": "cart-3f2a", **MUG_CUSTOM},
        },
    },
    {
        "event_name": "cart_page_view",
        "timestamp": "2025-03-02T10:15:16Z",
        "event_params": {
            "event_group_id": "cart-3f2a",
            **PLATE,
            "currency": "EUR",
            "custom": {"cart_id": "cart-3f2a", **PLATE_CUSTOM},
        },
    },
)


@pytest.fixture
def harness() -> DestinationHarness:
    return DestinationHarness(crossdock_insider, SETTINGS)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_event_maps_to_exact_user_object(harness, name) -> None:
    assert harness.transform(golden_event(name)) == GOLDEN[name]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_bodies_pass_insiders_validation(name) -> None:
    assert validate_user(GOLDEN[name]) == {}


def test_golden_cart_viewed_with_the_operators_default_currency() -> None:
    h = DestinationHarness(crossdock_insider, SETTINGS, tables={"defaults": {"currency": "EUR"}})
    assert h.transform(golden_event("Cart Viewed")) == CART_VIEWED_EUR
    assert validate_user(CART_VIEWED_EUR) == {}
    with pytest.raises(crossdock.Unsendable, match=r"^no currency$"):
        DestinationHarness(crossdock_insider, SETTINGS).transform(golden_event("Cart Viewed"))


@pytest.mark.parametrize(
    ("spec", "insider"),
    [
        ("Viewed Product Category", "listing_page_view"),
        ("Viewed Product", "product_detail_page_view"),
        ("Added Product", "item_added_to_cart"),
        ("Removed Product", "item_removed_from_cart"),
        ("Started Order", "checkout_page_view"),
        ("Viewed Checkout Step", "checkout_page_view"),
        ("Completed Order", "purchase"),
        ("User Registered", "sign_up_confirmation"),
    ],
)
def test_v1_aliases_and_other_table_names(harness, spec, insider) -> None:
    properties = {"order_id": "o-1", "price": 2, "currency": "EUR"}
    payload = harness.transform(track(spec, properties=properties))
    assert payload["events"][0]["event_name"] == insider


@pytest.mark.parametrize("kind", ["page", "screen", "group", "alias"])
def test_calls_without_attributes_or_events_are_dropped(harness, kind) -> None:
    assert harness.transform(golden_event(kind)) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Newsletter Subscribed", "newsletter_subscribed"),
        ("  Video   Played ", "video_played"),
        ("homepageView", "homepageview"),
        ("Plan: Pro (annual)!", "plan_pro_annual"),
        ("__Internal.Event-2", "internal.event-2"),
        ("Ünïcode Event", "ncode_event"),
        ("!!!", None),
    ],
)
def test_event_names_are_put_in_insiders_form(harness, name, expected) -> None:
    if expected is None:
        with pytest.raises(crossdock.Unsendable):
            harness.transform(track(name))
    else:
        assert harness.transform(track(name))["events"][0]["event_name"] == expected


NAME_REASON = "no event name Insider accepts (lower case [a-z0-9._-], a letter or digit first)"


@pytest.mark.parametrize("name", ["!!!", "", None])
def test_an_event_name_with_nothing_valid_is_dead_lettered_with_the_rule(harness, name) -> None:
    with pytest.raises(crossdock.Unsendable) as raised:
        harness.transform(track(name))
    assert raised.value.reason == NAME_REASON


def test_order_without_products_sends_one_purchase_that_insider_would_refuse(harness) -> None:
    event = track("Order Completed", properties={"order_id": "A-1", "total": 5, "currency": "EUR"})
    payload = harness.transform(event)
    assert [e["event_name"] for e in payload["events"]] == ["purchase"]
    assert payload["events"][0]["event_params"]["quantity"] == 1
    assert validate_user(payload) == {
        "events.0.event_params.*.required": [
            "unit_sale_price parameter is required on purchase event"
        ]
    }


def test_per_product_events_can_be_switched_off_and_on_by_table(harness) -> None:
    order = golden_event("Order Completed")
    off = DestinationHarness(
        crossdock_insider, SETTINGS, tables={"per_product_events": {"purchase": False}}
    )
    assert len(off.transform(order)["events"]) == 1
    shared = DestinationHarness(
        crossdock_insider,
        SETTINGS,
        tables={"per_product_events": {"cart_shared": True}},
    )
    events = shared.transform(golden_event("Cart Shared"))["events"]
    assert [e["event_params"]["product_id"] for e in events] == [
        "507f1f77bcf86cd799439011",
        "505bd76785ebb509fc183733",
    ]
    assert {e["event_params"]["event_group_id"] for e in events} == {"cart-3f2a"}


def test_operators_extend_the_event_name_table(harness) -> None:
    custom = DestinationHarness(
        crossdock_insider,
        SETTINGS,
        tables={
            "event_names": {"Order Completed": "confirmation_page_view", "Renewed": "Plan Renewal"}
        },
    )
    order = custom.transform(golden_event("Order Completed"))
    assert [e["event_name"] for e in order["events"]] == ["confirmation_page_view"]
    # names from the table are normalised too
    assert custom.transform(track("Renewed"))["events"][0]["event_name"] == "plan_renewal"


def configured(overrides: dict[str, str], **kwargs: Any) -> DestinationHarness:
    """A harness whose mapping is merged like ``[destinations.mapping]`` in a config."""
    return DestinationHarness(crossdock_insider, SETTINGS, mapping=overrides, **kwargs)


def test_mapping_overrides_replace_add_and_remove_fields() -> None:
    h = configured(
        {
            "attributes.custom.tier": "traits.plan",  # explicit custom: no automatic rest
            "attributes.gender": "",  # removed
            "identifiers.custom.segment_anonymous_id": "",
            "identifiers.custom.anon": "anonymousId",  # the anonymous identifier renamed
            "event.event_params.custom.sku": "properties.sku",
        }
    )
    person = h.transform(golden_event("identify"))
    assert person["attributes"]["custom"] == {"tier": "pro"}
    assert "gender" not in person["attributes"]
    assert person["identifiers"]["custom"] == {"anon": ANON}
    viewed = h.transform(golden_event("Product Viewed"))
    assert viewed["events"][0]["event_params"]["custom"] == {"sku": "MUG-BLU-350"}


def test_where_filters_and_matches_tells_the_worker(harness) -> None:
    h = DestinationHarness(crossdock_insider, SETTINGS, where="type == 'identify'")
    assert h.transform(golden_event("Order Completed")) is None
    assert h.transformer.matches(golden_event("Order Completed")) is False
    assert h.transform(golden_event("identify")) is not None
    assert harness.transformer.matches(golden_event("identify")) is True
    # page/screen/group/alias: routed to no section; whether that counts as filtered or
    # dropped is the core's rule for sectioned mappings (see the drop reason test below)


def test_not_append_setting_goes_on_every_user_object() -> None:
    h = DestinationHarness(crossdock_insider, {**SETTINGS, "not_append": True})
    assert h.transform(golden_event("identify"))["not_append"] is True
    assert h.transform(golden_event("Signed Up"))["not_append"] is True


def test_not_append_false_is_left_out(harness) -> None:
    assert "not_append" not in harness.transform(golden_event("identify"))


def test_identifiers_are_cleaned_to_what_insider_accepts(harness) -> None:
    event = identify(
        {"email": "not-an-email", "phone": "12345", "firstName": "Ana"},
        userId="u-9",
        anonymousId=None,
    )
    payload = harness.transform(event)
    assert payload["identifiers"] == {"uuid": "u-9"}
    assert payload["attributes"] == {"email": "not-an-email", "name": "Ana", "language": "en_US"}
    numeric = harness.transform(identify({"plan": "x"}, userId=12345))
    assert numeric["identifiers"]["uuid"] == "12345"


def test_phone_numbers_become_e164(harness) -> None:
    payload = harness.transform(identify({"phone": "0049 (30) 123-4567"}))
    assert payload["identifiers"]["phone_number"] == "+49301234567"
    assert payload["attributes"]["phone_number"] == "+49301234567"


def test_track_calls_use_context_traits_as_identifiers(harness) -> None:
    event = track("Signed In", context={"traits": {"email": "a@b.co", "phone": "+905321234567"}})
    assert harness.transform(event)["identifiers"] == {
        "uuid": "u-1042",
        "email": "a@b.co",
        "phone_number": "+905321234567",
        "custom": {"segment_anonymous_id": ANON},
    }


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"birthday": "1993-03-12T15:30:00+02:00"}, {"birthday": "1993-03-12T00:00:00Z"}),
        ({"birthday": "12/03/1993"}, {}),
        ({"address": {"country": "Germany"}}, {"country": "DE"}),
        ({"address": {"country": "pt"}}, {"country": "PT"}),
        ({"address": {"country": "Atlantis"}}, {}),
        ({"email_optin": False, "gdpr_optin": True, "sms_optin": "yes"},
         {"email_optin": False, "gdpr_optin": True}),
        ({"age": "33"}, {"age": 33}),
        ({"age": "old"}, {}),
        ({"language": "pt-BR"}, {"language": "pt_BR"}),
        ({"first_name": "Ana", "last_name": "Silva"}, {"name": "Ana", "surname": "Silva"}),
    ],
)  # fmt: skip
def test_default_attributes_get_insiders_types(harness, traits, expected) -> None:
    event = identify({**traits, "plan": "pro"}, context={})
    attributes = harness.transform(event)["attributes"]
    attributes.pop("custom")
    assert attributes == expected


def test_custom_attributes_keys_and_values_are_normalised(harness) -> None:
    event = identify(
        {"Loyalty Tier": "Gold", "tags": ["a", "b"], "orders": [{"id": 1}], "nothing": None,
         "prefs": {"Color Scheme": "dark", "deep": {"x": 1}}},
        context={},
    )  # fmt: skip
    assert harness.transform(event)["attributes"] == {
        "custom": {"loyalty_tier": "Gold", "tags": ["a", "b"], "prefs_color_scheme": "dark"}
    }


def test_identify_without_traits_is_dropped(harness) -> None:
    assert harness.transform(identify({}, context={})) is None


def test_event_params_get_insiders_types(harness) -> None:
    event = track(
        "Product Viewed",
        properties={"product_id": 42, "price": "9.90", "quantity": "3", "variant": "12",
                    "category": "Mugs", "currency": "EUR"},
        context={},
    )  # fmt: skip
    params = harness.transform(event)["events"][0]["event_params"]
    assert params == {
        "product_id": "42",
        "unit_price": 9.9,
        "unit_sale_price": 9.9,
        "quantity": 3,
        "variant_id": 12,
        "taxonomy": ["Mugs"],
        "currency": "EUR",
    }


def test_default_currency_table_and_no_currency_without_price() -> None:
    h = DestinationHarness(crossdock_insider, SETTINGS, tables={"defaults": {"currency": "TRY"}})
    cart = h.transform(golden_event("Cart Viewed"))
    assert {e["event_params"]["currency"] for e in cart["events"]} == {"TRY"}
    signed_in = h.transform(golden_event("Signed In"))
    assert "currency" not in signed_in["events"][0]["event_params"]


def test_timestamps_are_rfc3339_utc(harness) -> None:
    event = track("Signed In", timestamp="2025-03-02T12:15:04.120+02:00")
    assert harness.transform(event)["events"][0]["timestamp"] == "2025-03-02T10:15:04Z"


# -- the mapping file, its functions and what the transformer adds ----------------------------


def test_other_calls_and_empty_identifies_are_dropped_with_a_reason(harness) -> None:
    for kind in ["page", "screen", "group", "alias"]:
        assert harness.transformer.drop_reason(golden_event(kind)) == f"no section (type {kind})"
    empty = identify({}, context={})
    assert harness.transformer.drop_reason(empty) == "nothing to send (type identify)"
    assert harness.transformer.drop_reason(golden_event("identify")) is None
    h = DestinationHarness(crossdock_insider, SETTINGS, where="type == 'identify'")
    assert h.transformer.drop_reason(golden_event("Order Completed")) == "filtered"


def test_functions_are_declared_with_the_type_not_registered_globally() -> None:
    declared = {f.name for f in crossdock_insider.DESTINATION_TYPE.functions}
    assert declared == {f.name for f in crossdock_insider.FUNCTIONS}
    assert all(name.startswith("insider_") for name in declared)
    # a mapping of another type does not know them
    for name in declared:
        with pytest.raises(crossdock.MappingError, match="unknown function"):
            crossdock.compile_mapping({"x": f"{name}(a)"})


def test_the_mapping_file_has_the_identify_and_track_sections() -> None:
    spec = crossdock_insider.DESTINATION_TYPE.spec
    assert list(spec.sections) == ["identify", "track"]
    assert spec.tables["settings"] == {"not_append": False}


def test_not_append_comes_from_the_settings_table() -> None:
    h = DestinationHarness(
        crossdock_insider,
        {**SETTINGS, "not_append": True},
        tables={"settings": {"not_append": False}},  # replaced by the configured setting
    )
    assert h.transform(golden_event("identify"))["not_append"] is True


def readme_page_section() -> dict[str, Any]:
    """The README's example of a new section (``[destinations.mapping.sections.page]``)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```toml\n  [destinations.mapping.sections.page]", 1)[1]
    text = "[destinations.mapping.sections.page]" + block.split("```", 1)[0]
    return tomllib.loads(textwrap.dedent(text))["destinations"]["mapping"]["sections"]


def test_readme_section_overrides_change_where_and_add_a_kind() -> None:
    h = configured(
        {
            "sections": {
                "track": {"where": "type == 'track' && !starts_with(event, 'Internal ')"},
                **readme_page_section(),
            },
            "track.event.event_params.coupon_code": "properties.coupon",
        }
    )
    assert h.transform(track("Internal Ping")) is None
    assert h.transformer.drop_reason(track("Internal Ping")) == "no section (type track)"
    [viewed] = h.transform(golden_event("Product Viewed"))["events"]
    assert viewed["event_params"]["coupon_code"] == "SPRING10"
    page = h.transform(golden_event("page"))
    assert [e["event_name"] for e in page["events"]] == ["page_view"]
    assert "attributes" not in page
    assert validate_user(page) == {}


def test_an_override_calls_the_plugins_functions() -> None:
    h = configured({"attributes.birthday": "insider_date(traits.dob)"})
    person = h.transform(identify({"dob": "1990-04-12T08:00:00Z"}, context={}))
    assert person["attributes"]["birthday"] == "1990-04-12T00:00:00Z"


def test_an_override_event_name_is_sent_as_it_evaluates_unless_wrapped() -> None:
    # unwrapped: sent, and Insider refuses it (dead-lettered with Insider's message)
    raw = configured({"event.event_name": "event"}).transform(track("Signed In"))
    assert raw["events"][0]["event_name"] == "Signed In"
    assert "invalid event name: Signed In" in str(validate_user(raw))
    # wrapped as the README says: dead-lettered before sending, with the mapping's reason
    wrapped = configured({"event.event_name": "insider_required(event, 'no name')"})
    with pytest.raises(crossdock.Unsendable, match=r"^no name$"):
        wrapped.transform(track(None))


JUNK = [None, "", " ", "x", "1e999", "nan", 0, -1.5, float("inf"), True, [], [None, {}], {"a": {}}]


@pytest.mark.parametrize("function", crossdock_insider.FUNCTIONS, ids=lambda f: f.name)
def test_functions_never_raise_on_data(function) -> None:
    if function.name == "insider_required":  # raises Unsendable on purpose, only when required
        for value in JUNK:
            assert function.fn(value, "why", False) == value
        return
    for value in JUNK:
        function.fn(value)
    if function.name in ("insider_custom", "insider_traits"):
        for other in JUNK:
            function.fn({"a": 1}, other)


@pytest.mark.parametrize(
    ("value", "required", "raises"),
    [(None, True, True), ("", True, True), ("", "yes", True), (None, None, False),
     (None, False, False), (None, "", False), (None, [], False), ("EUR", True, False),
     (0, True, False), (False, True, False)],
)  # fmt: skip
def test_insider_required_dead_letters_a_missing_required_value(value, required, raises) -> None:
    fn = crossdock_insider.functions.insider_required
    if raises:
        with pytest.raises(crossdock.Unsendable) as raised:
            fn(value, "no currency", required)
        assert raised.value.reason == "no currency"
    else:
        assert fn(value, "no currency", required) == value
    with pytest.raises(crossdock.Unsendable, match=r"^missing value$"):
        fn(None, None)


def test_insider_traits_lays_the_second_object_over_the_first() -> None:
    fn = crossdock_insider.functions.insider_traits
    assert fn({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    assert fn("x", {"b": 3}) == {"b": 3}
    assert fn({"a": 1}) == {"a": 1}
    assert fn(None, {}) is None
