"""The strict FakeInsider itself: contract §8 rules, statuses and answer shapes."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from crossdock_insider.testing import FakeInsider, validate_user

TOKEN = "ucd-test-token-0123456789"
HEADERS = {"X-PARTNER-NAME": "acme", "X-REQUEST-TOKEN": TOKEN, "Content-Type": "application/json"}
GOOD = {"identifiers": {"uuid": "u-1"}, "attributes": {"name": "Ana"}}


async def post(
    fake: FakeInsider,
    body: Any,
    headers: dict[str, str] | None = None,
    path: str = "/api/user/v1/upsert",
    method: str = "POST",
) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, data=data, headers=headers or HEADERS) as r,
    ):
        return r.status, orjson.loads(await r.read()), dict(r.headers)


async def test_full_success_answer_shape() -> None:
    async with FakeInsider() as fake:
        status, body, _ = await post(fake, {"users": [GOOD, GOOD]})
        assert (status, body) == (200, {"data": {"successful": {"count": 2}, "fail": {}}})
        assert fake.users == [GOOD, GOOD]


async def test_partial_failure_answer_shape_matches_the_contract_sample() -> None:
    bad = {
        "identifiers": {"phone_number": "12345"},
        "events": [{"event_name": "purchase", "timestamp": "2021-01-10T21:35:20Z",
                    "event_params": {"currency": "EUR", "quantity": 1}}],
    }  # fmt: skip
    async with FakeInsider() as fake:
        status, body, _ = await post(fake, {"users": [bad]})
        assert status == 200
        assert body == {"data": {"successful": {}, "fail": {"count": 1, "errors": {
            "users.0.identifiers.*.regexp(^\\+[1-9]\\d{6,14}$)": [
                "user has an invalid phone number: 12345"],
            "users.0.events.0.event_params.*.required": [
                "event_group_id parameter is required on purchase event",
                "unit_sale_price parameter is required on purchase event"],
        }}}}  # fmt: skip
        status, body, _ = await post(fake, {"users": [GOOD, bad, GOOD]})
        assert body["data"]["successful"] == {"count": 2}
        assert body["data"]["fail"]["count"] == 1
        assert all(k.startswith("users.1.") for k in body["data"]["fail"]["errors"])
        assert len(fake.failed_users) == 2


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({**HEADERS, "X-PARTNER-NAME": "Acme"}, 400,
         {"success": False, "message": "Partner is invalid."}),
        ({**HEADERS, "X-PARTNER-NAME": "other"}, 400,
         {"success": False, "message": "Partner is invalid."}),
        ({"X-REQUEST-TOKEN": TOKEN, "Content-Type": "application/json"}, 400,
         {"success": False, "message": "Partner is invalid."}),
        ({**HEADERS, "X-REQUEST-TOKEN": "wrong"}, 401,
         {"success": False, "message": "Partner token authentication failed."}),
        ({**HEADERS, "Content-Type": "text/plain"}, 400,
         {"error": "content type must be application/json: bad request"}),
    ],
)  # fmt: skip
async def test_headers_are_checked(headers, status, body) -> None:
    async with FakeInsider() as fake:
        assert (await post(fake, {"users": [GOOD]}, headers))[:2] == (status, body)
        assert fake.users == []


async def test_only_the_upsert_route_exists() -> None:
    async with FakeInsider() as fake:
        assert (await post(fake, {"users": [GOOD]}, path="/api/user/v1/other"))[0] == 404
        assert (await post(fake, {"users": [GOOD]}, method="PUT"))[0] == 405


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "users must be defined: bad request"),
        ({"users": []}, "users must be defined: bad request"),
        ({"users": "x"}, "users must be defined: bad request"),
        (b"{nope", "invalid request body: bad request"),
        ({"users": [GOOD] * 1001}, "users must contain at most 1000 items: bad request"),
        ({"users": [GOOD], "skip_hook": "yes"}, "skip_hook must be boolean: bad request"),
        ({"users": [GOOD], "platform_name": "x"}, "unknown field platform_name: bad request"),
    ],
)
async def test_request_level_errors(body, message) -> None:
    async with FakeInsider() as fake:
        assert (await post(fake, body))[:2] == (400, {"error": message})


async def test_body_over_5_mb_is_refused() -> None:
    big = {"identifiers": {"uuid": "u"}, "attributes": {"custom": {"b": "x" * 5_000_000}}}
    async with FakeInsider() as fake:
        status, body, _ = await post(fake, {"users": [big]})
    assert (status, body) == (
        400,
        {"error": "request body is bigger than maximum allowed size 5,000,000 bytes"},
    )


async def test_failure_modes_switch_on_and_off() -> None:
    async with FakeInsider() as fake:
        fake.rate_limited(12)
        status, body, headers = await post(fake, {"users": [GOOD]})
        assert (status, body, headers["Retry-After"]) == (
            429,
            {"error": "rejected: too many requests"},
            "12",
        )
        fake.rate_limited()
        status, _, headers = await post(fake, {"users": [GOOD]})
        assert status == 429
        assert "Retry-After" not in headers
        fake.forbidden()
        assert (await post(fake, {"users": [GOOD]}))[:2] == (403, {"error": "Invalid api key"})
        fake.server_error()
        assert (await post(fake, {"users": [GOOD]}))[0] == 500
        fake.healthy()
        assert (await post(fake, {"users": [GOOD]}))[0] == 200
        assert fake.users == [GOOD]


def ev(name: str = "signed_in", **extra: Any) -> dict[str, Any]:
    return {"event_name": name, "timestamp": "2021-01-17T14:41:21+03:00", **extra}


@pytest.mark.parametrize(
    ("user", "key", "message"),
    [
        ({"attributes": {"name": "x"}}, "identifiers.required",
         "either insider_id or idenifiers must be specified"),
        ({"identifiers": {"id": "1"}, "attributes": {"name": "x"}}, "identifiers.*.oneof",
         "key must be one of phone_number(pn), email(em) or uuid"),
        ({"identifiers": {"uuid": 12345}, "attributes": {"name": "x"}}, "identifiers.uuid.string",
         "uuid must be string: 12345"),
        ({"identifiers": {"email": "sample"}, "attributes": {"name": "x"}},
         "identifiers.email.email", "not a valid email address: sample"),
        ({"identifiers": {"uuid": "u"}, "attributes": {}}, "attributes.min",
         "attributes must hold at least one attribute"),
        ({"identifiers": {"uuid": "u"}}, "attributes.required",
         "either attributes or events must be specified"),
        ({"identifiers": {"uuid": "u"}, "events": [ev("homepageView")]},
         "events.0.event_name.regexp(^[a-z0-9][a-zA-Z0-9._-]*$)",
         "invalid event name: homepageView"),
        ({"identifiers": {"uuid": "u"}, "events": [{"event_name": "x"}]},
         "events.0.timestamp.required", "timestamp is required"),
        ({"identifiers": {"uuid": "u"}, "events": [ev(timestamp="2021-01-10 21:35")]},
         "events.0.timestamp.rfc3339", "timestamp must be RFC 3339: 2021-01-10 21:35"),
        ({"identifiers": {"uuid": "u"}, "events": [ev("cart_page_view", event_params={
            "unit_sale_price": 1.0})]}, "events.0.event_params.*.required",
         "event_group_id parameter is required on cart_page_view event"),
        ({"identifiers": {"uuid": "u"}, "events": [ev(event_params={"taxonomy": "Phones"})]},
         "events.0.event_params.taxonomy.array", "taxonomy must be an array of strings"),
        ({"identifiers": {"uuid": "u"}, "attributes": {"birthday": "1993-03-12T00:00:00+03:00"}},
         "attributes.birthday.datetime",
         "birthday must be RFC 3339 in UTC (Z): 1993-03-12T00:00:00+03:00"),
        ({"identifiers": {"uuid": "u"}, "attributes": {"loyalty": "Gold"}},
         "attributes.loyalty.default", "loyalty is not a default attribute; use custom"),
        ({"identifiers": {"uuid": "u"}, "attributes": {"age": "33"}},
         "attributes.age.number", "age must be number: 33"),
        ({"identifiers": {"uuid": "u"}, "events": [ev(event_params={"quantity": 1.5})]},
         "events.0.event_params.quantity.integer", "quantity must be integer: 1.5"),
        ({"identifiers": {"uuid": "u"}, "event": [ev()]}, "event.unknown",
         "unknown user field: event"),
    ],
)  # fmt: skip
def test_user_rules(user, key, message) -> None:
    assert message in validate_user(user)[key]


def test_valid_users() -> None:
    assert validate_user({"insider_id": "abc", "events": [ev()]}) == {}
    assert validate_user({
        "identifiers": {"uuid": "u", "email": "a@b.co", "phone_number": "+6598765432",
                        "custom": {"segment_anonymous_id": "a-1"}},
        "attributes": {"birthday": "1993-03-12T00:00:00Z", "email_optin": True,
                       "custom": {"loyalty": "Gold"}, "static_segment_id": [1, 2]},
        "events": [ev("purchase", event_params={"event_group_id": "o", "unit_sale_price": 1.0,
                                                "currency": "EUR", "quantity": 1,
                                                "taxonomy": ["a", "b"], "custom": {"x": 1}})],
        "not_append": True,
    }) == {}  # fmt: skip
