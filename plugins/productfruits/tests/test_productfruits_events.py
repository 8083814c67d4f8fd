"""The recognizer of Product Fruits' own events, against every event the contract names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import crossdock
import crossdock_productfruits
from crossdock.testing.events import golden_events, identify, page, track
from crossdock_productfruits import functions
from crossdock_productfruits.events import (
    FEATURES,
    VERIFIED_EVENTS,
    ProductFruitsEvent,
    describe,
    is_product_fruits_event,
)

# contracts/productfruits.md §4, the VERIFIED table: Event name, Raw name, data {id}.
CONTRACT_TABLE = [
    ("Announcements Banner Action Consumed", "announcements_banner_action_consumed"),
    ("Announcements Banner Dismissed", "announcements_banner_dismissed"),
    ("Announcements Banner Opened", "announcements_banner_opened"),
    ("Announcements Newsfeed Item Consumed", "announcements_newsitem_action_consumed"),
    ("Announcements Popup Action Consumed", "announcements_popup_action_consumed"),
    ("Announcements Popup Dismissed", "announcements_popup_dismissed"),
    ("Announcements Popup Opened", "announcements_popup_opened"),
]

# §4, the categories: the JS API events (tour id argument), checklist events carrying id and
# internalId, and the inferred "Tour Finished" / "tour_finished" naming pattern.
INFERRED = [
    ("tour-finished", "tours", {"id": 17}),
    ("tour-skipped", "tours", {"id": 17}),
    ("tour-advanced", "tours", {"id": 17}),
    ("Tour Finished", "tours", {"id": 17}),
    ("Tour Skipped", "tours", {"id": 17}),
    ("Tour Step Advanced", "tours", {"id": 17}),
    ("tour_finished", "tours", {"id": 17}),
    ("Checklist Item Launched", "checklists", {"id": 3, "internalId": "welcome-1"}),
    ("Checklist Item Completed", "checklists", {"id": 3, "internalId": "welcome-1"}),
    ("Checklist Dismissed", "checklists", {"id": 3}),
    ("checklist_item_completed", "checklists", {"id": 3, "internalId": "welcome-1"}),
    ("Hint Dismissed", "hints", {"id": 9}),
    ("hint_opened", "hints", {"id": 9}),
    ("Survey Completed", "surveys", {"id": 4}),
    ("survey_dismissed", "surveys", {"id": 4}),
    ("Feedback Submitted", "feedback", {"id": 2}),
    ("Announcements Newsfeed Opened", "announcements", {"id": 5}),
]


def test_the_verified_table_is_the_contracts() -> None:
    assert dict(CONTRACT_TABLE) == dict(VERIFIED_EVENTS)


@pytest.mark.parametrize(("name", "raw"), CONTRACT_TABLE)
def test_every_verified_event_is_recognised_in_both_forms(name: str, raw: str) -> None:
    for event_name in (name, raw):
        event = track(event_name, {"id": "c1a7"})
        assert is_product_fruits_event(event)
        assert describe(event) == ProductFruitsEvent(
            name=event_name, feature="announcements", verified=True, id="c1a7"
        )


@pytest.mark.parametrize(("name", "feature", "properties"), INFERRED)
def test_documented_families_are_recognised(name: str, feature: str, properties: dict) -> None:
    event = track(name, properties)
    found = describe(event)
    assert found is not None
    assert found.feature == feature
    assert found.verified is False
    assert found.id == properties["id"]
    assert found.internal_id == properties.get("internalId")


@pytest.mark.parametrize(
    "name",
    [
        "Order Completed",
        "Product Viewed",
        "Signed Up",
        "Tournament Started",  # "Tour" must be a word of its own
        "Tours",  # a feature word alone is not an event
        "tour finished",  # neither the human nor the raw form
        "Tour finished",
        "TOUR_FINISHED",
        "My Tour Finished",
        "checklist",
        "Hinting Enabled",
    ],
)
def test_other_names_are_not_recognised(name: str) -> None:
    assert not is_product_fruits_event(track(name, {"id": 1}))


def test_no_golden_spec_event_is_taken_for_product_fruits() -> None:
    assert not [e["messageId"] for e in golden_events().values() if is_product_fruits_event(e)]


def test_only_track_calls_count() -> None:
    assert not is_product_fruits_event(page("Tour Finished"))
    assert not is_product_fruits_event(identify(event="Tour Finished"))
    assert not is_product_fruits_event({"type": "track", "event": 7, "userId": "u"})


def test_operator_table_forces_either_way() -> None:
    booked = track("Tour Booked", {"id": "t-9"})
    assert is_product_fruits_event(booked)
    assert not is_product_fruits_event(booked, {"Tour Booked": False})
    custom = track("Onboarding Widget Closed")
    assert not is_product_fruits_event(custom)
    found = describe(custom, {"Onboarding Widget Closed": True})
    assert found is not None
    assert found.feature is None


def test_origin_mark_in_context_integration() -> None:
    event = track("Widget Closed")
    event["context"]["integration"] = {"name": "Product Fruits", "version": "1"}
    assert is_product_fruits_event(event)
    event["context"]["integration"] = {"name": "Intercom"}
    assert not is_product_fruits_event(event)


def test_the_shared_function_works_in_where_and_mappings() -> None:
    shared = crossdock_productfruits.crossdock_jmespath_functions()
    flag = crossdock.compile_mapping(
        {"pf": "is_product_fruits_event(@)"}, where="is_product_fruits_event(@)", functions=shared
    )
    assert flag(track("Tour Finished", {"id": 1})) == {"pf": True}
    assert flag(track("Order Completed")) is None
    odd = crossdock.compile_mapping({"pf": "is_product_fruits_event(`3`)"}, functions=shared)
    assert odd({}) == {"pf": False}


@pytest.mark.parametrize("word", sorted(FEATURES))
def test_every_feature_word_starts_an_event_in_both_forms(word: str) -> None:
    assert describe(track(f"{word.capitalize()} Opened")).feature == FEATURES[word]
    assert describe(track(f"{word}_opened")).feature == FEATURES[word]
    assert describe(track(f"{word}-opened")).feature == FEATURES[word]


def test_the_mapping_function_takes_the_operators_answer_for_the_name() -> None:
    booked = track("Tour Booked")
    custom = track("Widget Closed")
    assert functions.is_product_fruits_event(booked) is True
    assert functions.is_product_fruits_event(booked, False) is False
    assert functions.is_product_fruits_event(booked, "no") is False
    assert functions.is_product_fruits_event(custom) is False
    assert functions.is_product_fruits_event(custom, True) is True
    assert functions.is_product_fruits_event(custom, "yes") is True
    assert functions.is_product_fruits_event(["not", "an", "event"], True) is False
    assert functions.is_product_fruits_event(page("Tour Finished"), True) is False


def test_the_lookup_table_reaches_the_function_in_a_mapping() -> None:
    flag = crossdock.compile_mapping(
        {"pf": "is_product_fruits_event(@, lookup('pf', event))"},
        tables={"pf": {"Tour Booked": False, "Widget Closed": True}},
        functions=functions.FUNCTIONS,
    )
    assert flag(track("Tour Booked")) == {"pf": False}
    assert flag(track("Widget Closed")) == {"pf": True}
    assert flag(track("Tour Finished")) == {"pf": True}
    assert flag({"type": "track", "event": ["x"]}) == {"pf": False}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("u-1", True), ("ana@example.com", True), ("", False), ("  \t", False), (None, False),
     (5, False), (["u"], False)],
)  # fmt: skip
def test_pf_nonblank(value: object, expected: bool) -> None:
    assert functions.pf_nonblank(value) is expected


def test_loading_the_plugin_warns_about_nothing() -> None:
    # The function other types' mappings call is shared through the hook, not registered
    # process-wide with the deprecated crossdock.register_function().
    subprocess.run(
        [sys.executable, "-W", "error", "-c", "import crossdock_productfruits"],
        check=True,
        timeout=60,
    )


def test_the_function_is_shared_with_every_mapping_not_registered_globally() -> None:
    [shared] = crossdock_productfruits.crossdock_jmespath_functions()
    assert shared is functions.IS_PRODUCT_FRUITS_EVENT
    assert shared in crossdock_productfruits.DESTINATION_TYPE.functions  # same callable: no clash
    # Importing the plugin registered nothing: a mapping only sees it when it is given.
    with pytest.raises(crossdock.MappingError, match=r"unknown function is_product_fruits_event"):
        crossdock.compile_mapping({"pf": "is_product_fruits_event(@)"})


def test_a_segment_destination_flags_product_fruits_events_with_the_shared_function() -> None:
    # examples/productfruits-to-segment.toml: the `segment` destination (another plugin's type)
    # calls is_product_fruits_event(@) in its mapping; `crossdock test` shows the flag.
    example = Path(__file__).resolve().parents[3] / "examples" / "productfruits-to-segment.toml"
    env = {**os.environ, "WEB_WRITE_KEY": "wk-pf-0123456789", "SEGMENT_WRITE_KEY": "sk-pf-0123"}
    events = [track("Tour Finished", {"id": 17}, userId="u-7"), track("Report Exported")]
    proc = subprocess.run(
        [sys.executable, "-m", "crossdock", "test", "-c", str(example), "segment", "--event", "-"],
        input=orjson.dumps(events),
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    body = orjson.loads(proc.stdout[proc.stdout.index(b"{") : proc.stdout.rindex(b"}") + 1])
    flags = [e.get("integrations") for e in body["batch"]]
    assert flags == [{"Product Fruits": False}, {}]
