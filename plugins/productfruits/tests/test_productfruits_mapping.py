"""Golden mapping cases: Spec event in → exact Product Fruits webhook body out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import crossdock_productfruits
from crossdock.testing.events import golden_event, golden_events, identify, track
from crossdock.testing.harness import DestinationHarness

SETTINGS = {"webhook_url": "https://pf.example.test/hook", "webhook_secret": "pf-secret-1234"}

# contracts/productfruits.md §2.3, the example delivery, as a stored event.
IDENTIFY = {
    "type": "identify",
    "userId": "ana@example.com",
    "anonymousId": "a-77f0c1",
    "traits": {"email": "ana@example.com", "firstName": "Ana", "plan": "pro"},
    "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "crossdock": {"source": "web", "sources": ["web"]},
    },
    "messageId": "0c1f0b5e-2d6a-4c43-9a51-6b2b0b1d3e11",
    "timestamp": "2025-03-02T10:15:03.901Z",
    "sentAt": "2025-03-02T10:15:04.510Z",
    "receivedAt": "2025-03-02T10:15:04.800Z",
    "version": 2,
}

TRACK = {
    "type": "track",
    "userId": "u-1042",
    "event": "Report Exported",
    "properties": {"format": "csv", "rows": 1200},
    "context": {"traits": {"email": "ana@example.com"}, "ip": "203.0.113.9"},
    "integrations": {},
    "messageId": "5b6b2f1e-6a51-4c1c-9a3e-0d0f4f2f7f01",
    "timestamp": "2025-03-02T10:15:04.120Z",
    "receivedAt": "2025-03-02T10:15:04.800Z",
}


def harness(**kwargs: Any) -> DestinationHarness:
    return DestinationHarness(crossdock_productfruits, SETTINGS, **kwargs)


def test_identify_is_the_segment_message_with_the_email_in_context_traits_too() -> None:
    expected = copy.deepcopy(IDENTIFY)
    expected["context"]["traits"] = {"email": "ana@example.com"}
    assert harness().transform(IDENTIFY) == expected


def test_identify_keeps_an_existing_context_email() -> None:
    event = copy.deepcopy(IDENTIFY)
    event["context"]["traits"] = {"email": "work@example.com", "name": "Ana"}
    assert harness().transform(event) == event


def test_track_is_the_segment_message_unchanged() -> None:
    assert harness().transform(TRACK) == TRACK


def test_track_without_email_is_unchanged_and_gains_no_empty_context_traits() -> None:
    event = copy.deepcopy(TRACK)
    del event["context"]["traits"]
    assert harness().transform(event) == event


def test_the_event_itself_is_never_modified() -> None:
    event = copy.deepcopy(IDENTIFY)
    harness().transform(event)
    assert event == IDENTIFY


def test_golden_identify_and_track() -> None:
    h = harness()
    ident = golden_event("identify")
    expected = copy.deepcopy(ident)
    expected["context"].setdefault("traits", {})["email"] = ident["traits"]["email"]
    assert h.transform(ident) == expected
    for event in golden_events().values():
        if event["type"] == "track":
            assert h.transform(event) == event, event["event"]


@pytest.mark.parametrize("kind", ["page", "screen", "group", "alias"])
def test_other_types_are_dropped_on_purpose(kind: str) -> None:
    assert harness().transform(golden_event(kind)) is None


def test_product_fruits_events_are_never_sent_back() -> None:
    h = harness()
    for name in ("Announcements Popup Opened", "announcements_popup_opened", "Tour Finished",
                 "tour-skipped", "Checklist Item Completed"):  # fmt: skip
        assert h.transform(track(name, {"id": 12}, userId="u-1")) is None, name
    assert h.transformer.matches(track("Tour Finished")) is False


def test_events_product_fruits_cannot_match_are_not_sent() -> None:
    h = harness()
    anonymous = {"userId": None}
    assert h.transform(track("Report Exported", **anonymous)) is None
    assert h.transform(identify({"plan": "pro"}, **anonymous)) is None
    # ... but an email is enough: Product Fruits matches by email first.
    by_email = identify({"email": "ana@example.com"}, **anonymous)
    assert h.transform(by_email)["context"]["traits"] == {"email": "ana@example.com"}
    tracked = track("Report Exported", **anonymous)
    tracked["context"]["traits"] = {"email": "ana@example.com"}
    assert h.transform(tracked) == tracked


def test_where_is_honoured() -> None:
    h = harness(where="type == 'identify'")
    assert h.transform(track("Report Exported")) is None
    assert h.transformer.matches(track("Report Exported")) is False
    assert h.transform(identify()) is not None
    assert h.transformer.matches(identify()) is True


def test_mapping_overrides_are_honoured() -> None:
    h = harness(mapping={"traits.plan": "traits.subscription", "context.traits.email": ""})
    event = identify({"email": "ana@example.com", "subscription": "gold"})
    payload = h.transform(event)
    assert payload["traits"] == {"email": "ana@example.com", "subscription": "gold", "plan": "gold"}
    assert "traits" not in payload["context"]


def test_tables_extend_the_recognised_events() -> None:
    h = harness(tables={"product_fruits_events": {"Tour Booked": False, "Widget Closed": True}})
    booked = track("Tour Booked", {"id": "trip-7"})
    assert h.transform(booked) == booked
    assert h.transform(track("Widget Closed")) is None
    assert h.transform(track("Tour Finished")) is None
