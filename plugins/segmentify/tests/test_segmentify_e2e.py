"""End to end: the real daemon (``crossdock run``) receives Segment events on ``/v1/batch`` and
delivers them to the strict Segmentify fake; ``crossdock plugins --json`` lists the plugin."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from crossdock.testing.events import golden_event
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, FakeSegmentify

WRITE_KEY = "wk-segmentify-e2e-0123"
ANON = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"


def config(fake_url: str, origin: str = DEFAULT_ORIGIN) -> str:
    return f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "sfy"
plugin = "segmentify"
[destinations.settings]
api_key = "{DEFAULT_API_KEY}"
data_center_url = "{fake_url}"
origin = "{origin}"
[destinations.delivery]
max_wait_ms = 50
[destinations.mapping]
testMode = "`true`"
"checkout_purchase.paymentType" = "properties.payment_method || 'card'"
[destinations.tables.events]
"Wishlist Product Added to Cart" = "basket_add"
"""


async def admin(daemon: Any, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(daemon.url + path, headers=daemon.admin_headers()) as response,
    ):
        assert response.status == 200
        return await response.json()


async def test_segment_batch_reaches_segmentify_with_exact_bodies(crossdock_daemon) -> None:
    async with FakeSegmentify() as fake:
        daemon = crossdock_daemon(config(fake.url))
        bad_order = golden_event("order_completed")
        bad_order["messageId"] = "bad-order-1"
        del bad_order["properties"]["order_id"]
        batch = [golden_event(slug) for slug in
                 ("page", "product_viewed", "order_completed", "identify", "group",
                  "wishlist_product_added_to_cart")]  # fmt: skip
        batch.insert(3, bad_order)
        async with aiohttp.ClientSession() as session:
            status, body = await post_json(
                session, daemon.url + "/v1/batch", {"batch": batch}, auth=basic_auth(WRITE_KEY)
            )
        assert (status, body) == (200, {"success": True})

        async def dead_letters() -> list[Any]:
            return (await admin(daemon, "/admin/dlq?destination=sfy"))["entries"]

        await wait_until(lambda: len(fake.events) >= 5, what="5 events at Segmentify")
        entries = await wait_until(dead_letters, what="the bad order dead-lettered")

        by_name = {(e["name"], e.get("step")): e for e in fake.events}
        assert sorted(by_name) == [
            ("BASKET_OPERATIONS", "add"), ("CHECKOUT", "purchase"), ("PAGE_VIEW", None),
            ("PRODUCT_VIEW", None), ("USER_OPERATIONS", "update"),
        ]  # fmt: skip
        assert by_name[("CHECKOUT", "purchase")] == {
            "userId": "u-1042",
            "sessionId": ANON,
            "device": "PC",
            "os": "Mac OS",
            "lang": "EN",
            "currency": "EUR",
            "pageUrl": "https://shop.example.com/checkout/done",
            "testMode": True,
            "name": "CHECKOUT",
            "step": "purchase",
            "totalPrice": 56.71,
            "productList": [
                {"productId": "507f1f77bcf86cd799439011", "price": 14.95, "quantity": 2},
                {"productId": "505bd76785ebb509fc183733", "price": 19.0, "quantity": 1},
            ],
            "orderNo": "A-5521",
            "coupon": "SPRING10",
            "paymentType": "card",
        }
        assert by_name[("PAGE_VIEW", None)] == {
            "userId": "u-1042",
            "sessionId": ANON,
            "device": "PC",
            "os": "Mac OS",
            "lang": "EN",
            "pageUrl": "https://shop.example.com/mugs",
            "testMode": True,
            "name": "PAGE_VIEW",
            "category": "Category Page",
            "subCategory": "Shop",
        }
        assert by_name[("BASKET_OPERATIONS", "add")]["basketId"] == "cart-3f2a"
        for request in fake.requests:
            assert request.query == {"apiKey": DEFAULT_API_KEY}
            assert request.headers["Origin"] == DEFAULT_ORIGIN
            assert isinstance(request.json(), list)

        [entry] = entries
        assert entry["event"]["messageId"] == "bad-order-1"
        assert entry["reason"] == "Segmentify INVALID_EVENT: CHECKOUT purchase needs orderNo"
        assert DEFAULT_API_KEY not in daemon.log()


async def test_wrong_origin_pauses_the_destination_and_keeps_events(crossdock_daemon) -> None:
    async with FakeSegmentify() as fake:
        daemon = crossdock_daemon(config(fake.url, origin="https://wrong.example.com"))
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", {"batch": [golden_event("identify")]},
                auth=basic_auth(WRITE_KEY),
            )  # fmt: skip
        assert status == 200

        async def paused() -> Any:
            row = await admin(daemon, "/admin/destinations/sfy")
            return row if row["paused"] else None

        row = await wait_until(paused, what="destination paused")
        assert "NO_DOMAIN_APIKEY_MATCH" in row["pause_reason"]
        assert row["dead_letters"] == 0
        assert row["pending"] + row["retrying"] == 1  # kept for when the origin is fixed
        assert (await admin(daemon, "/admin/dlq?destination=sfy"))["entries"] == []
        assert fake.refusals[0][0] == "NO_DOMAIN_APIKEY_MATCH"
        assert not fake.events


def test_crossdock_plugins_lists_segmentify_with_its_version() -> None:
    crossdock_bin = Path(sys.executable).with_name("crossdock")
    result = subprocess.run(
        [str(crossdock_bin), "plugins", "--json"], capture_output=True, check=False, timeout=60
    )
    rows = orjson.loads(result.stdout)
    [row] = [r for r in rows if r["name"] == "segmentify"]
    assert row["distribution"] == "crossdock-segmentify"
    assert row["version"] == version("crossdock-segmentify")
    assert row["destination_types"] == ["segmentify"]
    assert row["status"] == "ok"
    assert set(row["hooks"]) >= {"crossdock_destination_types", "crossdock_make_deliverer"}
    # the mapping file carries the event kinds: the core's transformer compiles it
    assert "crossdock_make_transformer" not in row["hooks"]
