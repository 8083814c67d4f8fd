"""Golden mapping cases: a Spec event in, the exact Miso record out (one per interaction type),
plus the typing rules, the id settings, overrides, tables and ``where``."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import crossdock
import crossdock_miso
from crossdock.testing.events import golden_event, page, track
from crossdock.testing.harness import DestinationHarness

KEY = "sk_test_123456"
USER = "u-1042"
ANON = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
TABLE = dict(crossdock_miso.DESTINATION_TYPE.spec.tables["miso_events"])
MUG = "507f1f77bcf86cd799439011"
PLATE = "505bd76785ebb509fc183733"


def harness(**kwargs: Any) -> DestinationHarness:
    settings = {"api_key": KEY, **kwargs.pop("settings", {})}
    return DestinationHarness(crossdock_miso, settings, **kwargs)


def golden_context(path: str, title: str = "Acme Mugs") -> dict[str, Any]:
    """The Miso context of a golden event (its page, browser, locale, IP and campaign)."""
    return {
        "page": {
            "url": f"https://shop.example.com{path}",
            "referrer": "https://www.google.com/",
            "title": title,
        },
        "user_agent": SAFARI,
        "locale": "en-US",
        "truncated_ip": "203.0.113.0",
        "campaign": {"name": "spring_sale", "source": "newsletter", "medium": "email"},
    }


def ids() -> dict[str, str]:
    return {"user_id": USER, "anonymous_id": ANON}


GOLDEN: dict[str, dict[str, Any]] = {
    "Products Searched": {
        "type": "search", **ids(), "timestamp": "2025-03-02T10:15:07.959Z",
        "search": {"keywords": "blue mug"}, "context": golden_context("/search", "Search"),
    },
    "Product List Viewed": {
        "type": "category_page_view", **ids(), "timestamp": "2025-03-02T10:15:08.096Z",
        "category": ["Kitchen"], "context": golden_context("/mugs"),
    },
    "Product Viewed": {
        "type": "product_detail_page_view", **ids(), "timestamp": "2025-03-02T10:15:13.781Z",
        "product_ids": [MUG], "context": golden_context("/p/blue-enamel-mug"),
    },
    "Product Clicked": {
        "type": "click", **ids(), "timestamp": "2025-03-02T10:15:12.644Z",
        "product_ids": [MUG], "context": golden_context("/mugs"),
    },
    "Product Added": {
        "type": "add_to_cart", **ids(), "timestamp": "2025-03-02T10:15:14.918Z",
        "product_ids": [MUG], "quantities": [2], "context": golden_context("/p/blue-enamel-mug"),
    },
    "Wishlist Product Added to Cart": {
        "type": "add_to_cart", **ids(), "timestamp": "2025-03-02T10:15:31.247Z",
        "product_ids": [MUG], "quantities": [2], "context": golden_context("/wishlist"),
    },
    "Product Removed": {
        "type": "remove_from_cart", **ids(), "timestamp": "2025-03-02T10:15:15.055Z",
        "product_ids": [PLATE], "context": golden_context("/cart"),
    },
    "Order Completed": {
        "type": "checkout", **ids(), "timestamp": "2025-03-02T10:15:21.877Z",
        "product_ids": [MUG, PLATE], "quantities": [2, 1], "revenue": 56.71,
        "context": golden_context("/checkout/done"),
    },
    "Order Refunded": {
        "type": "refund", **ids(), "timestamp": "2025-03-02T10:15:23.151Z",
        "product_ids": [MUG, PLATE], "context": golden_context("/account/orders/A-5521"),
    },
    "Product Added to Wishlist": {
        "type": "add_to_collection", **ids(), "timestamp": "2025-03-02T10:15:29.973Z",
        "product_ids": [MUG], "context": golden_context("/p/blue-enamel-mug"),
    },
    "Product Removed from Wishlist": {
        "type": "remove_from_collection", **ids(), "timestamp": "2025-03-02T10:15:30.110Z",
        "product_ids": [MUG], "context": golden_context("/wishlist"),
    },
    "Product Shared": {
        "type": "share", **ids(), "timestamp": "2025-03-02T10:15:32.384Z",
        "product_ids": [MUG], "context": golden_context("/p/blue-enamel-mug"),
    },
    "Product Reviewed": {
        "type": "rate", **ids(), "timestamp": "2025-03-02T10:15:34.658Z",
        "product_ids": [MUG], "rating": 5.0, "context": golden_context("/p/blue-enamel-mug"),
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_event_gives_the_exact_miso_record(name: str) -> None:
    assert harness().transform(golden_event(name)) == GOLDEN[name]


def test_home_page_call_is_a_home_page_view() -> None:
    event = page("Home", {"url": "https://shop.example.com/", "title": "Acme"}, context={})
    event["timestamp"] = "2025-03-02T10:15:04.120Z"
    assert harness().transform(event) == {
        "type": "home_page_view", **ids(), "timestamp": "2025-03-02T10:15:04.120Z",
        "context": {"page": {"url": "https://shop.example.com/", "title": "Acme"}},
    }  # fmt: skip


def test_page_in_the_home_category_is_a_home_page_view() -> None:
    assert harness().transform(page("Welcome", category="Home"))["type"] == "home_page_view"


def test_other_pages_and_unmapped_events_are_dropped() -> None:
    h = harness()
    assert h.transform(golden_event("page")) is None  # a "Category" page
    assert h.transform(golden_event("identify")) is None
    assert h.transform(golden_event("Checkout Started")) is None
    assert h.transform(track("Something Custom")) is None


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("Hit Search", "search"), ("Site Searched", "search"),
        ("Viewed Product Category", "category_page_view"),
        ("Viewed Product", "product_detail_page_view"), ("Added Product", "add_to_cart"),
        ("Remove Product", "remove_from_cart"), ("Removed Product", "remove_from_cart"),
        ("Completed Order", "checkout"), ("Checkout Completed", "checkout"),
        ("Clicked Product", "click"),
    ],
)  # fmt: skip
def test_v1_and_miso_table_aliases(event: str, kind: str) -> None:
    props = {"product_id": "p-1", "query": "mug", "category": "Kitchen", "rating": 4}
    assert harness().transform(track(event, props))["type"] == kind


def test_products_use_sku_fallback_stringify_ids_and_keep_quantities_parallel() -> None:
    products = [
        {"product_id": 123, "quantity": "3"},
        {"sku": "S-1"},
        {"name": "no id at all", "quantity": 9},
        {"product_id": "p-4", "quantity": 0},
        {"product_id": "", "sku": "S-5", "quantity": 2.5},
    ]
    record = harness().transform(track("Order Completed", {"products": products, "revenue": 9}))
    assert record["product_ids"] == ["123", "S-1", "p-4", "S-5"]
    assert record["quantities"] == [3, 1, 1, 2.5]
    assert record["revenue"] == 9


def test_single_product_falls_back_to_sku_and_numbers_become_strings() -> None:
    h = harness()
    assert h.transform(track("Product Viewed", {"sku": "SKU-9"}))["product_ids"] == ["SKU-9"]
    assert h.transform(track("Product Added", {"product_id": 77}))["product_ids"] == ["77"]
    assert h.transform(track("Product Added", {"product_id": 77}))["quantities"] == [1]


def test_checkout_revenue_prefers_total_then_revenue() -> None:
    h = harness()
    products = [{"product_id": "p"}]
    both = track("Order Completed", {"total": 12.5, "revenue": 10, "products": products})
    only = track("Order Completed", {"revenue": "10.5", "products": products})
    neither = track("Order Completed", {"products": products})
    assert h.transform(both)["revenue"] == 12.5
    assert h.transform(only)["revenue"] == 10.5
    assert "revenue" not in h.transform(neither)


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("Home & Garden > Kitchen & Dining", ["Home & Garden", "Kitchen & Dining"]),
        ("Home/Kitchen/Mugs", ["Home", "Kitchen", "Mugs"]),
        (["Home", "Kitchen", 7], ["Home", "Kitchen", "7"]),
        ("Kitchen", ["Kitchen"]),
    ],
)
def test_category_is_always_an_array_broad_to_narrow(category: Any, expected: list[str]) -> None:
    record = harness().transform(track("Product List Viewed", {"category": category}))
    assert record["category"] == expected


@pytest.mark.parametrize(
    ("rating", "expected"), [("4.5", 4.5), (3, 3.0), ("9", 5.0), (-1, 0.0), ("great", None)]
)
def test_rating_is_a_number_clamped_to_0_5(rating: Any, expected: float | None) -> None:
    record = harness().transform(track("Product Reviewed", {"product_id": "p", "rating": rating}))
    assert record.get("rating") == expected


def test_search_keywords_from_an_object_query_and_filters_as_string_arrays() -> None:
    h = harness()
    keywords = track("Products Searched", {"query": {"keywords": "mug", "page": 2}})
    assert h.transform(keywords)["search"] == {"keywords": "mug"}
    other = track("Products Searched", {"query": {"text": "mug"}})
    assert h.transform(other)["search"] == {"keywords": '{"text":"mug"}'}
    filtered = track(
        "Products Searched",
        {"query": "mug", "filters": [{"type": "color", "value": "blue"},
                                     {"type": "color", "value": "red"},
                                     {"type": "size", "value": 350}]},
    )  # fmt: skip
    assert h.transform(filtered)["search"] == {
        "keywords": "mug",
        "filters": {"color": ["blue", "red"], "size": ["350"]},
    }


def test_fields_a_type_does_not_have_are_left_out() -> None:
    h = harness()
    searched = h.transform(track("Products Searched", {"query": "q", "product_id": "p"}))
    assert "product_ids" not in searched
    viewed = h.transform(track("Product Viewed", {"product_id": "p", "quantity": 2, "total": 3}))
    assert set(viewed) == {"type", "user_id", "anonymous_id", "timestamp", "product_ids", "context"}
    listed = h.transform(golden_event("Product List Viewed"))
    assert "product_ids" not in listed
    assert "custom_action_name" not in listed


def test_ipv6_is_never_sent_and_ipv4_is_truncated() -> None:
    h = harness()
    v6 = track("Product Viewed", context={"ip": "2001:db8::1"})
    assert "context" not in h.transform(v6)
    v4 = track("Product Viewed", context={"ip": "198.51.100.77"})
    assert h.transform(v4)["context"] == {"truncated_ip": "198.51.100.0"}


def test_page_without_url_is_left_out_of_context() -> None:
    event = track("Product Viewed", context={"page": {"title": "No URL"}, "locale": "de-DE"})
    assert harness().transform(event)["context"] == {"locale": "de-DE"}


def test_id_fields_come_from_the_settings() -> None:
    h = harness(
        settings={"user_id_field": "context.traits.customer_id", "anonymous_id_field": "`null`"}
    )
    event = track("Product Viewed", context={"traits": {"customer_id": 4711}})
    with pytest.warns(FutureWarning, match="deprecated"):  # a deprecated alias, still working
        record = h.transform(event)
    assert record["user_id"] == "4711"
    assert "anonymous_id" not in record


def test_anonymous_only_event_keeps_its_anonymous_id() -> None:
    record = harness().transform(track("Product Viewed", userId=None))
    assert "user_id" not in record
    assert record["anonymous_id"] == ANON


def test_event_without_ids_maps_but_has_no_ids() -> None:
    record = harness().transform(track("Product Viewed", userId=None, anonymousId=None))
    assert record is not None
    assert "user_id" not in record
    assert "anonymous_id" not in record
    assert crossdock_miso.schema.problem(record).startswith("neither user_id nor anonymous_id")


def test_mapping_override_wins_field_by_field() -> None:
    h = harness(mapping={"revenue": "number(properties.revenue)", "context.truncated_ip": ""})
    record = h.transform(golden_event("Order Completed"))
    assert record["revenue"] == 44.01
    assert "truncated_ip" not in record["context"]
    assert record["product_ids"] == [MUG, PLATE]


def test_override_of_user_id_wins_over_the_setting() -> None:
    h = harness(mapping={"user_id": "traits.email || userId"}, settings={"user_id_field": "x"})
    with pytest.warns(FutureWarning, match="user_id_field"):
        record = h.transform(track("Product Viewed"))
    assert record["user_id"] == USER


def test_override_still_gets_strict_types() -> None:
    h = harness(mapping={"rating": "properties.rating", "category": "properties.category"})
    rated = h.transform(track("Product Reviewed", {"product_id": "p", "rating": "4"}))
    assert rated["rating"] == 4.0
    listed = h.transform(track("Product List Viewed", {"category": "Kitchen"}))
    assert "category" not in listed  # a string is not Miso's array: left out, not sent


def test_tables_extend_and_disable_the_event_map() -> None:
    tables = {"miso_events": {**TABLE, "Signed Up": "custom", "Product Clicked": ""}}
    h = harness(tables=tables)
    assert h.transform(golden_event("Signed Up")) == {
        "type": "custom", **ids(), "custom_action_name": "Signed Up",
        "timestamp": "2025-03-02T10:15:35.795Z", "context": golden_context("/signup"),
    }  # fmt: skip
    assert h.transform(golden_event("Product Clicked")) is None
    assert h.transform(golden_event("Product Viewed"))["type"] == "product_detail_page_view"


def test_where_filters_and_is_told_apart_from_a_drop() -> None:
    h = harness(where="event != 'Product Viewed'")
    viewed = golden_event("Product Viewed")
    assert h.transform(viewed) is None
    assert h.transformer.matches(viewed) is False
    identify = golden_event("identify")
    assert h.transform(identify) is None
    assert h.transformer.matches(identify) is False  # no section: not for Miso, filtered


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (golden_event("identify"), "no section (type identify)"),
        (golden_event("page"), "no section (type page)"),  # a "Category" page: no table row
        (track("Something Custom"), "no section (type track)"),
        (golden_event("Product Viewed"), None),
    ],
)
def test_drop_reasons_name_the_spec_type(event: Any, reason: str | None) -> None:
    assert harness().transformer.drop_reason(event) == reason


def test_a_table_entry_set_to_empty_drops_with_a_reason() -> None:
    h = harness(tables={"miso_events": {"Product Clicked": ""}})
    assert h.transformer.drop_reason(golden_event("Product Clicked")) == "no section (type track)"


def test_an_override_leaving_no_type_is_dropped_as_no_type() -> None:
    h = harness(mapping={"track.type": "`42`"})
    viewed = golden_event("Product Viewed")
    assert h.transform(viewed) is None
    assert h.transformer.drop_reason(viewed) == "no type"


def test_id_fields_are_mapping_fields_an_operator_overrides() -> None:
    h = harness(mapping={"user_id": "context.traits.customer_id", "anonymous_id": ""})
    event = track("Product Viewed", context={"traits": {"customer_id": 4711}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the mapping way is not deprecated
        record = h.transform(event)
    assert record["user_id"] == "4711"  # Miso's schema: ids are strings
    assert "anonymous_id" not in record
    assert list(record)[:3] == ["type", "user_id", "timestamp"]


def test_id_settings_are_deprecated_aliases_that_warn_with_the_replacement() -> None:
    h = harness(settings={"user_id_field": "traits.email"})
    with pytest.warns(FutureWarning, match=r"user_id_field is deprecated .* set user_id under"):
        record = h.transform(track("Product Viewed", traits={"email": "a@example.com"}))
    assert record["user_id"] == "a@example.com"
    assert list(record)[:3] == ["type", "user_id", "anonymous_id"]  # in place, as before


def test_default_id_settings_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert harness().transform(golden_event("Product Viewed")) == GOLDEN["Product Viewed"]


def test_operator_overrides_a_section() -> None:
    # every named page: Home stays home_page_view, the others become custom interactions
    h = harness(
        mapping={
            "sections": {
                "page": {
                    "where": "type == 'page' && name != null",
                    "fields": {"type": "lookup('miso_pages', name) || 'custom'"},
                }
            }
        }
    )
    assert h.transform(page("Home"))["type"] == "home_page_view"
    pricing = h.transform(page("Pricing", {"url": "https://shop.example.com/pricing"}))
    assert pricing["type"] == "custom"
    assert pricing["custom_action_name"] == "Pricing"
    assert h.transformer.drop_reason(page(None)) == "no section (type page)"


def test_operator_overrides_a_section_field_by_shorthand() -> None:
    h = harness(mapping={"track.miso_id": "properties.miso_id || context.miso_id"})
    viewed = track("Product Viewed", {"product_id": "p"}, context={"miso_id": "m-1"})
    assert h.transform(viewed)["miso_id"] == "m-1"
    home = page("Home", {"url": "https://shop.example.com/"}, context={"miso_id": "m-2"})
    assert "miso_id" not in h.transform(home)  # the page section keeps the common field


def test_functions_are_declared_with_the_type_not_registered_globally() -> None:
    names = {f.name for f in crossdock_miso.DESTINATION_TYPE.functions}
    assert names == {
        "miso_category", "miso_rating", "miso_keywords", "miso_filters", "miso_truncated_ip",
    }  # fmt: skip
    with pytest.raises(crossdock.MappingError, match="miso_category"):
        crossdock.compile_expression("miso_category(properties.category)")
