"""Per-event outcomes against the strict fake: delivered, isolated rejections with the vendor's
reason, retries, paused credentials; plus the fake's own strictness."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

import crossdock
import crossdock_segmentify
from crossdock.testing.events import golden_events, make_event, track
from crossdock.testing.fakes import Answer
from crossdock.testing.harness import DestinationHarness
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, FakeSegmentify


def harness(fake: FakeSegmentify, **kwargs: Any) -> DestinationHarness:
    settings = kwargs.pop("settings", None) or fake.settings()
    return DestinationHarness(crossdock_segmentify, settings, **kwargs)


def mappable() -> list[dict[str, Any]]:
    return [e for slug, e in golden_events().items() if slug != "group"]


def same_events(got: list[Any], expected: list[Any]) -> bool:
    def key(e: Any) -> bytes:
        return orjson.dumps(e, option=orjson.OPT_SORT_KEYS)

    return sorted(map(key, got)) == sorted(map(key, expected))


def no_ids() -> dict[str, Any]:
    return make_event("track", event="Signed In", drop=("userId", "anonymousId"))


def no_order_id() -> dict[str, Any]:
    return track("Order Completed", {"total": 10.0, "products": []})


async def test_batch_is_one_json_array_with_key_origin_and_content_type() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        events = mappable()[:10]
        outcomes = await h.deliver(events)
        assert outcomes == [crossdock.DELIVERED] * 10
        [request] = fake.requests
        assert request.method == "POST"
        assert request.path == "/add/events/v1.json"
        assert request.query == {"apiKey": DEFAULT_API_KEY}
        assert request.headers["Origin"] == DEFAULT_ORIGIN
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Accept"] == "application/json"
        assert request.json() == [h.transform(e) for e in events]
        assert fake.events == request.json()


async def test_every_mapped_golden_event_is_accepted() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        events = mappable()
        outcomes = await h.deliver(events)
        assert outcomes == [crossdock.DELIVERED] * len(events)
        assert not fake.refusals
        assert {e["name"] for e in fake.events} == {
            "PAGE_VIEW", "PRODUCT_VIEW", "BASKET_OPERATIONS", "CHECKOUT", "USER_OPERATIONS",
            "USER_CHANGE", "SEARCH", "CUSTOM_EVENT",
        }  # fmt: skip


@pytest.mark.parametrize("error_status", [400, 200])
async def test_bad_events_are_isolated_and_rejected_with_the_vendor_reason(
    error_status: int,
) -> None:
    async with FakeSegmentify(error_status=error_status) as fake, harness(fake) as h:
        good = mappable()[:6]
        events = [good[0], good[1], no_ids(), good[2], good[3], no_order_id(), good[4], good[5]]
        outcomes = await h.deliver(events)
        for i in (0, 1, 3, 4, 6, 7):
            assert outcomes[i] == crossdock.DELIVERED, (i, outcomes[i])
        missing, invalid = outcomes[2], outcomes[5]
        assert isinstance(missing, crossdock.Rejected)
        assert missing.reason.startswith("Segmentify NO_USERID: ")
        assert missing.status == error_status
        assert "NO_USERID" in (missing.body or "")
        assert isinstance(invalid, crossdock.Rejected)
        assert invalid.reason == "Segmentify INVALID_EVENT: CHECKOUT purchase needs orderNo"
        # halves go out concurrently: compare without order
        assert same_events(fake.events, [h.transform(e) for e in good])


async def test_missing_session_id_is_rejected_alone() -> None:
    async with (
        FakeSegmentify() as fake,
        harness(fake, mapping={"sessionId": "properties.sid"}) as h,
    ):
        events = [track("A", {"sid": "s-1"}), track("B", {}), track("C", {"sid": "s-3"})]
        outcomes = await h.deliver(events)
        assert outcomes[0] == outcomes[2] == crossdock.DELIVERED
        assert isinstance(outcomes[1], crossdock.Rejected)
        assert outcomes[1].reason.startswith("Segmentify NO_SESSIONID")
        assert sorted(e["type"] for e in fake.events) == ["A", "C"]


async def test_bad_input_is_rejected_alone() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        items = h.items([track("A", {}), track("B", {})])
        items.insert(1, crossdock.BatchItem({}, "oops", b'"oops"'))
        outcomes = await h.deliver_items(items)
        assert outcomes[0] == outcomes[2] == crossdock.DELIVERED
        assert isinstance(outcomes[1], crossdock.Rejected)
        assert outcomes[1].reason == "Segmentify BAD_INPUT: an event must be a JSON object"


async def test_halving_costs_a_few_requests_for_one_bad_event_in_a_full_batch() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        events = [track("E", {"i": i}) for i in range(50)]
        events[37] = no_ids()
        outcomes = await h.deliver(events)
        assert sum(isinstance(o, crossdock.Rejected) for o in outcomes) == 1
        assert isinstance(outcomes[37], crossdock.Rejected)
        assert len(fake.events) == 49
        assert len(fake.requests) <= 2 * 6 + 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_server_errors_are_retried(status: int) -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(status, "busy")
        outcomes = await h.deliver(mappable()[:3])
        assert all(isinstance(o, crossdock.RetryLater) for o in outcomes), outcomes


async def test_429_honours_retry_after() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.rate_limited(seconds=11)
        outcomes = await h.deliver(mappable()[:2])
        assert [o.after for o in outcomes] == [11.0, 11.0]  # type: ignore[union-attr]
        fake.healthy()
        assert await h.deliver(mappable()[:2]) == [crossdock.DELIVERED] * 2


async def test_no_answer_is_retried() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.script([Answer(drop=True)])
        outcomes = await h.deliver(mappable()[:2])
        assert all(isinstance(o, crossdock.RetryLater) for o in outcomes), outcomes


@pytest.mark.parametrize("status", [401, 403])
async def test_401_403_reject_the_credentials(status: int) -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(status, {"statusCode": "NO_ACCOUNT", "statusText": "nope"})
        outcomes = await h.deliver(mappable()[:2])
        assert all(isinstance(o, crossdock.CredentialsRejected) for o in outcomes), outcomes
        assert outcomes[0].reason == "Segmentify NO_ACCOUNT: nope"  # type: ignore[union-attr]


@pytest.mark.parametrize("error_status", [400, 200])
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"api_key": "00000000-0000-0000-0000-000000000000"}, "NO_ACCOUNT"),
        ({"origin": "https://other.example.com"}, "NO_DOMAIN_APIKEY_MATCH"),
    ],
)
async def test_account_errors_pause_the_destination(
    overrides: dict[str, str], code: str, error_status: int
) -> None:
    async with (
        FakeSegmentify(error_status=error_status) as fake,
        harness(fake, settings=fake.settings(**overrides)) as h,
    ):
        outcomes = await h.deliver(mappable()[:4])
        assert all(isinstance(o, crossdock.CredentialsRejected) for o in outcomes), outcomes
        assert outcomes[0].reason.startswith(f"Segmentify {code}")  # type: ignore[union-attr]
        assert len(fake.requests) == 1  # not split: no event is at fault
        assert not fake.events


@pytest.mark.parametrize(
    "code", ["NO_API_KEY", "NO_ACCOUNT", "UNVERIFIED_ACCOUNT", "FAILED_ACCOUNT"]
)
async def test_every_account_code_means_credentials(code: str) -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(200, {"statusCode": code, "statusText": "account problem"})
        outcomes = await h.deliver(mappable()[:2])
        assert all(isinstance(o, crossdock.CredentialsRejected) for o in outcomes), outcomes


async def test_unknown_error_code_under_200_is_rejected_not_delivered() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(200, {"statusCode": "SOMETHING_NEW", "statusText": "hm"})
        [outcome] = await h.deliver(mappable()[:1])
        assert outcome == crossdock.Rejected(
            "Segmentify SOMETHING_NEW: hm", 200, '{"statusCode":"SOMETHING_NEW","statusText":"hm"}'
        )


async def test_2xx_without_status_code_is_delivered() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(200, "")
        assert await h.deliver(mappable()[:2]) == [crossdock.DELIVERED] * 2


async def test_the_api_key_never_shows_in_reasons() -> None:
    key = DEFAULT_API_KEY
    async with FakeSegmentify() as fake, harness(fake) as h:
        fake.respond(400, {"statusCode": "BAD_INPUT", "statusText": f"bad request for {key}"})
        [outcome] = await h.deliver(mappable()[:1])
        assert isinstance(outcome, crossdock.Rejected)
        assert key not in outcome.reason
        assert key not in (outcome.body or "")
    # Connection errors: the URL carries the key, the reason must not.
    async with harness(fake, settings=fake.settings(data_center_url="http://127.0.0.1:9")) as h:
        [outcome] = await h.deliver(mappable()[:1])
        assert isinstance(outcome, crossdock.RetryLater)
        assert key not in outcome.reason


def test_limits_are_declared() -> None:
    limits = crossdock_segmentify.DESTINATION_TYPE.limits
    assert (limits.max_batch_count, limits.rate_limit) == (50, 10.0)


# --- the fake is as strict as the vendor ----------------------------------------------------


async def post(fake: FakeSegmentify, body: Any, **kwargs: Any) -> tuple[int, Any]:
    path = kwargs.pop("path", "/add/events/v1.json")
    query = kwargs.pop("query", {"apiKey": fake.api_key})
    headers = {"Origin": fake.origin, "Content-Type": "application/json"}
    headers.update(kwargs.pop("headers", {}))
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + path, params=query, data=data, headers=headers) as response,
    ):
        text = await response.text()
        try:
            return response.status, orjson.loads(text)
        except orjson.JSONDecodeError:
            return response.status, text


GOOD = {"name": "PAGE_VIEW", "userId": "u", "sessionId": "s", "category": "Home Page"}


@pytest.mark.parametrize(
    ("kwargs", "body", "code"),
    [
        ({"query": {}}, [GOOD], "NO_API_KEY"),
        ({"query": {"apiKey": "nope"}}, [GOOD], "NO_ACCOUNT"),
        ({"headers": {"Origin": "https://evil.example"}}, [GOOD], "NO_DOMAIN_APIKEY_MATCH"),
        ({"headers": {"Content-Type": "application/x-www-form-urlencoded"}}, [GOOD], "BAD_INPUT"),
        ({}, b"[not json", "BAD_INPUT"),
        ({}, "text", "BAD_INPUT"),
        ({}, [], "NO_EVENT"),
        ({}, [GOOD] * 51, "BAD_INPUT"),
        ({}, [GOOD, {**GOOD, "userId": ""}], "NO_USERID"),
        ({}, [{**GOOD, "sessionId": None}], "NO_SESSIONID"),
        ({}, [{**GOOD, "name": "PAGEVIEW"}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "PRODUCT_VIEW"}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "BASKET_OPERATIONS", "step": "added", "productId": "p"}],
         "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "CHECKOUT", "step": "purchase", "totalPrice": 1,
               "productList": []}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "CHECKOUT", "step": "customer", "totalPrice": "1",
               "productList": []}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "USER_OPERATIONS", "step": "login"}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "CUSTOM_EVENT"}], "INVALID_EVENT"),
        ({}, [{**GOOD, "name": "USER_CHANGE"}], "INVALID_EVENT"),
    ],
)  # fmt: skip
async def test_fake_refuses_like_segmentify(kwargs: dict[str, Any], body: Any, code: str) -> None:
    async with FakeSegmentify() as fake:
        status, answer = await post(fake, body, **kwargs)
        assert status == 400
        assert answer["statusCode"] == code
        assert answer["statusText"]
        assert not fake.events


async def test_fake_accepts_an_array_or_a_single_object_and_text_plain() -> None:
    async with FakeSegmentify() as fake:
        status, answer = await post(fake, [GOOD, GOOD])
        assert status == 200
        assert answer["statusCode"] == "SUCCESS"
        assert answer["responses"] == [[], []]
        assert isinstance(answer["timestamp"], int)
        status, _ = await post(fake, GOOD, headers={"Content-Type": "text/plain"})
        assert status == 200
        assert len(fake.events) == 3


async def test_fake_answers_404_elsewhere() -> None:
    async with FakeSegmentify() as fake:
        status, _ = await post(fake, [GOOD], path="/add/events/v2.json")
        assert status == 404


async def test_large_answers_are_read_whole() -> None:
    async with FakeSegmentify() as fake, harness(fake) as h:
        noise = [[{"type": "recommendProducts", "params": {"x": "y" * 5000}}]]
        fake.respond(200, {"statusCode": "NO_USERID", "statusText": "no user", "responses": noise})
        [outcome] = await h.deliver(mappable()[:1])
        assert isinstance(outcome, crossdock.Rejected)
        assert outcome.reason == "Segmentify NO_USERID: no user"
        assert len(outcome.body or "") <= 4096
