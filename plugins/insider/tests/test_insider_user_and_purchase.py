"""Golden cases for what Insider's guide sends with an order: the user's attributes on every
event, ``quantity`` 1 when a purchase line has none, and a currency only when the event or the
operator gives one (else the event is dead-lettered with the reason ``no currency``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import crossdock
import crossdock_insider
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.harness import DestinationHarness
from crossdock_insider.testing import validate_user

SETTINGS = {"partner_name": "acme", "request_token": "ucd-test-token-0123456789"}

TRAITS = {"email": "ana@example.com", "first_name": "Ana", "last_name": "Silva",
          "gender": "female", "plan": "pro"}  # fmt: skip
ORDER = {"order_id": "A-5521", "currency": "EUR", "products": [
    {"product_id": "sku-77", "name": "Mug", "price": 24.95, "quantity": 2},
    {"product_id": "sku-78", "name": "Plate", "price": 19}]}  # fmt: skip
CONTEXT = {"locale": "pt-PT", "traits": TRAITS}
NO_CURRENCY_NOTE = (
    "no default currency ([destinations.tables.defaults] currency): cart_page_view and "
    "purchase events without a currency are dead-lettered (no currency)"
)


def order(properties: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("context", CONTEXT)
    return track(
        "Order Completed",
        properties=ORDER if properties is None else properties,
        userId="u-1042",
        anonymousId=None,
        timestamp="2025-03-02T10:15:04Z",
        **kwargs,
    )


def harness(**tables: dict[str, Any]) -> DestinationHarness:
    return DestinationHarness(crossdock_insider, SETTINGS, tables=tables)


def purchase(product: str, name: str, price: float, quantity: int) -> dict[str, Any]:
    return {
        "event_name": "purchase",
        "timestamp": "2025-03-02T10:15:04Z",
        "event_params": {
            "event_group_id": "A-5521", "product_id": product, "name": name,
            "currency": "EUR", "unit_price": price, "unit_sale_price": price,
            "quantity": quantity, "custom": {"order_id": "A-5521"},
        },
    }  # fmt: skip


# -- the user's attributes go with every event ---------------------------------------------------

GOLDEN_ORDER = {
    "identifiers": {"uuid": "u-1042", "email": "ana@example.com"},
    "attributes": {
        "email": "ana@example.com",
        "name": "Ana",
        "surname": "Silva",
        "gender": "female",
        "language": "pt_PT",
        "custom": {"plan": "pro"},
    },
    # the Plate line has no quantity: one item, the Spec's default
    "events": [purchase("sku-77", "Mug", 24.95, 2), purchase("sku-78", "Plate", 19.0, 1)],
}


def test_an_order_carries_the_users_attributes_exactly() -> None:
    assert harness().transform(order()) == GOLDEN_ORDER
    assert validate_user(GOLDEN_ORDER) == {}


def test_the_request_body_keeps_insiders_key_order() -> None:
    payload = harness().transform(order())
    assert list(payload) == ["identifiers", "attributes", "events"]


@pytest.mark.parametrize("name", ["Product Viewed", "Signed In", "Newsletter Subscribed"])
def test_every_track_call_carries_the_attributes_of_its_context_traits(name) -> None:
    event = track(name, properties={"product_id": "p-1"}, context={"traits": TRAITS})
    attributes = harness().transform(event)["attributes"]
    # no context.locale: no language; no page-locale-only attributes either
    assert attributes == {k: v for k, v in GOLDEN_ORDER["attributes"].items() if k != "language"}


@pytest.mark.parametrize("context", [{}, {"traits": {}}, {"locale": "en-US"}, {"traits": "x"}])
def test_a_track_call_without_user_traits_sends_no_attributes(context) -> None:
    payload = harness().transform(track("Signed In", context=context))
    assert "attributes" not in payload


def test_identify_traits_are_laid_over_the_context_traits() -> None:
    event = identify(
        {"first_name": "Ana", "plan": "pro"},
        context={"traits": {"first_name": "Old", "last_name": "Silva", "tier": "gold"}},
    )
    attributes = harness().transform(event)["attributes"]
    custom = {"plan": "pro", "tier": "gold"}
    assert attributes == {"name": "Ana", "surname": "Silva", "custom": custom}


def test_an_identify_with_only_context_traits_sends_them() -> None:
    event = identify(None, context={"traits": {"email": "ana@example.com"}}, drop=["traits"])
    assert harness().transform(event)["attributes"] == {"email": "ana@example.com"}


def test_an_operators_attribute_override_applies_to_track_calls_too() -> None:
    h = DestinationHarness(
        crossdock_insider,
        SETTINGS,
        mapping={"attributes.custom.tier": "insider_traits(context.traits, traits).plan"},
    )
    assert h.transform(order())["attributes"]["custom"] == {"tier": "pro"}


# -- quantity --------------------------------------------------------------------------------


def test_a_purchase_without_quantity_sends_one() -> None:
    lines = harness().transform(order({**ORDER, "products": [{"product_id": "a", "price": 2}]}))
    assert [e["event_params"]["quantity"] for e in lines["events"]] == [1]
    assert validate_user(lines) == {}


def test_a_bad_quantity_is_not_turned_into_one() -> None:
    bad = {**ORDER, "products": [{"product_id": "a", "price": 2, "quantity": "many"}]}
    [line] = harness().transform(order(bad))["events"]
    assert "quantity" not in line["event_params"]


def test_other_events_get_no_default_quantity() -> None:
    added = harness().transform(track("Product Added", properties={"product_id": "a"}))
    assert "quantity" not in added["events"][0]["event_params"]


# -- currency ----------------------------------------------------------------------------------


def test_the_plugin_has_no_default_currency() -> None:
    assert crossdock_insider.DESTINATION_TYPE.spec.tables["defaults"] == {}


@pytest.mark.parametrize(
    "event",
    [
        order({k: v for k, v in ORDER.items() if k != "currency"}),
        order({**ORDER, "currency": ""}),
        order({"order_id": "A-9"}),
        golden_event("Cart Viewed"),
    ],
    ids=["order", "empty currency", "order without products", "cart viewed"],
)
def test_an_event_insider_requires_a_currency_for_is_dead_lettered_without_one(event) -> None:
    with pytest.raises(crossdock.Unsendable) as raised:
        harness().transform(event)
    assert raised.value.reason == "no currency"


def test_the_operators_default_currency_is_used_where_it_is_set() -> None:
    # (Cart Viewed's golden body with a default currency: test_insider_mapping.py)
    without = {k: v for k, v in ORDER.items() if k != "currency"}
    lines = harness(defaults={"currency": "TRY"}).transform(order(without))["events"]
    assert {e["event_params"]["currency"] for e in lines} == {"TRY"}
    # the event's own currency wins
    lines = harness(defaults={"currency": "TRY"}).transform(order())["events"]
    assert {e["event_params"]["currency"] for e in lines} == {"EUR"}


def test_a_priced_event_that_needs_no_currency_never_becomes_usd() -> None:
    added = harness().transform(golden_event("Product Added"))
    assert "currency" not in added["events"][0]["event_params"]
    assert validate_user(added) == {}


def test_operators_extend_the_events_that_require_a_currency() -> None:
    h = harness(currency_required={"item_added_to_cart": True, "purchase": False})
    with pytest.raises(crossdock.Unsendable, match=r"^no currency$"):
        h.transform(golden_event("Product Added"))
    without = {k: v for k, v in ORDER.items() if k != "currency"}
    assert "currency" not in h.transform(order(without))["events"][0]["event_params"]


def test_check_notes_a_destination_without_a_default_currency() -> None:
    assert harness().transformer.notes() == [NO_CURRENCY_NOTE]
    assert harness(defaults={"currency": "EUR"}).transformer.notes() == []
    assert isinstance(harness().transformer, crossdock.HasNotes)


def test_the_readme_documents_every_function_and_the_currency_rule() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for function in crossdock_insider.FUNCTIONS:
        assert f"`{function.name}(" in readme, function.name
    flat = " ".join(readme.split())
    assert " ".join(NO_CURRENCY_NOTE.split()) in flat
    assert "dead-lettered with the reason `no currency`" in flat
    assert "a `purchase` line without one sends `1`" in flat
