"""Golden mapping cases: Spec event in → exact Product Fruits webhook body out."""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

import crossdock
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


# ---------------------------------------------------------------------------------------------
# The mapping file carries the rules: sections, dispatch, drop reasons, overrides


def test_the_mapping_file_is_valid_on_its_own_with_the_types_functions() -> None:
    text = resources.files("crossdock_productfruits").joinpath("mapping.toml").read_text()
    spec = crossdock.parse_mapping(text, functions=crossdock_productfruits.FUNCTIONS)
    assert list(spec.sections) == ["product_fruits_event", "identify", "track"]
    assert spec.sections["product_fruits_event"].drop is True
    with pytest.raises(
        crossdock.MappingError, match=r"unknown function is_product_fruits_event\(\)"
    ):
        crossdock.parse_mapping(text)


def test_every_section_the_dispatch_names_exists() -> None:
    # A name the dispatch gives that no section has drops the event at run time
    # ("unknown section"), so the tables and the select literal must name declared sections.
    spec = crossdock_productfruits.DESTINATION_TYPE.spec
    named = set(spec.tables["types"].values()) | {"product_fruits_event"}
    assert "'product_fruits_event'" in (spec.select or "")
    assert named <= set(spec.sections)


def test_functions_are_declared_with_the_type() -> None:
    declared = {f.name for f in crossdock_productfruits.DESTINATION_TYPE.functions}
    assert declared == {"is_product_fruits_event", "pf_nonblank"}


@pytest.mark.parametrize(
    ("event", "reason", "filtered"),
    [
        (golden_event("page"), "no section (type page)", True),
        (golden_event("group"), "no section (type group)", True),
        ({"userId": "u-1", "event": "Report Exported"}, "no section (type other)", True),
        (track("Tour Finished", userId="u-1"), "section product_fruits_event: drop", True),
        (track("Report Exported", userId=None), "section track: where false", False),
        (identify({"plan": "pro"}, userId="  "), "section identify: where false", False),
    ],
)
def test_drop_reasons_and_what_counts_as_filtered(
    event: dict[str, Any], reason: str, filtered: bool
) -> None:
    # Kinds Product Fruits never takes count as filtered (as before the mapping had sections);
    # an identify or track it cannot match to a user counts as dropped, with its reason.
    transformer = harness().transformer
    assert transformer(event) is None
    assert transformer.drop_reason(event) == reason
    assert transformer.matches(event) is not filtered


def test_the_cores_transformer_runs_the_mapping() -> None:
    # No Python transformer: the core's counts (no section or drop: filtered) are the plugin's.
    assert not hasattr(crossdock_productfruits, "crossdock_make_transformer")
    assert isinstance(harness().transformer, crossdock.SectionedMapping)


def test_an_override_naming_an_unknown_section_counts_as_dropped() -> None:
    # An operator's typo is a drop with its reason, not "not for this vendor" (the core's rule).
    transformer = harness(tables={"types": {"screen": "screens"}}).transformer
    screen = golden_event("screen")
    assert transformer(screen) is None
    assert transformer.drop_reason(screen) == "unknown section (type screen)"
    assert transformer.matches(screen) is True


def test_a_sent_event_has_no_drop_reason() -> None:
    transformer = harness().transformer
    assert transformer.drop_reason(TRACK) is None
    assert transformer.matches(TRACK) is True


def test_where_false_is_filtered_before_any_section() -> None:
    transformer = harness(where="type == 'identify'").transformer
    assert transformer.drop_reason(TRACK) == "filtered"
    assert transformer.matches(golden_event("page")) is False


def test_operator_overrides_a_sections_where() -> None:
    # README: send track calls only with a userId (an email alone is no longer enough).
    h = harness(mapping={"sections": {"track": {"where": "pf_nonblank(userId)"}}})
    by_email = track("Report Exported", userId=None)
    by_email["context"]["traits"] = {"email": "ana@example.com"}
    assert h.transform(by_email) is None
    assert h.transformer.drop_reason(by_email) == "section track: where false"
    assert h.transform(TRACK) == TRACK
    assert h.transform(identify({"email": "ana@example.com"}, userId=None)) is not None


def test_operator_sets_a_field_of_one_section_by_shorthand() -> None:
    # README: "track.context.app" adds a field to track calls only.
    h = harness(mapping={"track.context.app": "'web'"})
    assert h.transform(TRACK)["context"] == {**TRACK["context"], "app": "web"}
    assert "app" not in h.transform(IDENTIFY)["context"]


def test_operator_can_send_another_type_through_a_section() -> None:
    h = harness(tables={"types": {"screen": "track"}})
    screen = golden_event("screen")
    assert h.transform(screen) == screen


def test_a_bad_override_is_reported_with_its_path() -> None:
    with pytest.raises(crossdock.ConfigError) as info:
        harness(mapping={"sections": {"track": {"where": "pf_nonblank("}}})
    [problem] = info.value.problems
    assert problem.startswith("mapping.sections.track.where: invalid JMESPath")


# ---------------------------------------------------------------------------------------------
# The README's mapping section


def readme_block(containing: str) -> dict[str, Any]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if containing in b]
    return tomllib.loads(block)


def test_the_readme_shows_the_shipped_mapping() -> None:
    shipped = resources.files("crossdock_productfruits").joinpath("mapping.toml").read_text()
    assert readme_block("[sections.product_fruits_event]") == tomllib.loads(shipped)


def test_the_readme_overrides_work_as_described() -> None:
    example = readme_block("[destinations.mapping.sections.track]")["destinations"]
    h = harness(mapping=example["mapping"], tables=example["tables"])
    event = identify({"email": "ana@example.com", "subscription": "gold"})
    payload = h.transform(event)
    assert payload["traits"]["plan"] == "gold"
    assert "traits" not in payload["context"]
    assert "app" not in payload["context"]
    tracked = h.transform(TRACK)
    assert tracked["context"] == {"ip": "203.0.113.9", "traits": TRACK["context"]["traits"],
                                  "app": "web"}  # fmt: skip
    by_email = copy.deepcopy(TRACK)
    del by_email["userId"]
    assert h.transform(by_email) is None
    screen = golden_event("screen")
    assert h.transform(screen)["context"]["app"] == "web"


def test_golden_bodies_are_byte_identical_to_the_stored_message() -> None:
    # The body is what the core serialises: same keys in the same order as the stored event,
    # the email added last in context.traits (key order is what makes the bytes, not ==).
    h = harness()
    for event in golden_events().values():
        if event["type"] == "track":
            assert orjson.dumps(h.transform(event)) == orjson.dumps(event), event["event"]
    ident = golden_event("identify")
    expected = copy.deepcopy(ident)
    expected["context"]["traits"] = {**ident["context"].get("traits", {}),
                                     "email": ident["traits"]["email"]}  # fmt: skip
    assert orjson.dumps(h.transform(ident)) == orjson.dumps(expected)
