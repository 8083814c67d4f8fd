"""End to end with the real daemon: Hardal-shaped bodies (the README's template, rendered as
Hardal does) posted to a ``hardal`` source reach the strict Segmentify and Insider fakes as
their integration guides describe; ``crossdock plugins`` lists the source type."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from typing import Any

import aiohttp

from crossdock.testing.helpers import wait_until
from crossdock_hardal.testing import TOKEN, hardal_body
from crossdock_insider.testing import FakeInsider
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, FakeSegmentify

INSIDER_TOKEN = "ucd-test-token-0123456789"
PAGE = {"url": "https://www.example-shop.com/p/sku-77", "title": "Mug"}
USER = {"email": "ana@example.com", "first_name": "Ana", "last_name": "Silva", "gender": "female"}
ITEM = {"item_id": "sku-77", "item_name": "Mug", "item_category": "Kitchen", "price": "24.95",
        "quantity": "2"}  # fmt: skip
PLATE = {"item_id": "sku-78", "item_name": "Plate", "price": 19, "quantity": 1}


def config(segmentify_url: str, insider_url: str) -> str:
    return f"""
[[sources]]
id = "hardal"
type = "hardal"
token = "{TOKEN}"

[[destinations]]
id = "sfy"
plugin = "segmentify"
[destinations.settings]
api_key = "{DEFAULT_API_KEY}"
data_center_url = "{segmentify_url}"
origin = "{DEFAULT_ORIGIN}"
[destinations.delivery]
max_wait_ms = 50

