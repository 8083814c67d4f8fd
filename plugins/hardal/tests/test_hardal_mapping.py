"""Golden translations: Hardal bodies (rendered from the README's template, as Hardal posts
them) → the Spec messages the core stores, through the real config loader and ingest handler."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import crossdock_hardal
from crossdock.testing.source_harness import SourceHarness
from crossdock_hardal.testing import TOKEN, hardal_body

SOURCE = f"""
[[sources]]
id = "hardal"
type = "hardal"
token = "{TOKEN}"
"""

CORE = ("receivedAt", "originalTimestamp", "messageId")
ITEMS = [
    {"item_id": "sku-77", "item_name": "Mug", "item_category": "Kitchen", "price": "24.95",
     "quantity": "2", "item_brand": "Acme"},
    {"item_id": 505, "item_name": "Plate", "price": 19, "quantity": 1},
]  # fmt: skip
PRODUCTS = [
    {"product_id": "sku-77", "name": "Mug", "category": "Kitchen", "brand": "Acme",
     "price": 24.95, "quantity": 2},
    {"product_id": "505", "name": "Plate", "price": 19, "quantity": 1},
]  # fmt: skip
PAGE = {"url": "https://shop.example.com/p/sku-77?x=1", "title": "Mug", "referrer": ""}
USER = {"email": "ana@example.com", "first_name": "Ana", "gender": "female", "segments": "vip,eu"}
TRAITS = {"email": "ana@example.com", "firstName": "Ana", "gender": "female",
          "segments": ["vip", "eu"]}  # fmt: skip
CONTEXT = {
    "page": {"url": PAGE["url"], "path": "/p/sku-77", "title": "Mug"},
    "sessionId": "s-9",
    "traits": TRAITS,
    "crossdock": {"source": "hardal", "sources": ["hardal"]},
}


async def stored_for(body: bytes | Any, source: str = SOURCE) -> list[dict[str, Any]]:
    async with SourceHarness(crossdock_hardal, source) as harness:
        status, answer = await harness.post(body, token=TOKEN)
        assert (status, answer) == (200, {"success": True, "accepted": 1}), answer
        return [{k: v for k, v in e.items() if k not in CORE} for e in harness.stored]


def shop(event_name: str, properties: dict[str, Any]) -> bytes:
    return hardal_body(
        event_name, properties, user_id="u-1042", session_id="s-9", page=PAGE, user=USER
    )


def track(event: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "properties": properties,
        "type": "track",
        "event": event,
        "userId": "u-1042",
        "anonymousId": "s-9",
        "timestamp": "2025-03-02T10:15:04.000Z",
        "context": CONTEXT,
    }


ONE_PRODUCT = {"product_id": "sku-77", "name": "Mug", "category": "Kitchen", "brand": "Acme",
               "price": 24.95, "quantity": 2, "currency": "EUR", "value": 49.9}  # fmt: skip

CASES = [
    ("product_view", {"items": ITEMS[:1], "currency": "EUR", "value": "49.90"},
     track("Product Viewed", ONE_PRODUCT)),
    ("view_item", {"items": ITEMS[:1], "currency": "EUR", "value": 49.9},
     track("Product Viewed", ONE_PRODUCT)),
    ("add_to_cart", {"items": ITEMS[:1], "currency": "EUR", "value": "49.9", "cart_id": "c-1"},
     track("Product Added", {**ONE_PRODUCT, "cart_id": "c-1"})),
    ("remove_from_cart", {"item_id": "sku-77", "price": "24.95", "currency": "EUR"},
     track("Product Removed", {"currency": "EUR", "product_id": "sku-77", "price": 24.95})),
    ("view_cart", {"items": ITEMS, "currency": "EUR", "value": "68.90", "cart_id": 12},
     track("Cart Viewed", {"currency": "EUR", "cart_id": "12", "value": 68.9,
                           "products": PRODUCTS})),
    ("begin_checkout", {"items": ITEMS, "currency": "EUR", "value": "68.90"},
     track("Checkout Started", {"currency": "EUR", "value": 68.9, "revenue": 68.9,
                                "products": PRODUCTS})),
    ("checkout_progress", {"step": "2", "items": ITEMS},
     track("Checkout Step Viewed", {"step": 2, "products": PRODUCTS})),
    ("add_shipping_info", {"step": 2, "shipping_tier": "express"},
     track("Checkout Step Completed", {"step": 2, "shipping_method": "express"})),
    ("add_payment_info", {"payment_type": "card", "items": ITEMS, "value": "68.9"},
     track("Payment Info Entered", {"payment_method": "card", "value": 68.9,
                                    "products": PRODUCTS})),
    ("purchase", {"transaction_id": "A-5521", "value": "68.90", "tax": "3.2", "shipping": 0,
                  "currency": "EUR", "coupon": "SPRING", "items": ITEMS},
     track("Order Completed", {"currency": "EUR", "coupon": "SPRING", "order_id": "A-5521",
                               "total": 68.9, "revenue": 68.9, "shipping": 0, "tax": 3.2,
                               "products": PRODUCTS})),
    ("refund", {"transaction_id": 991, "value": "10", "currency": "EUR"},
     track("Order Refunded", {"currency": "EUR", "order_id": "991", "total": 10})),
    ("search", {"search_term": "mug"}, track("Products Searched", {"query": "mug"})),
    ("view_item_list", {"item_list_id": "l-1", "item_list_name": "Kitchen", "items": ITEMS},
     track("Product List Viewed", {"list_id": "l-1", "category": "Kitchen",
                                   "products": PRODUCTS})),
    ("logout", {}, track("Signed Out", {})),
    ("newsletter_opt_in", {"list": "weekly", "value": 3},
     track("newsletter_opt_in", {"list": "weekly"})),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "properties", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_hardal_event_becomes_spec_track(name, properties, expected) -> None:
    assert await stored_for(shop(name, properties)) == [expected]


@pytest.mark.asyncio
async def test_page_view_is_a_page_with_the_page_type_segmentify_needs() -> None:
    [by_property] = await stored_for(shop("page_view", {"page_category": "Product Page"}))
    assert by_property["type"] == "page"
    assert by_property["name"] == "Product Page"
    assert "event" not in by_property
    assert by_property["properties"] == {
        "url": PAGE["url"],
        "path": "/p/sku-77",
        "title": "Mug",
    }
    home = hardal_body("page_view", {}, session_id="s-1", page={"url": "https://shop.example/"})
    [by_path] = await stored_for(home)
    assert by_path["name"] == "Home Page"
    assert by_path["anonymousId"] == "s-1"
    assert "userId" not in by_path


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "event"), [("sign_up", "Signed Up"), ("login", "Signed In")])
async def test_sign_up_and_login_become_identify_then_track(name, event) -> None:
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, answer = await harness.post(shop(name, {"method": "email"}), token=TOKEN)
        assert (status, answer) == (200, {"success": True, "accepted": 1})
        identify, tracked = harness.stored
    assert identify["type"] == "identify"
    assert identify["userId"] == "u-1042"
    assert identify["anonymousId"] == "s-9"
    assert identify["traits"] == TRAITS
    assert identify["timestamp"] == tracked["timestamp"]
    assert identify["messageId"] == tracked["messageId"] + "-identify"
    assert tracked["event"] == event
    assert tracked["properties"] == {"method": "email"}
    assert tracked["context"]["traits"] == TRAITS


@pytest.mark.asyncio
async def test_identify_event_merges_user_attributes_and_properties_into_traits() -> None:
    [identify] = await stored_for(shop("identify", {"last_name": "Silva", "plan": "pro"}))
    assert identify["type"] == "identify"
    assert identify["traits"] == {**TRAITS, "lastName": "Silva", "plan": "pro"}
    assert "traits" not in identify["context"]
    assert "properties" not in identify


@pytest.mark.asyncio
async def test_properties_sent_as_a_json_string_are_read_as_an_object() -> None:
    body = orjson.loads(shop("purchase", {}))
    body["properties"] = orjson.dumps({"transaction_id": "A-1", "value": "5"}).decode()
    [order] = await stored_for(body)
    assert order["properties"] == {"order_id": "A-1", "total": 5, "revenue": 5}


@pytest.mark.asyncio
async def test_empty_variables_are_absent_and_anonymous_visitors_keep_their_session() -> None:
    body = hardal_body("add_to_cart", {"item_id": "p-1", "coupon": ""}, session_id="s-anon")
    [added] = await stored_for(body)
    assert "userId" not in added
    assert added["anonymousId"] == "s-anon"
    assert added["properties"] == {"product_id": "p-1"}
    assert "traits" not in added["context"]
    assert "page" not in added["context"]


@pytest.mark.asyncio
async def test_no_user_nor_session_gets_a_stable_generated_anonymous_id() -> None:
    body = hardal_body("add_to_cart", {"item_id": "p-1"})
    first, second = await stored_for(body), await stored_for(body)
    assert first[0]["anonymousId"].startswith("hardal-anon-")
    assert first[0]["anonymousId"] == second[0]["anonymousId"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2025-03-02T10:15:04", "2025-03-02T10:15:04.000Z"),
        ("2025-03-02 10:15:04.5", "2025-03-02T10:15:04.500Z"),
        ("2025-03-02T12:15:04+02:00", "2025-03-02T10:15:04.000Z"),
        ("", None),
    ],
)
async def test_timestamps_without_zone_are_utc(created_at, expected) -> None:
    [event] = await stored_for(hardal_body("logout", created_at=created_at, session_id="s"))
    assert event.get("timestamp") == expected or expected is None


@pytest.mark.asyncio
async def test_a_resent_event_is_stored_once() -> None:
    body = shop("purchase", {"transaction_id": "A-1", "value": 5})
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        assert (await harness.post(body, token=TOKEN))[0] == 200
        assert (await harness.post(body, token=TOKEN))[0] == 200
        assert len(harness.stored) == 1


OVERRIDES = f"""
[[sources]]
id = "shop"
type = "hardal"
token = "{TOKEN}"
path = "/in/hardal"
[sources.mapping]
"context.channel" = "'web'"
"order_completed.properties.order_id" = "properties.order_number"
[sources.mapping.sections.wishlist.fields]
event = "'Product Added to Wishlist'"
"properties.product_id" = "properties.item_id"
[sources.tables.events]
add_to_wishlist = "wishlist"
tracking_ping = ""
[sources.tables.page_paths]
"/cart" = "Basket Page"
"""


@pytest.mark.asyncio
async def test_operator_overrides_fields_sections_and_tables_from_the_config() -> None:
    async with SourceHarness(crossdock_hardal, OVERRIDES) as harness:
        assert harness.source.path == "/in/hardal"
        for name, properties, page in [
            ("purchase", {"order_number": "N-7", "transaction_id": "T-1"}, None),
            ("add_to_wishlist", {"item_id": "p-9"}, None),
            ("page_view", {}, {"url": "https://shop.example/cart"}),
            ("tracking_ping", {}, None),  # "" in the events table: dropped on purpose
        ]:
            body = hardal_body(name, properties, session_id="s", page=page)
            assert (await harness.post(body, token=TOKEN))[0] == 200
        order, wish, page_event = harness.stored
    assert order["properties"]["order_id"] == "N-7"
    assert order["context"]["channel"] == "web"
    assert wish["event"] == "Product Added to Wishlist"
    assert wish["properties"] == {"product_id": "p-9"}
    assert page_event["name"] == "Basket Page"
