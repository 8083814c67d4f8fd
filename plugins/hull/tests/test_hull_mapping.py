"""Golden mapping cases: a Spec event in → the exact Firehose entry the strict fake accepts."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

import crossdock
import crossdock_hull
from crossdock import Delivered, MappingError
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.harness import DestinationHarness
from crossdock_hull.testing import (
    CONNECTOR_ID,
    CONNECTOR_SECRET,
    ORGANIZATION,
    FakeHullFirehose,
    HullEntry,
)

U = "u-1042"
A = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"
USER = {"external_id": U, "anonymous_id": A}
# The visit context of the golden web events, as the track body carries it (issue 11: the
# whole context, not only ip/url/referer; a deliberate change of the golden entries).
WEB_CONTEXT = {
    "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "locale": "en-US",
    "timezone": "Europe/Berlin",
    "campaign": {"name": "spring_sale", "source": "newsletter", "medium": "email"},
}


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "organization": ORGANIZATION,
        "connector_id": CONNECTOR_ID,
        "connector_secret": CONNECTOR_SECRET,
        "firehose_url": url,
        **extra,
    }


async def deliver(events: list[dict[str, Any]], **kwargs: Any) -> list[HullEntry]:
    """Deliver through the plugin to the strict fake; return the entries it accepted."""
    mapping = kwargs.pop("mapping", None)
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url, **kwargs), mapping=mapping) as h,
    ):
        outcomes = await h.deliver(events)
        assert all(isinstance(o, Delivered) for o in outcomes), outcomes
        return fake.entries


def without_iat(entry: HullEntry) -> dict[str, Any]:
    claims = dict(entry.claims)
    assert isinstance(claims.pop("iat"), int)
    return {"type": entry.type, "body": entry.body, "timestamp": entry.timestamp,
            "claims": claims}  # fmt: skip


async def test_identify_becomes_user_traits() -> None:
    [entry] = await deliver([golden_event("identify")])
    assert without_iat(entry) == {
        "type": "traits",
        "timestamp": "2025-03-02T10:15:01.137Z",
        "claims": {
            "iss": CONNECTOR_ID,
            "io.hull.subjectType": "user",
            "io.hull.asUser": {**USER, "email": "ana.silva@example.com"},
        },
        "body": {
            "email": "ana.silva@example.com",
            "first_name": "Ana",
            "last_name": "Silva",
            "name": "Ana Silva",
            "phone": "+49 30 1234567",
            "plan": "pro",
            "created_at": "2024-11-05T08:30:00.000Z",
            "address/city": "Berlin",
            "address/country": "DE",
            "address/postalCode": "10115",
            "address/state": "BE",
            "address/street": "Invalidenstr. 1",
            "company/name": "Acme GmbH",
            "company/id": "c-77",
            "company/industry": "Retail",
            "company/employee_count": 40,
            "company/plan": "enterprise",
            "birthday": "1990-04-12",
            "gender": "female",
            "username": "anasilva",
            "website": "https://ana.example.com",
        },
    }


async def test_identify_trait_rules() -> None:
    event = identify(
        userId="u-9",
        traits={"Email": "x", "email": "  Bob@Example.COM ", "FIRSTNAME": "Bob", "id": "drop",
                "external_id": "drop", "guest_id": "g", "uniqToken": "t", "visitToken": "v",
                "nickname": None, "tags": ["a", "b"], "visits": {"operation": "inc", "value": 1},
                "deep": {"a": {"b": 1, "c": None}}},
        context={"active": True},
    )  # fmt: skip
    event.pop("anonymousId", None)
    [entry] = await deliver([event])
    assert entry.body == {
        "Email": "x",
        "email": "  Bob@Example.COM ",
        "first_name": "Bob",
        "tags": ["a", "b"],
        "visits": {"operation": "inc", "value": 1},
        "deep/a/b": 1,
    }
    assert entry.claims["io.hull.asUser"] == {"external_id": "u-9", "email": "bob@example.com"}
    assert entry.claims["io.hull.active"] is True


async def test_identify_email_claim_only_when_it_looks_like_one() -> None:
    event = identify(userId="u-9", traits={"email": "not-an-email"})
    [entry] = await deliver([event])
    assert "email" not in entry.claims["io.hull.asUser"]
    assert "io.hull.active" not in entry.claims


async def test_track_becomes_user_event() -> None:
    event = golden_event("Order Completed")
    [entry] = await deliver([event])
    assert without_iat(entry) == {
        "type": "track",
        "timestamp": "2025-03-02T10:15:21.877Z",
        "claims": {"iss": CONNECTOR_ID, "io.hull.subjectType": "user", "io.hull.asUser": USER},
        "body": {
            "event": "Order Completed",
            "properties": event["properties"],
            "event_id": "3f98e277-4cbd-47ad-9c90-a9587403e430",
            "created_at": "2025-03-02T10:15:21.877Z",
            "source": "segment",
            "type": "track",
            "ip": "203.0.113.9",
            "url": "https://shop.example.com/checkout/done",
            "referer": "https://www.google.com/",
            **WEB_CONTEXT,
        },
    }


async def test_server_track_has_null_ip_url_referer() -> None:
    event = track("Signed Up", userId="u-3", properties={"plan": "pro"}, context={})
    event.pop("anonymousId", None)
    [entry] = await deliver([event])
    assert entry.body["ip"] is None
    assert entry.body["url"] is None
    assert entry.body["referer"] is None
    assert entry.body["properties"] == {"plan": "pro"}
    assert entry.claims["io.hull.asUser"] == {"external_id": "u-3"}


async def test_page_becomes_page_event() -> None:
    event = golden_event("page")
    [entry] = await deliver([event])
    assert without_iat(entry) == {
        "type": "track",
        "timestamp": "2025-03-02T10:15:03.411Z",
        "claims": {"iss": CONNECTOR_ID, "io.hull.subjectType": "user", "io.hull.asUser": USER},
        "body": {
            "event": "page",
            "properties": {**event["properties"], "name": "Category"},
            "event_id": "9531985d-5d9d-49f8-9818-e811892f902b",
            "created_at": "2025-03-02T10:15:03.411Z",
            "source": "segment",
            "type": "page",
            "ip": "203.0.113.9",
            "url": "https://shop.example.com/mugs",
            "referer": "https://www.google.com/",
            **WEB_CONTEXT,
        },
    }


@pytest.mark.parametrize(
    ("properties", "name", "expected"),
    [
        ({"a": 1, "name": "own"}, None, {"a": 1, "name": "own"}),
        ({"a": 1, "name": "own"}, "Home", {"a": 1, "name": "Home"}),
        ("not an object", "Home", {"name": "Home"}),
        (None, None, {}),
    ],
)
def test_page_properties_get_the_name(properties: Any, name: Any, expected: Any) -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"))
    event = {**golden_event("page"), "properties": properties, "name": name}
    assert h.transform(event)["body"]["properties"] == expected
    track = {**golden_event("Order Completed"), "properties": properties, "name": name}
    assert h.transform(track)["body"]["properties"] == (
        properties if isinstance(properties, dict) else {}
    )


async def test_screen_becomes_screen_event() -> None:
    [entry] = await deliver([golden_event("screen")])
    assert without_iat(entry) == {
        "type": "track",
        "timestamp": "2025-03-02T10:15:04.548Z",
        "claims": {"iss": CONNECTOR_ID, "io.hull.subjectType": "user", "io.hull.asUser": USER},
        "body": {
            "event": "screen",
            "properties": {"product_id": "507f1f77bcf86cd799439011", "name": "Product Detail"},
            "event_id": "36f675cc-81e7-4ef5-a8e2-5d940ed90475",
            "created_at": "2025-03-02T10:15:04.548Z",
            "source": "segment",
            "type": "screen",
            "ip": "198.51.100.4",
            "url": None,
            "referer": None,
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
            "os": {"name": "iOS", "version": "17.5"},
            "device": {"id": "A1B2C3D4-0000-4E5F-8A9B-112233445566", "manufacturer": "Apple",
                       "model": "iPhone15,2", "type": "ios"},
            "app": {"name": "Acme", "version": "3.2.0", "build": "320",
                    "namespace": "com.example.acme"},
            "screen": {"width": 393, "height": 852, "density": 3},
            "network": {"wifi": True, "cellular": False},
        },
    }  # fmt: skip


async def test_group_becomes_account_traits_and_link() -> None:
    event = golden_event("group")
    event["traits"]["domain"] = "acme.example.com"
    [entry] = await deliver([event], handle_groups=True)
    assert without_iat(entry) == {
        "type": "traits",
        "timestamp": "2025-03-02T10:15:05.685Z",
        "claims": {
            "iss": CONNECTOR_ID,
            "io.hull.subjectType": "account",
            "io.hull.asAccount": {"external_id": "c-77", "domain": "acme.example.com"},
            "io.hull.asUser": USER,
        },
        "body": {
            "name": "Acme GmbH",
            "industry": "Retail",
            "employees": 40,
            "plan": "enterprise",
            "website": "https://acme.example.com",
            "email": "hello@acme.example.com",
            "address/city": "Berlin",
            "address/country": "DE",
            "created_at": "2023-01-15T00:00:00.000Z",
            "domain": "acme.example.com",
        },
    }


async def test_later_group_call_moves_the_user() -> None:
    first = golden_event("group")
    second = {**golden_event("group"), "messageId": "g-2", "groupId": "c-88"}
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url, handle_groups=True)) as h,
    ):
        await h.deliver([first])
        await h.deliver([second])
        assert fake.links == {f"external_id:{U}": "external_id:c-88"}
        assert set(fake.accounts) == {"external_id:c-77", "external_id:c-88"}


async def test_alias_becomes_identity_merge() -> None:
    [entry] = await deliver([golden_event("alias")])
    assert without_iat(entry) == {
        "type": "alias",
        "timestamp": "2025-03-02T10:15:06.822Z",
        "claims": {
            "iss": CONNECTOR_ID,
            "io.hull.subjectType": "user",
            "io.hull.asUser": {"external_id": U},
        },
        "body": {"anonymous_id": A},
    }


@pytest.mark.parametrize(
    ("name", "setting"),
    [("page", "store_page_calls"), ("screen", "store_screen_calls"), ("group", "handle_groups")],
)
def test_switched_off_calls_are_filtered(name: str, setting: str) -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9", **{setting: False}))
    assert h.transform(golden_event(name)) is None


def test_group_filtered_by_default() -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"))
    assert h.transform(golden_event("group")) is None


@pytest.mark.parametrize(
    ("integrations", "dropped"),
    [
        ({"Hull": False}, True),
        ({"All": False}, True),
        ({"All": False, "Hull": True}, False),
        ({"Hull": True}, False),
        ({"Segment.io": False}, False),
    ],
)
def test_integrations_opt_out_is_honoured(integrations: dict[str, bool], dropped: bool) -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"))
    event = {**golden_event("Order Completed"), "integrations": integrations}
    assert (h.transform(event) is None) is dropped


def test_mapping_override_changes_event_source() -> None:
    h = DestinationHarness(
        crossdock_hull, settings("http://127.0.0.1:9"), mapping={"body.source": "'crossdock'"}
    )
    assert h.transform(golden_event("Order Completed"))["body"]["source"] == "crossdock"
    assert h.transform(golden_event("page"))["body"]["source"] == "crossdock"


def test_mapping_override_of_a_section_field_and_a_section() -> None:
    h = DestinationHarness(
        crossdock_hull,
        settings("http://127.0.0.1:9"),
        mapping={
            "page.body.event": "'pageview'",  # shorthand: [sections.page.fields]
            "sections": {"alias": {"drop": True}},
        },
    )
    assert h.transform(golden_event("page"))["body"]["event"] == "pageview"
    assert h.transform(golden_event("screen"))["body"]["event"] == "screen"
    assert h.transform(golden_event("alias")) is None
    assert h.transformer.drop_reason(golden_event("alias")) == "section alias: drop"


def test_mapping_override_removes_a_claim() -> None:
    event = golden_event("group")
    event["traits"]["domain"] = "acme.example.com"
    h = DestinationHarness(
        crossdock_hull,
        settings("http://127.0.0.1:9", handle_groups=True),
        mapping={r"group.claims.io\.hull\.asAccount.domain": ""},
    )
    assert h.transform(event)["claims"]["io.hull.asAccount"] == {"external_id": "c-77"}


@pytest.mark.parametrize(
    ("mapping", "path"),
    [
        ({"kind": "type"}, "mapping.kind"),  # an old key with no new field (the dispatch)
        ({"user.id": "userId"}, "mapping.user.id"),  # the old plugin ignored it too
        ({"track.event": "event"}, "mapping.sections.track.fields.event"),
    ],
)
def test_field_outside_the_entry_is_reported(mapping: dict[str, str], path: str) -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"), mapping=mapping)
    with pytest.raises(MappingError) as info:
        h.transformer  # noqa: B018 (building it runs the check)
    assert info.value.path == path
    assert "not a field of a Hull entry" in info.value.message


def test_removing_a_field_outside_the_entry_is_no_problem() -> None:
    mapping = {"kind": "", "track.user.email": ""}
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"), mapping=mapping)
    assert h.transform(golden_event("Order Completed"))["body"]["source"] == "segment"


def test_body_that_is_not_an_object_is_an_error() -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"), mapping={"body": "'x'"})
    with pytest.raises(crossdock.Unsendable) as info:
        h.transform(golden_event("Order Completed"))
    assert info.value.reason == "track: event name required"


def test_where_filters() -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"), where="type == 'track'")
    assert h.transform(golden_event("identify")) is None
    assert h.transform(golden_event("Order Completed")) is not None


def test_entry_without_identity_is_an_error() -> None:
    h = DestinationHarness(
        crossdock_hull,
        settings("http://127.0.0.1:9"),
        mapping={
            r"claims.io\.hull\.asUser.external_id": "",
            r"claims.io\.hull\.asUser.anonymous_id": "",
        },
    )
    with pytest.raises(crossdock.Unsendable) as info:
        h.transform(golden_event("Order Completed"))
    assert info.value.reason == "track: no identity claim (userId, anonymousId or email)"


@pytest.mark.parametrize(
    ("name", "remove", "problem"),
    [
        ("group", "groupId", "group: no account claim (groupId)"),
        ("alias", "previousId", "alias: previousId required"),
        ("Order Completed", "event", "track: event name required"),
    ],
)
def test_entry_hull_would_refuse_is_an_error(name: str, remove: str, problem: str) -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9", handle_groups=True))
    event = golden_event(name)
    del event[remove]
    with pytest.raises(crossdock.Unsendable) as info:
        h.transform(event)
    assert info.value.reason == problem


def test_every_spec_type_has_a_section() -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9", handle_groups=True))
    spec = h.destination.spec
    kinds = {"identify", "track", "page", "screen", "group", "alias"}
    skips = {"opted_out", "page_off", "screen_off", "group_off"}
    assert set(spec.sections) == kinds | skips
    assert all(spec.sections[name].drop for name in skips)
    for name in ("identify", "Order Completed", "page", "screen", "group", "alias"):
        assert h.transform(golden_event(name)) is not None, name
    other = {**golden_event("identify"), "type": "login"}
    assert h.transform(other) is None
    assert h.transformer.drop_reason(other) == "unknown section (type other)"


@pytest.mark.parametrize(
    ("event", "off", "reason"),
    [
        ({**golden_event("Order Completed"), "integrations": {"Hull": False}}, {}, "opted_out"),
        ({**golden_event("page"), "integrations": {"All": False}}, {}, "opted_out"),
        (golden_event("group"), {}, "group_off"),  # handle_groups is off by default
        (golden_event("page"), {"store_page_calls": False}, "page_off"),
        (golden_event("screen"), {"store_screen_calls": False}, "screen_off"),
    ],
)
def test_skipped_events_count_as_filtered(
    event: dict[str, Any], off: dict[str, bool], reason: str
) -> None:
    h = DestinationHarness(
        crossdock_hull, settings("http://127.0.0.1:9", **off), where="type != 'alias'"
    )
    assert h.transform(event) is None
    assert h.transformer.matches(event) is False
    assert h.transformer.drop_reason(event) == f"section {reason}: drop"
    alias = golden_event("alias")
    assert h.transform(alias) is None  # the operator's where still applies
    assert h.transformer.drop_reason(alias) == "filtered"


def test_functions_are_declared_with_the_type_only() -> None:
    assert crossdock_hull.DESTINATION_TYPE.functions == crossdock_hull.FUNCTIONS
    names = {f.name for f in crossdock_hull.FUNCTIONS}
    assert names == {
        "hull_opted_out",
        "hull_attributes",
        "hull_properties",
        "hull_claim",
        "hull_email",
    }
    with pytest.raises(MappingError, match="unknown function hull_attributes"):
        crossdock.compile_mapping({"body": "hull_attributes(traits)"})  # not process-wide


async def test_wire_request_shape() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url + "/")) as h,
    ):
        await h.deliver([golden_event("identify"), golden_event("Order Completed")])
        [request] = fake.requests
        assert request.method == "POST"
        assert request.path == "/"
        assert request.headers["Hull-App-Id"] == CONNECTOR_ID
        assert request.headers["Hull-Access-Token"] == CONNECTOR_SECRET
        assert request.headers["Hull-Organization"] == ORGANIZATION
        assert request.headers["Content-Type"] == "application/json"
        body = request.json()
        assert set(body) == {"batch", "timestamp", "sentAt"}
        assert body["timestamp"] == body["sentAt"]
        assert [set(e) for e in body["batch"]] == [{"type", "body", "headers", "timestamp"}] * 2
        header, _, _ = body["batch"][0]["headers"]["Hull-Access-Token"].partition(".")
        assert header == "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9"


def readme_overrides() -> dict[str, Any]:
    """The ``[destinations.mapping]`` example of the README's mapping section."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("Override a field or a section")[1].split("```toml\n")[1].split("```")[0]
    return tomllib.loads(block)["destinations"]["mapping"]


