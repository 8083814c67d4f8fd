"""Per-event outcomes against the strict fake, signature and headers, user matching."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
import orjson
import pytest

import crossdock
import crossdock_productfruits
from crossdock.testing.events import identify, page, track
from crossdock.testing.fakes import Answer
from crossdock.testing.harness import DestinationHarness
from crossdock_productfruits.testing import DEFAULT_SECRET, FakeProductFruits, User


def harness(pf: FakeProductFruits, **kwargs: Any) -> DestinationHarness:
    settings = {"webhook_url": pf.webhook_url, "webhook_secret": DEFAULT_SECRET}
    settings.update(kwargs.pop("settings", {}))
    return DestinationHarness(crossdock_productfruits, settings, **kwargs)


def event(**overrides: Any) -> dict[str, Any]:
    return identify({"email": "ana@example.com", "firstName": "Ana", "plan": "pro"}, **overrides)


async def test_one_signed_request_per_event_with_segment_headers() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        items = h.items([event(), track("Report Exported", {"rows": 3}, userId="u-1")])
        outcomes = await h.deliver_items(items)
        assert outcomes == [crossdock.DELIVERED, crossdock.DELIVERED]
        assert len(pf.requests) == 2
        by_body = {r.body: r for r in pf.requests}
        for item in items:
            request = by_body[item.data]  # the exact bytes the core serialized, unchanged
            assert request.method == "POST"
            assert request.headers["Content-Type"] == "application/json"
            assert request.headers["User-Agent"] == "Segment.io/1.0"
            expected = hmac.new(DEFAULT_SECRET.encode(), item.data, hashlib.sha1).hexdigest()
            assert request.headers["X-Signature"] == expected
        assert sorted(m["type"] for m in pf.messages) == ["identify", "track"]


async def test_non_ascii_bodies_are_signed_over_the_bytes_sent() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        ev = identify({"email": "zoë@example.com", "name": "Zoë Ünal", "city": "İzmir 🍓"})
        assert await h.deliver([ev]) == [crossdock.DELIVERED]
        assert pf.messages[0]["traits"]["name"] == "Zoë Ünal"


async def test_invalid_event_is_rejected_with_the_vendor_reason_and_only_that_one() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        bad = track("Report Exported", userId="u-2")
        bad["properties"] = ["not", "an", "object"]  # the fake refuses it like PF would
        good = [event(userId=f"u-{i}") for i in range(3)]
        outcomes = await h.deliver([good[0], bad, good[1], good[2]])
        assert outcomes[0] == outcomes[2] == outcomes[3] == crossdock.DELIVERED
        rejected = outcomes[1]
        assert isinstance(rejected, crossdock.Rejected)
        assert rejected.status == 400
        assert rejected.reason == "Product Fruits: HTTP 400: properties must be an object"
        assert len(pf.messages) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_5xx_and_408_are_retried(status: int) -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        pf.unavailable(status)
        [outcome] = await h.deliver([event()])
        assert isinstance(outcome, crossdock.RetryLater)
        assert outcome.status == status
        assert pf.messages == []


async def test_429_is_retried_after_retry_after() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        pf.script([Answer(429, {"error": "Too many requests"}, {"Retry-After": "12"})])
        [outcome] = await h.deliver([event()])
        assert outcome == crossdock.RetryLater("Product Fruits: HTTP 429", 12.0, 429)
        assert await h.deliver([event()]) == [crossdock.DELIVERED]


async def test_501_is_rejected_not_retried() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        pf.script([Answer(501, {"error": "Not implemented"})])
        [outcome] = await h.deliver([event()])
        assert isinstance(outcome, crossdock.Rejected)
        assert outcome.reason == "Product Fruits: HTTP 501: Not implemented"


async def test_wrong_secret_is_credentials_rejected_and_nothing_recorded() -> None:
    wrong = {"webhook_secret": "wrong-one"}
    async with FakeProductFruits() as pf, harness(pf, settings=wrong) as h:
        [outcome] = await h.deliver([event()])
        assert isinstance(outcome, crossdock.CredentialsRejected)
        assert outcome.status == 401
        assert "webhook_secret" in outcome.reason
        assert "wrong-one" not in outcome.reason
        assert pf.messages == []
        assert pf.matches == []


async def test_403_is_credentials_rejected() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        pf.script([Answer(403, {"error": "Integration disabled (Boost plan only)"})])
        [outcome] = await h.deliver([event()])
        assert isinstance(outcome, crossdock.CredentialsRejected)
        assert outcome.status == 403


async def test_unknown_webhook_url_pauses_instead_of_dead_lettering() -> None:
    async with FakeProductFruits() as pf:
        settings = {"webhook_url": pf.url + "/integrations/segment/webhook/other-workspace"}
        async with harness(pf, settings=settings) as h:
            [outcome] = await h.deliver([event()])
        assert isinstance(outcome, crossdock.CredentialsRejected)
        assert outcome.status == 404
        assert "webhook_url" in outcome.reason
        assert "other-workspace" not in outcome.reason  # the URL may hold an account token


async def test_slow_answer_is_retried() -> None:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
    try:
        async with FakeProductFruits() as pf, harness(pf, http=session) as h:
            pf.slow(2.0)
            [outcome] = await h.deliver([event()])
            assert isinstance(outcome, crossdock.RetryLater)
            assert outcome.reason.startswith("timeout")
    finally:
        await session.close()


async def test_connection_refused_is_retried() -> None:
    async with FakeProductFruits() as pf:
        url = pf.webhook_url
    settings = {"webhook_url": url, "webhook_secret": DEFAULT_SECRET}
    async with DestinationHarness(crossdock_productfruits, settings) as h:
        [outcome] = await h.deliver([event()])
    assert isinstance(outcome, crossdock.RetryLater)
    assert outcome.reason.startswith("connection")


async def test_secret_never_in_any_reason() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        answers = [Answer(s, {"error": "nope"}) for s in (400, 401, 403, 404, 429, 500)]
        pf.script(answers)
        outcomes = [(await h.deliver([event()]))[0] for _ in answers]
        for outcome in outcomes:
            assert DEFAULT_SECRET not in repr(outcome)
            assert pf.webhook_url not in repr(outcome)


async def test_users_are_matched_by_email_then_username_else_created() -> None:
    ana = User("ana-1", "ana@example.com")
    bob = User("u-bob")
    async with FakeProductFruits(users=[ana, bob]) as pf, harness(pf) as h:
        sent = [
            identify({"email": "ana@example.com", "plan": "pro"}, userId="someone-else"),
            track("Report Exported", userId="u-bob"),
            identify({"email": "new@example.com"}, userId="u-new"),
            page(userId="u-bob"),  # not sent
            track("Tour Finished", {"id": 3}, userId="u-bob"),  # not sent back
        ]
        outcomes = await h.deliver(sent)
        assert outcomes == [crossdock.DELIVERED] * 3
        assert [(m.how, m.user.username) for m in pf.matches] == [
            ("email", "ana-1"),
            ("username", "u-bob"),
            ("created", "u-new"),
        ]
        assert ana.props == {"plan": "pro"}
        assert bob.events == ["Report Exported"]
        assert pf.unmatched == []


async def test_payload_is_the_serialized_event() -> None:
    async with FakeProductFruits() as pf, harness(pf) as h:
        ev = track("Report Exported", {"rows": 3}, userId="u-1")
        await h.deliver([ev])
        assert orjson.loads(pf.requests[0].body) == ev
