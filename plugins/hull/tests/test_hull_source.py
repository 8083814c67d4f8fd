"""The ``hull`` source: notification → Spec messages, filters, authentication and the answer."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock import IngestError, Secret, Source
from crossdock.testing.harness import structure_settings
from crossdock_hull import SOURCE_TYPE, HullIngestor, HullSourceSettings
from crossdock_hull.notification import NotificationMapper, hull_time
from crossdock_hull.testing import CONNECTOR_SECRET, hull_message, hull_notification

VIP = {"id": "seg-1", "name": "VIP", "type": "users_segment"}
LEADS = {"id": "seg-2", "name": "Leads", "type": "users_segment"}
ACME_SEGMENT = {"id": "aseg-1", "name": "Enterprise", "type": "accounts_segment"}

USER = {
    "id": "hull-id-1",
    "email": "ana@example.com",
    "external_id": "u-1042",
    "anonymous_ids": ["a-77f0c1", "a-2"],
    "name": "Ana",
    "traits_plan": "pro",
    "clearbit/company": "Acme",
}
ACCOUNT = {"id": "hull-acc-1", "external_id": "g-9", "domain": "acme.com", "plan": "enterprise"}


def mapper(**settings: Any) -> NotificationMapper:
    return NotificationMapper(
        HullSourceSettings(connector_secret=Secret(CONNECTOR_SECRET), **settings)
    )


def changes(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"is_new": False, "user": {}, "account": {}, "segments": {},
                            "account_segments": {}}  # fmt: skip
    return {**base, **parts}


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "event_id": f"ev-{name}",
        "event_source": "track",
        "event_type": "track",
        "properties": {"plan": "pro"},
        "context": {"ip": "203.0.113.9", "useragent": "UA/1",
                    "page": {"url": "https://acme.com/p", "host": "acme.com", "path": "/p"},
                    "referrer": {"url": "https://google.com/"}},
        "anonymous_id": None,
        "created_at": "2018-10-08 16:33:15 UTC",
        **extra,
    }  # fmt: skip


def test_identify_when_segments_change() -> None:
    message = hull_message(
        USER, segments=[VIP, LEADS], message_id="msg-1",
        changes=changes(segments={"entered": [VIP]}),
    )  # fmt: skip
    out = mapper(attributes=["email", "traits_plan", "clearbit/company"]).message(message, "k")
    assert out == [
        {
            "type": "identify",
            "messageId": "hull:k:identify",
            "userId": "u-1042",
            "anonymousId": "a-77f0c1",
            "traits": {"email": "ana@example.com", "plan": "pro", "clearbit_company": "Acme",
                       "hull_segments": ["VIP", "Leads"]},
            "context": {"active": False, "ip": 0},
            "integrations": {"Hull": False},
        }
    ]  # fmt: skip


def test_no_identify_when_only_unselected_attributes_change() -> None:
    message = hull_message(USER, segments=[VIP], changes=changes(user={"name": ["A", "Ana"]}))
    assert mapper(attributes=["email"]).message(message, "k") == []


def test_identify_when_a_selected_attribute_changes() -> None:
    message = hull_message(USER, segments=[VIP], changes=changes(user={"name": ["A", "Ana"]}))
    [identify] = mapper(attributes=["name"]).message(message, "k")
    assert identify["traits"] == {"name": "Ana", "hull_segments": ["VIP"]}


def test_account_attribute_change_and_group() -> None:
    message = hull_message(
        USER, account=ACCOUNT, segments=[VIP], account_segments=[ACME_SEGMENT],
        changes=changes(account={"plan": ["pro", "enterprise"]}),
    )  # fmt: skip
    identify, group = mapper(attributes=["account.plan", "account.domain"]).message(message, "k")
    assert identify["traits"] == {
        "account_plan": "enterprise",
        "account_domain": "acme.com",
        "hull_segments": ["VIP"],
    }
    assert group == {
        "type": "group",
        "messageId": "hull:k:group",
        "userId": "u-1042",
        "anonymousId": "a-77f0c1",
        "groupId": "g-9",
        "traits": {"plan": "enterprise", "domain": "acme.com", "hull_segments": ["Enterprise"]},
        "context": {"active": False, "ip": 0},
        "integrations": {"Hull": False},
    }


@pytest.mark.parametrize(
    ("settings", "sent"),
    [
        ({}, True),
        ({"send_groups": False}, False),
        ({"account_segments": ["Enterprise"]}, True),
        ({"account_segments": ["aseg-1"]}, True),  # by id
        ({"account_segments": ["SMB"]}, False),
        ({"account_segments": ["ALL"]}, True),
        ({"account_segments": []}, True),
        ({"send_groups": False, "account_segments": ["Enterprise"]}, False),
    ],
)
def test_groups_can_be_switched_off_or_filtered(settings: dict[str, Any], sent: bool) -> None:
    message = hull_message(
        USER, account=ACCOUNT, segments=[VIP], account_segments=[ACME_SEGMENT],
        changes=changes(account={"plan": ["pro", "enterprise"]}),
    )  # fmt: skip
    out = mapper(attributes=["account.plan"], **settings).message(message, "k")
    assert [m["type"] for m in out] == (["identify", "group"] if sent else ["identify"])


def test_group_settings_from_the_config() -> None:
    settings = structure_settings(
        SOURCE_TYPE,
        {"connector_secret": CONNECTOR_SECRET, "send_groups": False, "account_segments": ["A"]},
    )
    assert (settings.send_groups, settings.account_segments) == (False, ["A"])


def test_group_falls_back_to_hull_account_id() -> None:
    account = {"id": "hull-acc-2", "domain": "b.com"}
    message = hull_message(
        USER, account=account, changes=changes(account_segments={"entered": [ACME_SEGMENT]})
    )
    [identify, group] = mapper().message(message, "k")
    assert identify["type"] == "identify"
    assert group["groupId"] == "hull-acc-2"


def test_events_become_track_page_screen() -> None:
    message = hull_message(
        USER,
        events=[
            event("Order Completed"),
            event("page", properties={"name": "Pricing", "url": "https://acme.com/pricing"}),
            event("screen", properties={"name": "Home"}, anonymous_id="a-device"),
        ],
    )
    track, page, screen = mapper().message(message, "k")
    assert track == {
        "type": "track",
        "messageId": "ev-Order Completed",
        "userId": "u-1042",
        # the user's anonymous id comes from the first event that has one (contract §5.2)
        "anonymousId": "a-device",
        "event": "Order Completed",
        "properties": {"plan": "pro"},
        "context": {
            "active": True,
            "ip": "203.0.113.9",
            "userAgent": "UA/1",
            "page": {"url": "https://acme.com/p", "host": "acme.com", "path": "/p",
                     "referrer": "https://google.com/"},
        },
        "timestamp": "2018-10-08T16:33:15Z",
        "integrations": {"Hull": False},
    }  # fmt: skip
    assert page["type"] == "page"
    assert page["name"] == "Pricing"
    assert page["context"]["page"]["url"] == "https://acme.com/pricing"
    assert "event" not in page
    assert screen["type"] == "screen"
    assert screen["name"] == "Home"
    assert screen["anonymousId"] == "a-device"


def test_segment_and_crossdock_events_are_not_sent_back() -> None:
    message = hull_message(
        USER,
        events=[
            event("From Segment", event_source="segment"),
            event("From Crossdock", event_source="crossdock"),
            event("Native"),
        ],
    )
    assert [m["event"] for m in mapper().message(message, "k")] == ["Native"]
    forwarded = mapper(forward_events=True).message(message, "k")
    assert [m["event"] for m in forwarded] == ["From Segment", "From Crossdock", "Native"]


def test_event_allow_list() -> None:
    message = hull_message(USER, events=[event("A"), event("B"), event("page")])
    assert [
        m.get("event", m["type"]) for m in mapper(events=["B", "page"]).message(message, "k")
    ] == [
        "B",
        "page",
    ]
    assert mapper(events=[]).message(message, "k") == []


@pytest.mark.parametrize(
    ("segments", "sent"),
    [(None, True), ([], True), (["ALL"], True), (["VIP"], True), (["seg-1"], True),
     (["Leads"], False), (["seg-9"], False)],
)  # fmt: skip
def test_synchronized_segments_filter(segments: list[str] | None, sent: bool) -> None:
    message = hull_message(USER, segments=[VIP], events=[event("A")])
    assert bool(mapper(synchronized_segments=segments).message(message, "k")) is sent


def test_user_without_ids_is_skipped() -> None:
    message = hull_message({"id": "h", "email": "x@example.com"}, events=[event("A")],
                           changes=changes(segments={"entered": [VIP]}))  # fmt: skip
    assert mapper().message(message, "k") == []


def test_anonymous_only_user() -> None:
    message = hull_message({"id": "h", "anonymous_ids": ["a-1"]}, events=[event("A")])
    [track] = mapper().message(message, "k")
    assert "userId" not in track
    assert track["anonymousId"] == "a-1"


def test_hull_time() -> None:
    assert hull_time("2018-10-08 16:33:15 UTC") == "2018-10-08T16:33:15Z"
    assert hull_time("2018-10-08T16:33:15.120Z") == "2018-10-08T16:33:15.120Z"
    assert hull_time("yesterday") is None
    assert hull_time(12) is None


def test_long_ids_are_hashed_to_fit_message_id() -> None:
    message = hull_message(USER, events=[event("A", event_id="e" * 150)])
    [track] = mapper().message(message, "k")
    assert len(track["messageId"]) <= 100


def test_notification_message_ids_are_stable() -> None:
    body = hull_notification(
        [hull_message(USER, segments=[VIP], changes=changes(segments={"left": [LEADS]}),
                      message_id="m-1")]
    )  # fmt: skip
    first = mapper().messages(body)
    again = mapper().messages(body)
    assert (
        [m["messageId"] for m in first] == [m["messageId"] for m in again] == ["hull:m-1:identify"]
    )


# ---------------------------------------------------------------------------------------------
# The ingestor over real HTTP


def make_source(**settings: Any) -> Source:
    structured = structure_settings(  # type: ignore[arg-type]
        SOURCE_TYPE, {"connector_secret": CONNECTOR_SECRET, **settings}
    )
    return Source(id="hull-in", type="hull", path=None, settings=structured)


async def post(ingestor: HullIngestor, body: Any) -> tuple[int, Any]:
    async def handle(request: web.Request) -> web.Response:
        try:
            ingested = await ingestor.ingest(request)
        except IngestError as exc:
            return web.json_response({"code": exc.code, "message": exc.message}, status=exc.status)
        return web.json_response(
            {"events": list(ingested.events), "body": ingested.body}, headers=ingested.headers
        )

    app = web.Application()
    [route] = ingestor.routes()
    app.router.add_route(route.method, route.path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}{route.path}"
            async with session.post(url, data=data) as response:
                return response.status, await response.json()
    finally:
        await runner.cleanup()


def test_source_type_and_settings() -> None:
    assert SOURCE_TYPE.default_path == "/hooks/hull"
    source = make_source()
    assert source.settings.synchronized_segments is None
    assert source.settings.attributes == []
    assert source.settings.events is None
    assert source.settings.forward_events is False
    assert CONNECTOR_SECRET not in repr(source.settings)


async def test_ingest_answers_flow_control() -> None:
    body = hull_notification([hull_message(USER, events=[event("A")])])
    status, answer = await post(HullIngestor(make_source()), body)
    assert status == 200
    assert answer["body"] == {
        "flow_control": {"type": "next", "size": 50, "in": 1},
        "metrics": [],
        "errors": [],
    }
    assert [e["event"] for e in answer["events"]] == ["A"]


async def test_ingest_refuses_a_wrong_secret() -> None:
    body = hull_notification([hull_message(USER, events=[event("A")])], secret="nope")
    status, answer = await post(HullIngestor(make_source()), body)
    assert (status, answer["code"]) == (401, "invalid_signature")
    assert CONNECTOR_SECRET not in orjson.dumps(answer).decode()


async def test_ingest_requires_configuration() -> None:
    body = hull_notification([hull_message(USER)])
    del body["configuration"]
    status, answer = await post(HullIngestor(make_source()), body)
    assert (status, answer["code"]) == (400, "missing_configuration")


async def test_ingest_refuses_invalid_json_and_messages() -> None:
    ingestor = HullIngestor(make_source())
    assert (await post(ingestor, b"{nope"))[0] == 400
    assert (await post(ingestor, [1, 2]))[0] == 400
    body = hull_notification([])
    body["messages"] = "x"
    assert (await post(ingestor, body))[0] == 400


async def test_other_channels_are_acknowledged_and_ignored() -> None:
    body = hull_notification([hull_message(USER, events=[event("A")])], channel="ship:update")
    status, answer = await post(HullIngestor(make_source()), body)
    assert status == 200
    assert answer["events"] == []
    assert answer["body"]["flow_control"] == {"type": "next", "size": 10, "in": 1}


async def test_configured_path_is_served() -> None:
    source = make_source()
    ingestor = HullIngestor(Source("h", "hull", "/custom/hull", source.settings))
    assert [r.path for r in ingestor.routes()] == ["/custom/hull"]


async def test_oversized_body_is_413_like_hulls_toolkit(monkeypatch: pytest.MonkeyPatch) -> None:
    import crossdock_hull.ingestor

    monkeypatch.setattr(crossdock_hull.ingestor, "MAX_BODY_BYTES", 1024 * 1024)
    body = hull_notification([hull_message(USER)])
    body["padding"] = "x" * (1024 * 1024)
    status, answer = await post(HullIngestor(make_source()), body)
    assert (status, answer["code"]) == (413, "entity_too_large")
    assert answer["message"] == "body: larger than 1 MB"


async def test_invalid_json_names_the_byte() -> None:
    status, answer = await post(HullIngestor(make_source()), b'{"channel": nope}')
    assert (status, answer["code"]) == (400, "invalid_json")
    assert answer["message"].startswith("body: invalid JSON (")
    assert "at byte 12" in answer["message"]