def test_readme_override_example() -> None:
    h = DestinationHarness(
        crossdock_hull,
        settings("http://127.0.0.1:9", handle_groups=True),
        mapping=readme_overrides(),
    )
    track = golden_event("Order Completed")
    track["context"]["traits"] = {"customer_id": "cust-9"}
    entry = h.transform(track)
    assert entry["body"]["source"] == "crossdock"
    assert entry["claims"]["io.hull.asUser"]["external_id"] == "cust-9"
    page = h.transform(golden_event("page"))
    assert (page["body"]["event"], page["body"]["source"]) == ("pageview", "crossdock")
    group = {**golden_event("group"), "traits": {"domain": "acme.example.com"}}
    assert h.transform(group)["claims"]["io.hull.asAccount"] == {"external_id": "c-77"}
    assert h.transform(golden_event("alias")) is None


def test_track_body_keeps_the_visit_context() -> None:
    h = DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9"))
    event = track("Signed Up", userId="u-3", context={
        "userAgent": "UA/1", "locale": "pt-PT", "campaign": {"name": "spring"},
        "location": {"city": "Porto", "latitude": 41.15, "longitude": -8.61},
        "page": {"url": "https://x.example/"}})  # fmt: skip
    body = h.transform(event)["body"]
    assert list(body)[9:] == ["useragent", "locale", "campaign", "location", "latitude",
                              "longitude"]  # fmt: skip
    assert (body["useragent"], body["locale"], body["campaign"]) == (
        "UA/1",
        "pt-PT",
        {"name": "spring"},
    )
    assert (body["latitude"], body["longitude"]) == (41.15, -8.61)
    assert body["location"]["city"] == "Porto"


def test_operator_changes_the_event_body() -> None:
    h = DestinationHarness(
        crossdock_hull,
        settings("http://127.0.0.1:9"),
        mapping={"body.useragent": "", "body.campaign": "context.campaign.name",
                 "body.channel": "context.channel", "page.body.locale": ""},
    )  # fmt: skip
    event = golden_event("Order Completed")
    event["context"]["channel"] = "web"
    body = h.transform(event)["body"]
    assert "useragent" not in body
    assert (body["campaign"], body["channel"], body["locale"]) == ("spring_sale", "web", "en-US")
    assert "locale" not in h.transform(golden_event("page"))["body"]
