"""Per-event outcomes against the strict FakeInsider: success, partial failure, retries,
credentials, batch-level 400s split to isolate the bad user, and the request envelope."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest
from aiohttp import web

import crossdock
import crossdock_insider
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.fakes import Answer, RecordedRequest
from crossdock.testing.harness import DestinationHarness
from crossdock_insider.testing import FakeInsider

TOKEN = "ucd-test-token-0123456789"


def settings(fake: FakeInsider, **extra: Any) -> dict[str, Any]:
    return {"partner_name": "acme", "request_token": TOKEN, "base_url": fake.url, **extra}


def broken_order() -> dict[str, Any]:
    """An order without products: Insider refuses its purchase (required params missing)."""
    return track("Order Completed", properties={"order_id": "A-9", "currency": "EUR"})


async def test_success_sends_one_request_with_exact_headers_and_body() -> None:
    events = [golden_event("identify"), golden_event("Order Completed"), golden_event("track")]
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        outcomes = await h.deliver(events)
        assert outcomes == [crossdock.DELIVERED] * 3
        [request] = fake.requests
        assert request.method == "POST"
        assert request.path == "/api/user/v1/upsert"
        assert request.headers["X-PARTNER-NAME"] == "acme"
        assert request.headers["X-REQUEST-TOKEN"] == TOKEN
        assert request.headers["Content-Type"] == "application/json"
        assert request.json() == {"users": [h.transform(e) for e in events]}
        assert fake.users == [h.transform(e) for e in events]
        assert [e["event_name"] for e in fake.events] == [
            "purchase",
            "purchase",
            "newsletter_subscribed",
        ]


async def test_partial_failure_rejects_only_the_failing_events_with_insiders_reason() -> None:
    events = [golden_event("identify"), broken_order(), golden_event("Product Viewed"),
              track("Signed In", userId=None, anonymousId="a-1",
                    context={"traits": {"email": "x@y.z"}})]  # fmt: skip
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        outcomes = await h.deliver(events)
        assert len(fake.requests) == 1  # no resend: the 200 answer named the failing user
        assert isinstance(outcomes[1], crossdock.Rejected)
        assert outcomes[1].reason == (
            "Insider: unit_sale_price parameter is required on purchase event"
        )
        assert outcomes[1].status == 200
        assert "users.1.events.0.event_params.*.required" in orjson.loads(outcomes[1].body)
        assert [outcomes[0], outcomes[2], outcomes[3]] == [crossdock.DELIVERED] * 3
        assert [u["identifiers"].get("uuid") for u in fake.users] == ["u-1042", "u-1042", None]


async def test_partial_failure_with_the_contracts_sample_answer() -> None:
    answer = {"data": {"successful": {}, "fail": {"count": 1, "errors": {
        "users.0.events.0.event_params.*.required": [
            "event_group_id parameter is required on purchase event",
            "unit_sale_price parameter is required on purchase event"],
        "users.0.identifiers.*.regexp(^\\+[1-9]\\d{6,14}$)": [
            "user has an invalid phone number: 12345"]}}}}  # fmt: skip
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.script([Answer(200, answer)])
        outcomes = await h.deliver([golden_event("Order Completed"), golden_event("identify")])
    assert outcomes[1] == crossdock.DELIVERED
    assert isinstance(outcomes[0], crossdock.Rejected)
    assert outcomes[0].reason == (
        "Insider: event_group_id parameter is required on purchase event; "
        "unit_sale_price parameter is required on purchase event; "
        "user has an invalid phone number: 12345"
    )


async def test_failures_naming_no_user_are_isolated_by_splitting() -> None:
    vague = {"data": {"successful": {}, "fail": {"count": 1, "errors": {"users": ["boom"]}}}}
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.script([Answer(200, vague)])
        outcomes = await h.deliver([golden_event("identify"), golden_event("track")])
        assert outcomes == [crossdock.DELIVERED] * 2
        assert [len(r.json()["users"]) for r in fake.requests] == [2, 1, 1]
        fake.script([Answer(200, vague)])
        [alone] = await h.deliver([golden_event("identify")])
    assert isinstance(alone, crossdock.Rejected)
    assert alone.reason == "Insider: boom"


async def test_a_count_without_errors_is_still_a_failure() -> None:
    answer = {"data": {"successful": {}, "fail": {"count": 1}}}
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.script([Answer(200, answer)])
        [outcome] = await h.deliver([golden_event("identify")])
    assert isinstance(outcome, crossdock.Rejected)
    assert "failed without details" in outcome.reason


@pytest.mark.parametrize(("retry_after", "after"), [(None, None), (30, 30.0)])
async def test_429_is_retried_honouring_retry_after(retry_after, after) -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.rate_limited(retry_after)
        outcomes = await h.deliver([golden_event("identify"), golden_event("track")])
    assert outcomes == [crossdock.RetryLater("HTTP 429", after, 429)] * 2


@pytest.mark.parametrize("mode", ["server_error", "unavailable"])
async def test_5xx_is_retried(mode) -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        getattr(fake, mode)()
        outcomes = await h.deliver([golden_event("identify"), golden_event("track")])
    assert all(isinstance(o, crossdock.RetryLater) for o in outcomes)
    assert len(outcomes) == 2


async def test_wrong_token_is_credentials_rejected_without_the_token() -> None:
    async with FakeInsider() as fake:
        wrong = settings(fake, request_token="not-the-token-42")
        async with DestinationHarness(crossdock_insider, wrong) as h:
            outcomes = await h.deliver([golden_event("identify"), golden_event("track")])
    assert (
        outcomes
        == [crossdock.CredentialsRejected("Insider: Partner token authentication failed.", 401)] * 2
    )
    assert "not-the-token-42" not in repr(outcomes)


async def test_403_is_credentials_rejected() -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.forbidden()
        outcomes = await h.deliver([golden_event("identify")])
    assert outcomes == [crossdock.CredentialsRejected("Insider: Invalid api key", 403)]


async def test_invalid_partner_pauses_like_bad_credentials() -> None:
    async with FakeInsider(partner_name="acme-shop") as fake:
        async with DestinationHarness(crossdock_insider, settings(fake)) as h:
            outcomes = await h.deliver([golden_event("identify"), golden_event("track")])
        assert len(fake.requests) == 1  # not split: every request would fail the same way
    assert (
        outcomes
        == [
            crossdock.CredentialsRejected(
                "Insider: Partner is invalid. (check settings.partner_name)", 400
            )
        ]
        * 2
    )


class PoisonInsider(FakeInsider):
    """Answers a whole-request 400 when any user has the uuid ``poison``."""

    async def check(self, request: RecordedRequest) -> web.Response | None:
        refused = await super().check(request)
        if refused is None and any(
            u.get("identifiers", {}).get("uuid") == "poison" for u in request.json()["users"]
        ):
            return web.json_response({"error": "invalid user: bad request"}, status=400)
        return refused


async def test_batch_level_400_is_split_to_isolate_the_bad_user() -> None:
    events = [identify({"plan": str(i)}, userId=f"u-{i}") for i in range(5)]
    events[3] = identify({"plan": "x"}, userId="poison")
    async with PoisonInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        outcomes = await h.deliver(events)
        assert sorted(u["identifiers"]["uuid"] for u in fake.users) == [
            "u-0",
            "u-1",
            "u-2",
            "u-4",
        ]
    assert isinstance(outcomes[3], crossdock.Rejected)
    assert (outcomes[3].reason, outcomes[3].status) == ("Insider: invalid user: bad request", 400)
    assert orjson.loads(outcomes[3].body) == {"error": "invalid user: bad request"}
    assert [outcomes[i] for i in (0, 1, 2, 4)] == [crossdock.DELIVERED] * 4


async def test_body_over_5_mb_is_split_and_a_user_alone_over_it_rejected() -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        big = "x" * 2_000_000
        items = h.items([identify({"blob": big}, userId=f"u-{i}") for i in range(3)])
        items += h.items([identify({"blob": "x" * 5_100_000}, userId="huge")])
        outcomes = await h.deliver_items(items)
        assert outcomes[:3] == [crossdock.DELIVERED] * 3
        assert isinstance(outcomes[3], crossdock.Rejected)
        assert "5,000,000 bytes" in outcomes[3].reason
        assert sorted(u["identifiers"]["uuid"] for u in fake.users) == ["u-0", "u-1", "u-2"]


async def test_a_user_without_identifier_is_rejected_locally_and_not_sent() -> None:
    h_mapping = {"identifiers.uuid": "", "identifiers.custom.segment_anonymous_id": ""}
    async with FakeInsider() as fake:
        h = DestinationHarness(crossdock_insider, settings(fake), mapping=h_mapping)
        async with h:
            outcomes = await h.deliver([identify({"plan": "pro"}), identify({"email": "a@b.co"})])
        assert isinstance(outcomes[0], crossdock.Rejected)
        assert "no identifier" in outcomes[0].reason
        assert outcomes[1] == crossdock.DELIVERED
        assert [len(r.json()["users"]) for r in fake.requests] == [1]


async def test_users_must_be_defined_is_rejected() -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        fake.script([Answer(400, {"error": "users must be defined: bad request"})])
        [outcome] = await h.deliver([golden_event("identify")])
    assert isinstance(outcome, crossdock.Rejected)
    assert (outcome.reason, outcome.status) == ("Insider: users must be defined: bad request", 400)


async def test_skip_hook_setting_goes_on_the_envelope() -> None:
    async with FakeInsider() as fake:
        async with DestinationHarness(crossdock_insider, settings(fake, skip_hook=True)) as h:
            assert await h.deliver([golden_event("identify")]) == [crossdock.DELIVERED]
        async with DestinationHarness(crossdock_insider, settings(fake)) as h:
            assert await h.deliver([golden_event("identify")]) == [crossdock.DELIVERED]
        first, second = (r.json() for r in fake.requests)
    assert first["skip_hook"] is True
    assert "skip_hook" not in second


def test_backfill_settings_declare_skip_hook() -> None:
    dtype = crossdock_insider.DESTINATION_TYPE
    assert dtype.backfill_settings == {"skip_hook": True}
    h = DestinationHarness(crossdock_insider, {"partner_name": "acme", "request_token": TOKEN})
    evolved = attrs.evolve(h.destination.settings, **dtype.backfill_settings)
    assert evolved.skip_hook is True


def test_limits_follow_insiders_request_limits() -> None:
    limits = crossdock_insider.DESTINATION_TYPE.limits
    assert limits.max_batch_count == 1000
    assert limits.max_batch_bytes + crossdock_insider.ENVELOPE_BYTES <= 5_000_000
    assert len(b',"skip_hook":true}' + b'{"users":[]') <= crossdock_insider.ENVELOPE_BYTES


async def test_a_full_batch_of_1000_users_is_one_request() -> None:
    async with FakeInsider() as fake, DestinationHarness(crossdock_insider, settings(fake)) as h:
        template = golden_event("Product Viewed")
        outcomes = await h.deliver([{**template, "userId": f"u-{i}"} for i in range(1000)])
        assert outcomes == [crossdock.DELIVERED] * 1000
        assert len(fake.requests) == 1
        assert len(fake.users) == 1000


async def test_the_base_url_may_end_with_a_slash() -> None:
    async with FakeInsider() as fake:
        conf = settings(fake)
        conf["base_url"] = fake.url + "/"
        async with DestinationHarness(crossdock_insider, conf) as h:
            assert await h.deliver([golden_event("identify")]) == [crossdock.DELIVERED]
        assert fake.requests[0].path == "/api/user/v1/upsert"


async def test_other_4xx_are_rejected_with_status_and_body() -> None:
    async with FakeInsider() as fake:
        wrong = settings(fake, base_url=fake.url + "/wrong")
        async with DestinationHarness(crossdock_insider, wrong) as h:
            [outcome] = await h.deliver([golden_event("identify")])
    assert isinstance(outcome, crossdock.Rejected)
    assert (outcome.reason, outcome.status) == ("Insider: HTTP 404: not found", 404)
