"""The built-in ``webhook`` destination: contract suite, signatures, batching, answers."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from crossdock import DELIVERED, CredentialsRejected, Rejected, RetryLater
from crossdock.deliver.destinations import webhook as webhook_destination
from crossdock.testing.contract import destination_contract_tests
from crossdock.testing.fakes import FakeVendor
from crossdock.testing.harness import DestinationHarness

TestWebhookContract = destination_contract_tests(
    webhook_destination,
    settings={"url": "{fake_url}/hook", "secret": "whsec_123456", "headers": {"X-Env": "test"}},
)

TestWebhookBatchContract = destination_contract_tests(
    webhook_destination, settings={"url": "{fake_url}/hook", "batch": True}
)


def event(i: int) -> dict:
    return {"type": "track", "event": "Clicked", "userId": f"u{i}", "messageId": f"m{i}"}


async def test_one_signed_request_per_event() -> None:
    async with FakeVendor() as fake:
        settings = {"url": fake.url + "/hook", "secret": "whsec_123456", "headers": {"X-Env": "t"}}
        async with DestinationHarness(webhook_destination, settings) as h:
            outcomes = await h.deliver([event(1), event(2)])
    assert outcomes == [DELIVERED, DELIVERED]
    assert len(fake.requests) == 2
    for request in fake.requests:
        assert request.path == "/hook"
        assert request.headers["X-Env"] == "t"
        assert request.headers["Content-Type"] == "application/json"
        expected = hmac.new(b"whsec_123456", request.body, hashlib.sha1).hexdigest()
        assert request.headers["X-Signature"] == expected
    assert sorted(r.json()["messageId"] for r in fake.requests) == ["m1", "m2"]


async def test_batch_mode_sends_one_array_signed_over_first_element() -> None:
    async with FakeVendor() as fake:
        settings = {"url": fake.url, "secret": "whsec_123456", "batch": True, "method": "put"}
        async with DestinationHarness(webhook_destination, settings) as h:
            outcomes = await h.deliver([event(1), event(2), event(3)])
    assert outcomes == [DELIVERED] * 3
    (request,) = fake.requests
    assert request.method == "PUT"
    body = request.json()
    assert [e["messageId"] for e in body] == ["m1", "m2", "m3"]
    first = orjson.dumps(body[0])
    assert (
        request.headers["X-Signature"] == hmac.new(b"whsec_123456", first, hashlib.sha1).hexdigest()
    )


async def test_answers_map_to_outcomes() -> None:
    async with (
        FakeVendor() as fake,
        DestinationHarness(webhook_destination, {"url": fake.url}) as h,
    ):
        cases = {
            201: DELIVERED,
            401: CredentialsRejected,
            403: CredentialsRejected,
            404: Rejected,
            501: Rejected,
            408: RetryLater,
            500: RetryLater,
            502: RetryLater,
        }
        for status, expected in cases.items():
            fake.script([{"status": status, "body": "nope"}])
            (outcome,) = await h.deliver([event(1)])
            if expected is DELIVERED:
                assert outcome == DELIVERED
            else:
                assert isinstance(outcome, expected), (status, outcome)
        fake.script([{"status": 422, "body": "field x invalid"}])
        (outcome,) = await h.deliver([event(1)])
        assert isinstance(outcome, Rejected)
        assert outcome.status == 422
        assert outcome.body == "field x invalid"
        fake.script([{"status": 503, "headers": {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}}])
        (outcome,) = await h.deliver([event(1)])
        assert isinstance(outcome, RetryLater)
        assert outcome.after == 0.0  # a date in the past: retry now
        fake.script([{"drop": True}])
        (outcome,) = await h.deliver([event(1)])
        assert isinstance(outcome, RetryLater)
        assert outcome.status is None