[[destinations]]
id = "insider"
plugin = "insider"
where = "type == 'track' || type == 'identify'"
[destinations.settings]
partner_name = "acme"
request_token = "{INSIDER_TOKEN}"
base_url = "{insider_url}"
[destinations.tables.defaults]
currency = "EUR"
[destinations.delivery]
max_wait_ms = 50
"""


def shop(name: str, properties: dict[str, Any] | None = None, **kwargs: Any) -> bytes:
    kwargs.setdefault("user_id", "u-1042")
    kwargs.setdefault("session_id", "s-77")
    kwargs.setdefault("page", PAGE)
    return hardal_body(name, properties, **kwargs)


GUIDE_FLOW = [
    shop("page_view", {"page_category": "Home Page"}, user_id="", user={}),
    shop("product_view", {"items": [ITEM], "currency": "EUR", "value": "49.90"}),
    shop("add_to_cart", {"items": [ITEM], "currency": "EUR", "cart_id": "c-1"}),
    shop("remove_from_cart", {"items": [PLATE], "currency": "EUR", "cart_id": "c-1"}),
    shop("view_cart", {"items": [ITEM], "currency": "EUR", "value": "49.90", "cart_id": "c-1"}),
    shop("begin_checkout", {"items": [ITEM], "currency": "EUR", "value": "49.90"}),
    shop("add_payment_info", {"items": [ITEM], "currency": "EUR", "payment_type": "card"}),
    shop("purchase", {"transaction_id": "A-5521", "value": "68.90", "currency": "EUR",
                      "items": [ITEM, PLATE]}, user=USER),
    shop("sign_up", {"method": "email"}, user=USER),
    shop("login", {}, user=USER),
    shop("logout", {}),
]  # fmt: skip


async def post_all(url: str, bodies: list[bytes]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(url + "/hooks/hardal", data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["success"] is True


def test_crossdock_plugins_lists_the_hardal_source_type() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crossdock", "plugins", "--json"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    import orjson

    [row] = [r for r in orjson.loads(out) if r["name"] == "hardal"]
    assert row["distribution"] == "crossdock-hardal"
    assert row["version"] == version("crossdock-hardal")
    assert row["source_types"] == ["hardal"]
    assert row["status"] == "ok"


async def test_the_guides_flow_reaches_segmentify(crossdock_daemon) -> None:
    async with FakeSegmentify() as sfy, FakeInsider(request_token=INSIDER_TOKEN) as insider:
        daemon = crossdock_daemon(config(sfy.url, insider.url))
        await post_all(daemon.url, GUIDE_FLOW)
        # 11 Hardal events; sign_up and login are also identifies (USER_OPERATIONS update)
        await wait_until(lambda: len(sfy.events) >= 13, what="13 events at Segmentify")
    got = [(e["name"], e.get("step")) for e in sfy.events]
    assert sorted(got, key=str) == sorted(
        [("PAGE_VIEW", None), ("PRODUCT_VIEW", None), ("BASKET_OPERATIONS", "add"),
         ("BASKET_OPERATIONS", "remove"), ("CHECKOUT", "view-basket"), ("CHECKOUT", "customer"),
         ("CHECKOUT", "payment-info"), ("CHECKOUT", "purchase"), ("USER_OPERATIONS", "update"),
         ("USER_OPERATIONS", "signup"), ("USER_OPERATIONS", "update"),
         ("USER_OPERATIONS", "signin"), ("USER_OPERATIONS", "signout")],
        key=str,
    )  # fmt: skip
    by_kind = {(e["name"], e.get("step")): e for e in sfy.events}
    page = by_kind[("PAGE_VIEW", None)]
    assert page["category"] == "Home Page"
    assert page["userId"] == "s-77"  # the anonymous visitor is its session
    assert page["pageUrl"] == PAGE["url"]
    assert by_kind[("PRODUCT_VIEW", None)]["productId"] == "sku-77"
    assert by_kind[("PRODUCT_VIEW", None)]["price"] == 24.95
    assert by_kind[("BASKET_OPERATIONS", "add")]["quantity"] == 2
    assert by_kind[("BASKET_OPERATIONS", "remove")]["productId"] == "sku-78"
    purchase = by_kind[("CHECKOUT", "purchase")]
    assert purchase["orderNo"] == "A-5521"
    assert purchase["totalPrice"] == 68.9
    assert purchase["currency"] == "EUR"
    assert purchase["userId"] == "u-1042"
    assert purchase["sessionId"] == "s-77"
    assert purchase["productList"] == [
        {"productId": "sku-77", "price": 24.95, "quantity": 2},
        {"productId": "sku-78", "price": 19, "quantity": 1},
    ]
    signup = by_kind[("USER_OPERATIONS", "signup")]
    assert signup["email"] == "ana@example.com"
    assert signup["fullName"] == "Ana Silva"


async def test_segmentify_signup_carries_gender(crossdock_daemon) -> None:
    async with FakeSegmentify() as sfy, FakeInsider(request_token=INSIDER_TOKEN) as insider:
        daemon = crossdock_daemon(config(sfy.url, insider.url))
        await post_all(daemon.url, [shop("sign_up", {"method": "email"}, user=USER)])
        await wait_until(lambda: len(sfy.events) >= 2, what="identify and signup")
    [signup] = [e for e in sfy.events if e.get("step") == "signup"]
    assert signup["gender"] == "F"


async def test_sign_up_then_purchase_reach_insider_as_the_guides_upsert(crossdock_daemon) -> None:
    async with FakeSegmentify() as sfy, FakeInsider(request_token=INSIDER_TOKEN) as insider:
        daemon = crossdock_daemon(config(sfy.url, insider.url))
        await post_all(daemon.url, [GUIDE_FLOW[8], GUIDE_FLOW[7]])
        await wait_until(lambda: len(insider.events) >= 3, what="sign-up and 2 purchases")
        assert insider.failed_users == []
    identified = [u for u in insider.users if u.get("attributes")]
    assert identified
    assert identified[0]["identifiers"]["uuid"] == "u-1042"
    assert identified[0]["identifiers"]["email"] == "ana@example.com"
    assert identified[0]["attributes"]["name"] == "Ana"
    assert identified[0]["attributes"]["surname"] == "Silva"
    purchases = [e for e in insider.events if e["event_name"] == "purchase"]
    assert [e["event_params"]["product_id"] for e in purchases] == ["sku-77", "sku-78"]
    for event in purchases:
        params = event["event_params"]
        assert params["event_group_id"] == "A-5521"
        assert params["currency"] == "EUR"
        assert event["timestamp"] == "2025-03-02T10:15:04Z"
    assert [(e["event_params"]["unit_sale_price"], e["event_params"]["quantity"])
            for e in purchases] == [(24.95, 2), (19, 1)]  # fmt: skip
    assert "sign_up_confirmation" in [e["event_name"] for e in insider.events]


async def test_insider_purchase_carries_the_user_attributes(crossdock_daemon) -> None:
    async with FakeSegmentify() as sfy, FakeInsider(request_token=INSIDER_TOKEN) as insider:
        daemon = crossdock_daemon(config(sfy.url, insider.url))
        await post_all(daemon.url, [GUIDE_FLOW[7]])
        await wait_until(lambda: len(insider.events) >= 2, what="2 purchases")
    [user] = [u for u in insider.users if u.get("events")]
    assert user["attributes"]["name"] == "Ana"
