"""Golden mapping cases: Spec event in → the exact Segmentify event out, one per mapped kind,
plus the id derivation, the common fields, the dispatch and its drop reasons, and how overrides,
sections and tables apply. Everything goes through the plugin's ``mapping.toml`` compiled by the
core (the plugin has no Python transformer)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import crossdock
import crossdock_segmentify
from crossdock.testing.events import golden_event, identify, make_event, page, track
from crossdock.testing.harness import DestinationHarness
from crossdock_segmentify.functions import session_id
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, check_event

SETTINGS = {
    "api_key": DEFAULT_API_KEY,
    "data_center_url": "http://127.0.0.1:9",
    "origin": DEFAULT_ORIGIN,
}
ANON = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"
WEB = {"userId": "u-1042", "sessionId": ANON, "device": "PC", "os": "Mac OS", "lang": "EN"}
PRODUCTS = [
    {"productId": "507f1f77bcf86cd799439011", "price": 14.95, "quantity": 2},
    {"productId": "505bd76785ebb509fc183733", "price": 19.0, "quantity": 1},
]
SHOP = "https://shop.example.com"


def harness(**kwargs: Any) -> DestinationHarness:
    """A destination as the config builds it: ``tables`` rows EXTEND the plugin's tables
    (``[destinations.tables.<name>]``), they do not replace them."""
    extra = kwargs.pop("tables", {})
    tables = {
        name: dict(rows) for name, rows in crossdock_segmentify.DESTINATION_TYPE.tables.items()
    }
    for name, rows in extra.items():
        tables.setdefault(name, {}).update(rows)
    return DestinationHarness(crossdock_segmentify, SETTINGS, tables=tables, **kwargs)


def transform(event: dict[str, Any], **kwargs: Any) -> Any:
    return harness(**kwargs).transform(event)


GOLDEN: dict[str, dict[str, Any]] = {
    "page": {
        **WEB,
        "pageUrl": f"{SHOP}/mugs",
        "name": "PAGE_VIEW",
        "category": "Category Page",
        "subCategory": "Shop",
    },
    "screen": {
        "userId": "u-1042",
        "sessionId": ANON,
        "device": "IOS",
        "os": "iOS",
        "lang": "DE",
        "name": "PAGE_VIEW",
        "category": "Product Page",
        "subCategory": "Shop",
    },
    "product_viewed": {
        **WEB,
        "currency": "EUR",
        "pageUrl": f"{SHOP}/p/blue-enamel-mug",
        "name": "PRODUCT_VIEW",
        "productId": "507f1f77bcf86cd799439011",
        "title": "Blue Enamel Mug",
        "url": f"{SHOP}/p/blue-enamel-mug",
        "image": "https://cdn.example.com/img/mug-blue.jpg",
        "category": "Kitchen",
        "brand": "Acme",
        "price": 14.95,
    },
    "product_added": {
        **WEB,
        "pageUrl": f"{SHOP}/p/blue-enamel-mug",
        "name": "BASKET_OPERATIONS",
        "step": "add",
        "productId": "507f1f77bcf86cd799439011",
        "price": 14.95,
        "quantity": 2,
        "basketId": "cart-3f2a",
    },
    "product_removed": {
        **WEB,
        "pageUrl": f"{SHOP}/cart",
        "name": "BASKET_OPERATIONS",
        "step": "remove",
        "productId": "505bd76785ebb509fc183733",
        "price": 19.0,
        "quantity": 1,
        "basketId": "cart-3f2a",
    },
    "cart_viewed": {
        **WEB,
        "pageUrl": f"{SHOP}/cart",
        "name": "CHECKOUT",
        "step": "view-basket",
        "totalPrice": 48.9,
        "productList": PRODUCTS,
        "basketId": "cart-3f2a",
    },
    "checkout_started": {
        **WEB,
        "currency": "EUR",
        "pageUrl": f"{SHOP}/checkout",
        "name": "CHECKOUT",
        "step": "customer",
        "totalPrice": 48.9,
        "productList": PRODUCTS,
        "orderNo": "A-5521",
        "coupon": "SPRING10",
    },
    "checkout_step_viewed": {
        **WEB,
        "pageUrl": f"{SHOP}/checkout/shipping",
        "name": "CHECKOUT",
        "step": "customer",
        "totalPrice": 0,
        "productList": [],
    },
    "payment_info_entered": {
        **WEB,
        "pageUrl": f"{SHOP}/checkout/payment",
        "name": "CHECKOUT",
        "step": "payment-info",
        "totalPrice": 0,
        "productList": [],
        "orderNo": "A-5521",
        "paymentType": "Visa",
    },
    "order_completed": {
        **WEB,
        "currency": "EUR",
        "pageUrl": f"{SHOP}/checkout/done",
        "name": "CHECKOUT",
        "step": "purchase",
        "totalPrice": 56.71,
        "productList": PRODUCTS,
        "orderNo": "A-5521",
        "coupon": "SPRING10",
    },
    "identify": {
        **WEB,
        "pageUrl": f"{SHOP}/account",
        "name": "USER_OPERATIONS",
        "step": "update",
        "email": "ana.silva@example.com",
        "username": "anasilva",
        "fullName": "Ana Silva",
        "phone": "+49 30 1234567",
        "gender": "F",
        "birthdate": "1990-04-12",
    },
    "signed_up": {
        **WEB,
        "pageUrl": f"{SHOP}/signup",
        "name": "USER_OPERATIONS",
        "step": "signup",
        "email": "ana.silva@example.com",
        "username": "anasilva",
        "fullName": "Ana Silva",
    },
    "signed_in": {
        **WEB,
        "pageUrl": f"{SHOP}/login",
        "name": "USER_OPERATIONS",
        "step": "signin",
        "username": "anasilva",
    },
    "signed_out": {
        **WEB,
        "pageUrl": f"{SHOP}/account",
        "name": "USER_OPERATIONS",
        "step": "signout",
        "username": "anasilva",
    },
    "alias": {
        **WEB,
        # An alias carries no anonymousId: the session is derived from (user, UTC day).
        "sessionId": session_id("u-1042", "2025-03-02T10:15:06.822Z"),
        "pageUrl": f"{SHOP}/",
        "name": "USER_CHANGE",
        "oldUserId": ANON,
    },
    "products_searched": {
        **WEB,
        "pageUrl": f"{SHOP}/search",
        "name": "SEARCH",
        "query": "blue mug",
    },
    "track": {
        **WEB,
        "pageUrl": f"{SHOP}/",
        "name": "CUSTOM_EVENT",
        "type": "Newsletter Subscribed",
        "params": {"list_id": "weekly", "source": "footer"},
    },
}


@pytest.mark.parametrize("slug", sorted(GOLDEN))
def test_golden_event_maps_to_exact_segmentify_event(slug: str) -> None:
    payload = transform(golden_event(slug))
    assert payload == GOLDEN[slug]
    assert check_event(payload) is None  # and the strict fake would accept it


V1_ALIASES = {
    "Viewed Product": "product_viewed",
    "Added Product": "product_added",
    "Removed Product": "product_removed",
    "Started Order": "checkout_started",
    "Viewed Checkout Step": "checkout_step_viewed",
    "Completed Order": "order_completed",
}


@pytest.mark.parametrize(("old", "slug"), sorted(V1_ALIASES.items()))
def test_spec_v1_names_map_like_v2(old: str, slug: str) -> None:
    event = golden_event(slug)
    event["event"] = old
    assert transform(event) == GOLDEN[slug]


def test_group_is_dropped_on_purpose() -> None:
    h = harness()
    assert h.transform(golden_event("group")) is None
    assert h.transformer.drop_reason(golden_event("group")) == "no section (type group)"


def test_name_and_step_lead_every_event_then_the_common_fields() -> None:
    """The key order of the requests (golden bodies are compared byte for byte)."""
    h = harness()
    common = [k for k in h.destination.mapping if k not in ("name", "step")]
    for slug in GOLDEN:
        payload = h.transform(golden_event(slug))
        keys = list(payload)
        lead = ["name", "step"] if "step" in payload else ["name"]
        assert keys[: len(lead)] == lead, slug
        present = [k for k in common if k in payload]
        assert keys[len(lead) : len(lead) + len(present)] == present, slug


def test_exact_bytes_of_a_purchase() -> None:
    assert orjson.dumps(transform(golden_event("order_completed"))) == (
        b'{"name":"CHECKOUT","step":"purchase","userId":"u-1042",'
        b'"sessionId":"0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40","device":"PC","os":"Mac OS",'
        b'"lang":"EN","currency":"EUR","pageUrl":"https://shop.example.com/checkout/done",'
        b'"totalPrice":56.71,"productList":[{"productId":"507f1f77bcf86cd799439011",'
        b'"price":14.95,"quantity":2},{"productId":"505bd76785ebb509fc183733","price":19.0,'
        b'"quantity":1}],"orderNo":"A-5521","coupon":"SPRING10"}'
    )


def test_every_golden_event_but_group_is_accepted_by_the_fake_rules() -> None:
    h = harness()
    for slug, event in crossdock.testing.events.golden_events().items():
        payload = h.transform(event)
        if slug == "group":
            continue
        assert payload is not None, slug
        assert check_event(payload) is None, (slug, check_event(payload))


def test_other_tracks_are_custom_events_with_flat_params() -> None:
    event = track("Order Refunded", {"order_id": "A-1", "meta": {"a": 1, "b": {"c": "x"}},
                                     "tags": ["x", "y"], "gone": None})  # fmt: skip
    payload = transform(event)
    assert payload["name"] == "CUSTOM_EVENT"
    assert payload["type"] == "Order Refunded"
    assert payload["params"] == {"order_id": "A-1", "meta.a": 1, "meta.b.c": "x",
                                 "tags": ["x", "y"]}  # fmt: skip


# --- ids -----------------------------------------------------------------------------------


def test_user_id_falls_back_to_anonymous_id() -> None:
    payload = transform(make_event("track", event="Signed In", drop=("userId",)))
    assert payload["userId"] == ANON
    assert payload["sessionId"] == ANON


def test_session_id_prefers_context_session_id() -> None:
    event = track("Signed In", {})
    event["context"]["sessionId"] = 1740909304
    assert transform(event)["sessionId"] == "1740909304"


def test_session_id_without_anonymous_id_is_stable_per_user_and_day() -> None:
    morning = make_event(
        "track", event="X", timestamp="2025-03-02T08:00:00Z", drop=("anonymousId",)
    )
    evening = make_event(
        "track", event="X", timestamp="2025-03-02T23:59:00Z", drop=("anonymousId",)
    )
    next_day = make_event(
        "track", event="X", timestamp="2025-03-03T00:01:00Z", drop=("anonymousId",)
    )
    other = make_event("track", event="X", timestamp="2025-03-02T08:00:00Z", userId="u-2",
                       drop=("anonymousId",))  # fmt: skip
    ids = [transform(e)["sessionId"] for e in (morning, evening, next_day, other)]
    assert ids[0] == ids[1]
    assert len(set(ids)) == 3
    assert ids[0].isdigit()


def test_ids_can_be_supplied_by_mapping_overrides() -> None:
    event = track("Signed In", {"sfy_user": "2380481611291172865", "sfy_session": "s-9"})
    payload = transform(event, mapping={"userId": "properties.sfy_user",
                                        "sessionId": "properties.sfy_session"})  # fmt: skip
    assert (payload["userId"], payload["sessionId"]) == ("2380481611291172865", "s-9")


def test_event_without_any_id_maps_without_user_id() -> None:
    payload = transform(make_event("track", event="X", drop=("userId", "anonymousId")))
    assert "userId" not in payload
    assert check_event(payload)[0] == "NO_USERID"


# --- common fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "agent", "device", "os"),
    [
        ("Android", None, "ANDROID", "Android"),
        ("iOS", None, "IOS", "iOS"),
        (None, "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "PC", "Windows"),
        (None, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)", "PC", "iOS"),
        (None, "Mozilla/5.0 (Linux; Android 14; Pixel 8)", "PC", "Android"),
        (None, None, "PC", None),
    ],
)
def test_device_and_os(os_name: str | None, agent: str | None, device: str, os: str | None) -> None:
    event = track("X", {})
    event["context"].pop("userAgent", None)
    if os_name:
        event["context"]["os"] = {"name": os_name}
    if agent:
        event["context"]["userAgent"] = agent
    payload = transform(event)
    assert payload["device"] == device
    assert payload.get("os") == os


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "EN"), ("tr", "TR"), ("pt_BR", "PT"),
                                              ("", None), (None, None)])  # fmt: skip
def test_lang_is_upper_case_language(locale: str | None, lang: str | None) -> None:
    event = track("X", {})
    event["context"]["locale"] = locale
    assert transform(event).get("lang") == lang


@pytest.mark.parametrize(("gender", "code"), [("female", "F"), ("Male", "M"), ("m", "M"),
                                              ("non-binary", "U"), (None, None)])  # fmt: skip
def test_gender_is_normalised(gender: str | None, code: str | None) -> None:
    assert transform(identify({"gender": gender})).get("gender") == code


def test_full_name_from_first_and_last_name() -> None:
    payload = transform(identify({"firstName": "Ana", "lastName": "Silva", "email": "a@x.io"}))
    assert payload["fullName"] == "Ana Silva"
    assert "fullName" not in transform(identify({"email": "a@x.io"}))


@pytest.mark.parametrize(
    ("name", "properties", "category"),
    [
        ("Home", {}, "Home Page"),
        ("Checkout", {}, "Checkout Page"),
        (None, {"path": "/"}, "Home Page"),
        (None, {"category": "Search"}, "Search Page"),
        ("Team Settings", {}, "Team Settings"),
    ],
)
def test_page_category_is_the_page_type(
    name: str | None, properties: dict[str, Any], category: str
) -> None:
    event = page(name, properties)
    event["context"]["page"]["path"] = "/somewhere"
    assert transform(event)["category"] == category


def test_numeric_ids_become_strings_and_sku_stands_in() -> None:
    added = transform(track("Product Added", {"product_id": 77, "price": "9.5", "cart_id": 3}))
    assert (added["productId"], added["price"], added["basketId"]) == ("77", 9.5, "3")
    viewed = transform(track("Product Viewed", {"sku": "SKU-1"}))
    assert viewed["productId"] == "SKU-1"


def test_search_query_objects_are_stringified() -> None:
    payload = transform(track("Products Searched", {"query": {"q": "mug", "color": "blue"}}))
    assert payload["query"] == '{"q":"mug","color":"blue"}'


def test_purchase_without_order_id_keeps_out_order_no_and_fails_the_vendor_rule() -> None:
    payload = transform(track("Order Completed", {"total": 5, "products": []}))
    assert "orderNo" not in payload
    assert check_event(payload) == ("INVALID_EVENT", "CHECKOUT purchase needs orderNo")


# --- overrides, tables, where ----------------------------------------------------------------


def test_common_override_applies_to_every_kind() -> None:
    h = harness(mapping={"lang": "'TR'", "testMode": "`true`"})
    for slug in ("page", "order_completed", "identify"):
        payload = h.transform(golden_event(slug))
        assert payload["lang"] == "TR"
        assert payload["testMode"] is True


def test_section_override_applies_to_that_kind_only() -> None:
    h = harness(mapping={"checkout_purchase.orderNo": "properties.checkout_id",
                         "product_view.pageUrl": "`null`"})  # fmt: skip
    assert h.transform(golden_event("order_completed"))["orderNo"] == "chk-91c"
    assert h.transform(golden_event("checkout_started"))["orderNo"] == "A-5521"
    assert "pageUrl" not in h.transform(golden_event("product_viewed"))
    assert "pageUrl" in h.transform(golden_event("product_added"))


def test_empty_override_removes_a_common_field() -> None:
    assert "pageUrl" not in harness(mapping={"pageUrl": ""}).transform(golden_event("identify"))


def test_tables_extend_the_event_table() -> None:
    h = harness(tables={"events": {"Wishlist Product Added to Cart": "basket_add"}})
    payload = h.transform(golden_event("wishlist_product_added_to_cart"))
    assert (payload["name"], payload["step"], payload["basketId"]) == (
        "BASKET_OPERATIONS", "add", "cart-3f2a")  # fmt: skip


def test_a_new_section_from_overrides_and_tables() -> None:
    h = harness(
        mapping={"sections": {"wishlist": {"fields": {"name": "'CUSTOM_EVENT'"}}},
                 "wishlist.type": "'wishlist'",  # once declared, the shorthand reaches it
                 "wishlist.params.productId": "properties.product_id"},
        tables={"events": {"Product Added to Wishlist": "wishlist"}},
    )  # fmt: skip
    payload = h.transform(golden_event("product_added_to_wishlist"))
    assert (payload["name"], payload["type"]) == ("CUSTOM_EVENT", "wishlist")
    assert payload["params"] == {"productId": "507f1f77bcf86cd799439011"}
    assert payload["userId"] == "u-1042"


def test_tables_can_drop_events() -> None:
    h = harness(tables={"types": {"track": "", "group": ""}, "events": {"Signed Out": ""}})
    assert h.transform(golden_event("track")) is None
    assert h.transform(golden_event("signed_out")) is None  # "" in events: not types.track
    assert h.transformer.drop_reason(golden_event("signed_out")) == "no section (type track)"
    assert h.transform(golden_event("order_completed"))["step"] == "purchase"
    # the kinds no table names any more add nothing to the others
    assert set(h.transform(golden_event("identify"))) == set(GOLDEN["identify"])


def test_tables_extend_page_types() -> None:
    h = harness(tables={"page_types": {"Team Settings": "Account Page"}})
    assert h.transform(page("Team Settings", {}))["category"] == "Account Page"


def test_where_filters_and_counts_as_filtered() -> None:
    h = harness(where="type != 'page'")
    transformer = h.transformer
    assert transformer(golden_event("page")) is None
    assert transformer.matches(golden_event("page")) is False
    assert transformer.drop_reason(golden_event("page")) == "filtered"
    assert transformer(golden_event("group")) is None
    assert transformer.matches(golden_event("group")) is False  # not for Segmentify
    assert transformer(golden_event("identify"))["step"] == "update"


# --- sections -------------------------------------------------------------------------------


def test_every_kind_the_tables_name_is_a_section() -> None:
    spec = crossdock_segmentify.DESTINATION_TYPE.spec
    named = {v for t in ("types", "events") for v in spec.tables[t].values() if v}
    assert named <= set(spec.sections)
    assert set(spec.sections) - named == set()  # and every section is reachable


def test_a_table_naming_an_undeclared_kind_drops_the_event_with_the_reason() -> None:
    h = harness(tables={"events": {"Order Completed": "no_such_kind"}})
    assert h.transform(golden_event("order_completed")) is None
    reason = h.transformer.drop_reason(golden_event("order_completed"))
    assert reason == "unknown section (type track)"


def test_a_section_override_replaces_its_where_and_fields() -> None:
    h = harness(
        mapping={"sections": {"page_view": {"where": "properties.path != '/admin'",
                                            "fields": {"category": "properties.path"}}}}
    )  # fmt: skip
    assert h.transform(golden_event("page"))["category"] == "/mugs"
    assert h.transform(page("Admin", {"path": "/admin"})) is None
    assert h.transformer.drop_reason(page("Admin", {"path": "/admin"})) == (
        "section page_view: where false"
    )


def test_a_section_can_be_dropped_by_the_operator() -> None:
    h = harness(mapping={"sections": {"user_signout": {"drop": True}}})
    assert h.transform(golden_event("signed_out")) is None
    assert h.transformer.drop_reason(golden_event("signed_out")) == "section user_signout: drop"
    assert h.transform(golden_event("signed_in"))["step"] == "signin"


def test_an_empty_section_field_removes_the_common_field_for_that_kind_only() -> None:
    h = harness(mapping={"product_view.pageUrl": ""})
    assert "pageUrl" not in h.transform(golden_event("product_viewed"))
    assert "pageUrl" in h.transform(golden_event("product_added"))


def test_the_dispatch_can_be_replaced() -> None:
    h = harness(mapping={"dispatch": {"select": "type == 'track' && 'custom_event' || ''"}})
    assert h.transform(golden_event("order_completed"))["name"] == "CUSTOM_EVENT"
    assert h.transform(golden_event("page")) is None


def test_an_invalid_section_override_is_reported_with_its_path() -> None:
    with pytest.raises(crossdock.ConfigError) as info:
        harness(mapping={"search.query": "properties.("})
    [problem] = info.value.problems
    assert problem.startswith("mapping.search.query: invalid JMESPath")


def test_functions_are_the_types_not_process_wide() -> None:
    assert {f.name for f in crossdock_segmentify.FUNCTIONS} >= {"segmentify_id", "segmentify_os"}
    with pytest.raises(crossdock.MappingError, match="unknown function segmentify_id"):
        crossdock.compile_expression("segmentify_id(userId)")
    expr = crossdock.compile_expression(
        "segmentify_id(userId)", functions=crossdock_segmentify.FUNCTIONS
    )
    assert expr({"userId": 7.0}) == "7"
