"""The README's configuration examples work as it says: every ``[[destinations]]`` block builds a
destination (overrides merged as the config merges them), and the override example does what
its comments promise."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import crossdock_segmentify
from crossdock.testing.events import golden_event, page
from crossdock.testing.harness import DestinationHarness
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN

README = Path(__file__).resolve().parents[1] / "README.md"
SETTINGS = {"api_key": DEFAULT_API_KEY, "data_center_url": "http://127.0.0.1:9",
            "origin": DEFAULT_ORIGIN}  # fmt: skip


def destinations() -> list[dict[str, Any]]:
    """Every ``[[destinations]]`` entry of the README's toml blocks."""
    blocks = re.findall(r"^```toml\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return [d for block in blocks for d in tomllib.loads(block).get("destinations", [])]


def harness(destination: dict[str, Any]) -> DestinationHarness:
    """The destination as ``crossdock run`` builds it (settings from the fake's defaults)."""
    assert destination["plugin"] == "segmentify"
    return DestinationHarness(
        crossdock_segmentify,
        SETTINGS,
        mapping=destination.get("mapping"),
        tables=destination.get("tables"),
        where=destination.get("where"),
    )


def example(marker: str) -> DestinationHarness:
    [found] = [d for d in destinations() if marker in d.get("mapping", {})]
    return harness(found)


def test_the_readme_has_its_examples() -> None:
    assert len(destinations()) == 2


@pytest.mark.parametrize("index", range(2))
def test_every_example_builds_a_destination(index: int) -> None:
    h = harness(destinations()[index])
    assert h.transform(golden_event("order_completed"))["step"] == "purchase"


def test_the_first_example_adds_a_field_and_extends_the_tables() -> None:
    h = example("testMode")
    order = h.transform(golden_event("order_completed"))
    assert order["testMode"] is True
    assert order["paymentType"] == "card"  # the golden order has no payment_method
    wishlist_cart = h.transform(golden_event("wishlist_product_added_to_cart"))
    assert (wishlist_cart["name"], wishlist_cart["step"]) == ("BASKET_OPERATIONS", "add")
    assert h.transform(page("Team Settings", {}))["category"] == "Account Page"


def test_the_override_example_does_what_its_comments_say() -> None:
    h = example("lang")
    order = h.transform(golden_event("order_completed"))
    assert (order["lang"], order["orderNo"]) == ("TR", "chk-91c")
    assert h.transform(golden_event("checkout_started"))["orderNo"] == "A-5521"
    assert "pageUrl" not in h.transform(golden_event("product_viewed"))
    assert "pageUrl" in h.transform(golden_event("product_added"))
    assert h.transform(golden_event("page"))["category"] == "Category Page"
    assert h.transform(page("Unknown", {"path": "/mugs"}))["category"] == "/mugs"
    admin = page("Admin", {"path": "/admin"})
    assert h.transform(admin) is None
    assert h.transformer.drop_reason(admin) == "section page_view: where false"
    assert h.transformer.drop_reason(golden_event("signed_out")) == "section user_signout: drop"
    wishlist = h.transform(golden_event("product_added_to_wishlist"))
    assert (wishlist["name"], wishlist["type"]) == ("CUSTOM_EVENT", "wishlist")
    assert wishlist["params"] == {"productId": "507f1f77bcf86cd799439011"}
    assert wishlist["userId"] == "u-1042"
