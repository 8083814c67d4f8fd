"""Operators' override keys from before 0.2 (``DestinationType(renamed=...)``): they set the
entry fields they used to, with a ``FutureWarning`` naming the new key."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import crossdock
import crossdock_hull
from crossdock.testing.events import golden_event
from crossdock.testing.harness import DestinationHarness
from crossdock_hull.testing import CONNECTOR_ID, CONNECTOR_SECRET, ORGANIZATION

# The default mapping of 0.1 (git 3dd99f2, plugins/hull/src/crossdock_hull/mapping.toml) but
# `kind`, written as overrides: the fields the old plugin built each entry from.
OLD_DEFAULTS = {
    "timestamp": "timestamp",
    "active": "context.active",
    "user.external_id": "userId",
    "user.anonymous_id": "anonymousId",
    "user.email": "type == 'identify' && traits.email || context.traits.email",
    "traits": "traits",
    "event": "event",
    "name": "name",
    "properties": "properties",
    "event_id": "messageId",
    "created_at": "timestamp",
    "source": "'segment'",
    "ip": "context.ip",
    "url": "context.page.url || properties.url",
    "referer": "context.page.referrer || properties.referrer",
    "account.external_id": "groupId",
    "account.domain": "traits.domain",
    "previous_id": "previousId",
}
NAMES = ("identify", "Order Completed", "page", "screen", "group", "alias")


def harness(mapping: dict[str, Any] | None = None) -> DestinationHarness:
    settings = {
        "organization": ORGANIZATION,
        "connector_id": CONNECTOR_ID,
        "connector_secret": CONNECTOR_SECRET,
        "firehose_url": "http://127.0.0.1:9",
        "handle_groups": True,
    }
    return DestinationHarness(crossdock_hull, settings, mapping=mapping)


def transformer(mapping: dict[str, Any]) -> tuple[Any, list[str]]:
    """The transformer built with ``mapping`` and the FutureWarnings its build gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = harness(mapping).transformer
    return built, [str(w.message) for w in caught if w.category is FutureWarning]


def events() -> list[dict[str, Any]]:
    out = [golden_event(name) for name in NAMES]
    out[0]["context"]["active"] = True
    out[4]["traits"]["domain"] = "acme.example.com"
    return out


def test_old_default_keys_give_the_same_entries_and_warn() -> None:
    new = harness().transformer
    old, caught = transformer(OLD_DEFAULTS)
    for event in events():
        assert old(event) == new(event), event["type"]
    renamed = set(OLD_DEFAULTS) - {"timestamp"}
    assert len(caught) == len(renamed)
    assert any(
        "mapping.traits: this key was renamed; write 'identify.body' and 'group.body'" in text
        for text in caught
    )


def test_old_keys_keep_their_meaning() -> None:
    old, caught = transformer(
        {
            "source": "'crossdock'",
            "user.external_id": "context.traits.customer_id",
            "user.email": "properties.contact",
            "user.anonymous_id": "''",  # an empty claim is left out, as before
            "traits": "context.traits",
            "properties": "context.page",
            "active": "properties.fast",
            "account.domain": "properties.site",
            "previous_id": "properties.old_id",
            "event": "properties.label",
        }
    )
    assert caught
    context = {"traits": {"customer_id": "c-9", "address": {"city": "Porto"}},
               "page": {"url": "https://x.example/"}}  # fmt: skip
    props = {"contact": " Bo@Example.COM ", "title": "Home", "fast": True,
             "site": "acme.example", "old_id": "a-old", "label": "Renamed"}  # fmt: skip

    def entry(kind: str) -> dict[str, Any]:
        event = {**golden_event(kind), "context": context, "properties": props}
        return old(event)

    track = entry("Order Completed")
    assert track["body"]["source"] == "crossdock"
    assert track["body"]["event"] == "Renamed"
    assert track["body"]["properties"] == {"url": "https://x.example/"}
    assert track["claims"]["io.hull.asUser"] == {"external_id": "c-9", "email": "bo@example.com"}
    assert track["claims"]["io.hull.active"] is True
    page = entry("page")
    assert page["body"]["event"] == "page"
    assert page["body"]["properties"] == {"url": "https://x.example/", "name": "Category"}
    identify = entry("identify")
    assert identify["body"] == {"customer_id": "c-9", "address/city": "Porto"}
    group = entry("group")
    assert group["claims"]["io.hull.asAccount"] == {"external_id": "c-77", "domain": "acme.example"}
    assert entry("alias")["body"] == {"anonymous_id": "a-old"}


def test_old_name_key_names_pages_and_screens() -> None:
    old, _ = transformer({"name": "properties.title"})
    for kind in ("page", "screen"):
        event = {**golden_event(kind), "properties": {"title": "Home"}}
        assert old(event)["body"]["properties"] == {"title": "Home", "name": "Home"}
    track = {**golden_event("Order Completed"), "properties": {"title": "Home"}}
    assert old(track)["body"]["properties"] == {"title": "Home"}


def test_old_key_removal_still_removes() -> None:
    old, _ = transformer({"user.anonymous_id": "", "ip": ""})
    entry = old(golden_event("Order Completed"))
    assert "anonymous_id" not in entry["claims"]["io.hull.asUser"]
    assert entry["body"]["ip"] is None  # the body keeps its null placeholder


def test_kind_cannot_be_translated() -> None:
    with pytest.raises(crossdock.MappingError) as info:
        harness({"kind": "type"}).transformer  # noqa: B018 (building it runs the check)
    assert info.value.path == "mapping.kind"
