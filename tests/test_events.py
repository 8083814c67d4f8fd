"""crossdock.ingest.normalize: Spec validation, timestamp correction, messageId, loop chain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crossdock import Ingested, IngestError
from crossdock.ingest.normalize import Normalized, format_timestamp, normalize, parse_timestamp

RECEIVED = parse_timestamp("2025-03-02T12:00:15.200Z").timestamp()


def run(events: list[Any], **kwargs: Any) -> Normalized:
    source_id = kwargs.pop("source_id", "web")
    received_at = kwargs.pop("received_at", RECEIVED)
    return normalize(Ingested(events, **kwargs), source_id=source_id, received_at=received_at)


def one(event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = run([event], **kwargs)
    assert len(result.events) == 1
    return result.events[0]


def rejected(events: list[Any], **kwargs: Any) -> IngestError:
    with pytest.raises(IngestError) as info:
        run(events, **kwargs)
    assert info.value.status == 400
    return info.value


TRACK = {"type": "track", "userId": "u-1", "event": "Signed Up"}


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("event", "message", "code"),
    [
        ("nope", "must be a JSON object", "invalid_event"),
        ({"userId": "u"}, "type: required", "type_required"),
        ({"type": "delete", "userId": "u"}, "type: must be one of", "unsupported_type"),
        ({"type": "identify"}, "userId or anonymousId required", "id_required"),
        (
            {"type": "identify", "userId": None, "anonymousId": None},
            "userId or anonymousId required",
            "id_required",
        ),
        ({"type": "identify", "userId": ""}, "userId: must be a non-empty string", "id_not_string"),
        ({"type": "identify", "userId": 42}, "userId: must be a non-empty string", "id_not_string"),
        (
            {"type": "identify", "anonymousId": ["a"]},
            "anonymousId: must be a non-empty string",
            "id_not_string",
        ),
        (
            {"type": "identify", "userId": "u", "traits": []},
            "traits: must be an object",
            "traits_not_object",
        ),
        ({"type": "track", "userId": "u"}, "event: required for track", "event_not_defined"),
        (
            {"type": "track", "userId": "u", "event": ""},
            "event: must be a non-empty string",
            "event_not_string",
        ),
        (
            {"type": "track", "userId": "u", "event": 3},
            "event: must be a non-empty string",
            "event_not_string",
        ),
        (
            {**TRACK, "properties": "x"},
            "properties: must be an object",
            "properties_not_object",
        ),
        (
            {"type": "page", "userId": "u", "name": ""},
            "name: must be a non-empty string",
            "name_not_string",
        ),
        (
            {"type": "screen", "userId": "u", "category": 1},
            "category: must be a non-empty string",
            "category_not_string",
        ),
        (
            {"type": "page", "userId": "u", "properties": []},
            "properties: must be an object",
            "properties_not_object",
        ),
        ({"type": "group", "userId": "u"}, "groupId: required for group", "group_id_required"),
        (
            {"type": "group", "userId": "u", "groupId": 5},
            "groupId: must be a non-empty string",
            "id_not_string",
        ),
        (
            {"type": "group", "userId": "u", "groupId": "g", "traits": 1},
            "traits: must be an object",
            "traits_not_object",
        ),
        ({"type": "alias", "previousId": "a"}, "userId: required for alias", "id_required"),
        (
            {"type": "alias", "anonymousId": "a", "previousId": "a"},
            "userId: required for alias",
            "id_required",
        ),
        (
            {"type": "alias", "userId": "u"},
            "previousId: required for alias",
            "previous_id_required",
        ),
        ({**TRACK, "context": []}, "context: must be an object", "context_not_object"),
        (
            {**TRACK, "integrations": 1},
            "integrations: must be an object",
            "integrations_not_object",
        ),
        (
            {**TRACK, "messageId": "x" * 101},
            "messageId: must be a non-empty string of at",
            "message_id_invalid",
        ),
        ({**TRACK, "messageId": 7}, "messageId: must be a non-empty string", "message_id_invalid"),
        (
            {**TRACK, "timestamp": "yesterday"},
            "timestamp: not an ISO-8601 time",
            "invalid_timestamp",
        ),
        (
            {**TRACK, "timestamp": 1740910515},
            "timestamp: not an ISO-8601 time",
            "invalid_timestamp",
        ),
        (
            {**TRACK, "sentAt": "2025-13-01T00:00:00Z"},
            "sentAt: not an ISO-8601 time",
            "invalid_timestamp",
        ),
        (
            {**TRACK, "timestamp": "2025-03-02T10:00:00Z", "originalTimestamp": "x"},
            "originalTimestamp: not an ISO-8601 time",
            "invalid_timestamp",
        ),
    ],
)
def test_single_message_rules(event: Any, message: str, code: str) -> None:
    err = rejected([event])
    assert err.message.startswith(message), err.message
    assert err.code == code


def test_batch_labels_prefix_the_field() -> None:
    good = dict(TRACK)
    err = rejected(
        [good, good, good, {"type": "track", "userId": "u"}],
        labels=[f"batch[{i}]" for i in range(4)],
    )
    assert err.message == "batch[3].event: required for track"
    assert err.code == "event_not_defined"
    err = rejected([{"type": "identify"}], labels=["batch[0]"])
    assert err.message == "batch[0]: userId or anonymousId required"


def test_default_labels_for_lists() -> None:
    err = rejected([TRACK, {"type": "identify", "userId": ""}])
    assert err.message == "[1].userId: must be a non-empty string"
    assert rejected(["x", TRACK]).message == "[0]: must be a JSON object"


def test_envelope_sent_at_is_checked() -> None:
    err = rejected([TRACK], sent_at="soon")
    assert err.message == "sentAt: not an ISO-8601 time"


def test_validation_is_atomic_and_input_untouched() -> None:
    good = {"type": "identify", "userId": "u", "context": {"ip": "1.2.3.4"}}
    with pytest.raises(IngestError):
        run([good, {"type": "track", "userId": "u"}])
    assert good == {"type": "identify", "userId": "u", "context": {"ip": "1.2.3.4"}}


def test_every_type_valid_minimal() -> None:
    events = [
        {"type": "identify", "anonymousId": "a", "traits": {"email": "a@b.c"}},
        {"type": "track", "userId": "u", "event": "E", "properties": None},
        {"type": "page", "userId": "u", "name": "Home", "category": "Docs"},
        {"type": "screen", "anonymousId": "a"},
        {"type": "group", "userId": "u", "groupId": "g"},
        {"type": "alias", "userId": "u", "previousId": "a"},
    ]
    result = run(events)
    assert [e["type"] for e in result.events] == [e["type"] for e in events]
    assert result.looped == 0


def test_unknown_fields_and_library_pass_through() -> None:
    event = {
        **TRACK,
        "_metadata": {"nodeVersion": "20"},
        "channel": "server",
        "anonymousId": None,
        "context": {"library": {"name": "analytics-node-next", "version": "1.0"}, "ip": "x"},
        "messageId": "node-next-1740910515200-3f1c0d8e-1b9c-4d5f-8a7e-2f4b6c8d0e1f",
    }
    out = one(event)
    assert out["_metadata"] == {"nodeVersion": "20"}
    assert out["channel"] == "server"
    assert out["anonymousId"] is None
    assert out["context"]["library"] == {"name": "analytics-node-next", "version": "1.0"}
    assert out["context"]["ip"] == "x"
    assert out["messageId"] == event["messageId"]


# ---------------------------------------------------------------------------------------------
# messageId, receivedAt, timestamps


def test_message_id_stamped_when_absent() -> None:
    a, b = run([dict(TRACK), {**TRACK, "messageId": None}]).events
    for event in (a, b):
        parsed = uuid.UUID(event["messageId"])
        assert parsed.version == 4
        assert str(parsed) == event["messageId"]
    assert a["messageId"] != b["messageId"]


def test_received_at_and_no_client_time() -> None:
    out = one(dict(TRACK))
    assert out["receivedAt"] == "2025-03-02T12:00:15.200Z"
    assert out["timestamp"] == "2025-03-02T12:00:15.200Z"
    assert "originalTimestamp" not in out
    assert "sentAt" not in out


def test_contract_worked_example_envelope_sent_at() -> None:
    # Client clock 10 s behind: event at device 12:00:00, sent at device 12:00:05,
    # received at server 12:00:15.200 -> 12:00:10.200.
    out = one(
        {**TRACK, "timestamp": "2025-03-02T12:00:00.000Z"},
        sent_at="2025-03-02T12:00:05.000Z",
    )
    assert out["timestamp"] == "2025-03-02T12:00:10.200Z"
    assert out["originalTimestamp"] == "2025-03-02T12:00:00.000Z"
    assert out["sentAt"] == "2025-03-02T12:00:05.000Z"
    assert out["receivedAt"] == "2025-03-02T12:00:15.200Z"


def test_message_sent_at_wins_over_envelope() -> None:
    out = one(
        {**TRACK, "timestamp": "2025-03-02T12:00:00Z", "sentAt": "2025-03-02T12:00:10+00:00"},
        sent_at="2025-03-02T12:00:05.000Z",
    )
    assert out["timestamp"] == "2025-03-02T12:00:05.200Z"
    assert out["sentAt"] == "2025-03-02T12:00:10.000Z"


def test_no_sent_at_keeps_client_timestamp_rendered() -> None:
    out = one({**TRACK, "timestamp": "2025-03-02T13:00:00.5+01:00"})
    assert out["timestamp"] == "2025-03-02T12:00:00.500Z"
    assert out["originalTimestamp"] == "2025-03-02T12:00:00.500Z"


def test_future_timestamp_is_kept() -> None:
    out = one({**TRACK, "timestamp": "2025-03-02T12:10:00Z"}, sent_at="2025-03-02T12:00:00Z")
    assert out["timestamp"] == "2025-03-02T12:10:15.200Z"


def test_upstream_normalised_event_is_not_corrected_twice() -> None:
    event = {
        **TRACK,
        "originalTimestamp": "2025-03-02T12:00:00.000Z",
        "sentAt": "2025-03-02T12:00:05.000Z",
        "timestamp": "2025-03-02T12:00:10.200Z",
        "receivedAt": "2025-03-02T12:00:15.200Z",
    }
    out = one(event, received_at=RECEIVED + 60)
    assert out["timestamp"] == "2025-03-02T12:00:10.200Z"
    assert out["originalTimestamp"] == "2025-03-02T12:00:00.000Z"
    assert out["receivedAt"] == "2025-03-02T12:01:15.200Z"


def test_format_and_parse_timestamp() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1740910515.2) == "2025-03-02T10:15:15.200Z"
    assert format_timestamp(1740910515.9996) == "2025-03-02T10:15:16.000Z"
    assert format_timestamp(-0.001) == "1969-12-31T23:59:59.999Z"
    naive = datetime(2025, 3, 2, 10, 15, 4, 120_000)
    assert format_timestamp(naive) == "2025-03-02T10:15:04.120Z"
    aware = datetime(2025, 3, 2, 11, 15, 4, 120_000, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(aware) == "2025-03-02T10:15:04.120Z"
    assert parse_timestamp("2025-03-02T10:15:04.120Z") == datetime(
        2025, 3, 2, 10, 15, 4, 120_000, tzinfo=UTC
    )
    assert parse_timestamp("2025-03-02").tzinfo is not None
    for bad in ("", "now", "2025-02-30T00:00:00Z", 12):
        with pytest.raises(ValueError, match=r".+"):
            parse_timestamp(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Loop chain


def test_chain_is_recorded() -> None:
    out = one(dict(TRACK), source_id="web")
    assert out["context"]["crossdock"] == {"source": "web", "sources": ["web"]}
    out2 = one(out, source_id="hull")
    assert out2["context"]["crossdock"] == {"source": "hull", "sources": ["web", "hull"]}


def test_looped_events_are_dropped_and_counted() -> None:
    back = {**TRACK, "context": {"crossdock": {"source": "seg", "sources": ["hull", "seg"]}}}
    fresh = {**TRACK, "context": {"crossdock": {"source": "seg", "sources": ["seg"]}}}
    result = run([back, fresh, dict(TRACK)], source_id="hull")
    assert result.looped == 1
    assert [e["context"]["crossdock"]["sources"] for e in result.events] == [
        ["seg", "hull"],
        ["hull"],
    ]


def test_shared_context_is_not_mutated() -> None:
    shared = {"ip": "1.1.1.1"}
    a, b = run([{**TRACK, "context": shared}, {**TRACK, "context": shared}]).events
    assert shared == {"ip": "1.1.1.1"}
    assert a["context"] is not b["context"]


def test_other_keys_of_the_mark_are_kept() -> None:
    marked = {**TRACK, "context": {"crossdock": {"origin": "hull"}}}
    out = one(marked, source_id="hull")
    assert out["context"]["crossdock"] == {"origin": "hull", "source": "hull", "sources": ["hull"]}
    assert marked["context"]["crossdock"] == {"origin": "hull"}  # the input is not modified


def test_garbage_chain_is_ignored() -> None:
    out = one({**TRACK, "context": {"crossdock": {"sources": "web"}}}, source_id="web")
    assert out["context"]["crossdock"]["sources"] == ["web"]


# ---------------------------------------------------------------------------------------------
# The test kit: factories and golden events

ECOMMERCE_V2 = [
    "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed",
    "Promotion Clicked", "Product Clicked", "Product Viewed", "Product Added", "Product Removed",
    "Cart Viewed", "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
    "Payment Info Entered", "Order Completed", "Order Updated", "Order Refunded",
    "Order Cancelled", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
    "Product Added to Wishlist", "Product Removed from Wishlist",
    "Wishlist Product Added to Cart", "Product Shared", "Cart Shared", "Product Reviewed",
]  # fmt: skip
B2B = [
    "Signed Up", "Signed In", "Signed Out", "Account Created", "Account Deleted",
    "Trial Started", "Trial Ended",
]  # fmt: skip


def test_golden_events_cover_spec_and_normalize() -> None:
    from crossdock.testing.events import golden_event, golden_events

    events = golden_events()
    for kind in ["identify", "track", "page", "screen", "group", "alias"]:
        assert events[kind]["type"] == kind
    for name in ECOMMERCE_V2 + B2B:
        event = golden_event(name)
        assert event["type"] == "track"
        assert event["event"] == name
        assert event["properties"]
    assert len(events) == 6 + len(ECOMMERCE_V2) + len(B2B)
    result = run(list(events.values()))
    assert len(result.events) == len(events)
    assert result.looped == 0
    order = golden_event("order_completed")
    assert order["properties"]["products"][0]["variant"] == "350 ml"
    assert isinstance(golden_event("Product Reviewed")["properties"]["rating"], str)


def test_golden_events_are_fresh_copies() -> None:
    from crossdock.testing.events import golden_event

    first = golden_event("Order Completed")
    first["properties"]["order_id"] = "changed"
    assert golden_event("Order Completed")["properties"]["order_id"] == "A-5521"
    with pytest.raises(KeyError, match="order_completed"):
        golden_event("Order Teleported")


def test_factories_make_valid_events() -> None:
    from crossdock.testing import events as kit

    built = [
        kit.make_event(),
        kit.track("Order Completed", {"revenue": 9.5}, userId="u-7"),
        kit.identify({"plan": "free"}, drop=("userId",)),
        kit.page(None),
        kit.screen("Main"),
        kit.group("g-1"),
        kit.alias("anon-1", "u-1"),
    ]
    result = run(built)
    assert [e["type"] for e in result.events] == [
        "track", "track", "identify", "page", "screen", "group", "alias",
    ]  # fmt: skip
    assert built[1]["properties"] == {"revenue": 9.5}
    assert built[1]["userId"] == "u-7"
    assert "userId" not in built[2]
    assert "name" not in built[3]
    assert built[0]["messageId"] != kit.make_event()["messageId"]
    err = rejected([kit.track(drop=("event",))])
    assert err.message == "event: required for track"
