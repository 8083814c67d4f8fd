"""The built-in ``segment`` destination against the strict FakeSegment."""

from __future__ import annotations

import base64

from crossdock import DELIVERED, CredentialsRejected, Rejected, RetryLater
from crossdock.deliver.destinations import segment as segment_destination
from crossdock.testing.contract import destination_contract_tests
from crossdock.testing.fakes import Answer, FakeSegment
from crossdock.testing.harness import DestinationHarness

TestSegmentContract = destination_contract_tests(
    segment_destination,
    settings={"write_key": "test-write-key", "host": "{fake_url}"},
    fake_factory=FakeSegment,
)


def event(i: int, **extra: object) -> dict:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{i}",
        "messageId": f"m{i}",
        "integrations": {"Hull": False},
        "context": {"crossdock": {"source": "hull", "sources": ["hull"]}},
        **extra,
    }


async def test_sends_batch_with_basic_auth_and_keeps_ids() -> None:
    async with FakeSegment() as fake:
        settings = {"write_key": "test-write-key", "host": fake.url + "/"}
        async with DestinationHarness(segment_destination, settings) as h:
            outcomes = await h.deliver([event(1), event(2)])
    assert outcomes == [DELIVERED, DELIVERED]
    (request,) = fake.requests
    assert request.path == "/v1/batch"
    assert (
        request.headers["Authorization"] == "Basic " + base64.b64encode(b"test-write-key:").decode()
    )
    body = request.json()
    assert body["sentAt"].endswith("Z")
    assert [m["messageId"] for m in fake.events] == ["m1", "m2"]
    assert fake.events[0]["integrations"] == {"Hull": False}
    assert fake.events[0]["context"]["crossdock"]["source"] == "hull"
    assert fake.discarded == []


async def test_wrong_key_is_credentials_rejected() -> None:
    async with FakeSegment() as fake:
        settings = {"write_key": "wrong-key-1234", "host": fake.url}
        async with DestinationHarness(segment_destination, settings) as h:
            outcomes = await h.deliver([event(1)])
    assert isinstance(outcomes[0], CredentialsRejected)
    assert fake.events == []


async def test_400_splits_batch_to_isolate_bad_event() -> None:
    class PickyFake(FakeSegment):
        async def check(self, request):  # type: ignore[no-untyped-def]
            refusal = await super().check(request)
            if refusal is None and any(m.get("event") == "bad" for m in request.json()["batch"]):
                return Answer(
                    400, {"code": "invalid", "message": "event 'bad' is invalid"}
                ).response()
            return refusal

    async with PickyFake() as fake:
        settings = {"write_key": "test-write-key", "host": fake.url}
        async with DestinationHarness(segment_destination, settings) as h:
            batch = [event(i) for i in range(5)]
            batch[3]["event"] = "bad"
            outcomes = await h.deliver(batch)
    assert [type(o).__name__ for o in outcomes] == ["Delivered"] * 3 + ["Rejected", "Delivered"]
    rejected = outcomes[3]
    assert isinstance(rejected, Rejected)
    assert "event 'bad' is invalid" in rejected.reason
    assert sorted(m["messageId"] for m in fake.events) == ["m0", "m1", "m2", "m4"]


async def test_rate_limited_uses_retry_after_then_reset() -> None:
    async with FakeSegment() as fake:
        settings = {"write_key": "test-write-key", "host": fake.url}
        async with DestinationHarness(segment_destination, settings) as h:
            fake.rate_limited()
            (outcome,) = await h.deliver([event(1)])
            assert isinstance(outcome, RetryLater)
            assert outcome.after == 2.0
            fake.respond(429, headers={"X-RateLimit-Reset": "9"})
            (outcome,) = await h.deliver([event(1)])
            assert isinstance(outcome, RetryLater)
            assert outcome.after == 9.0
            fake.unavailable()
            (outcome,) = await h.deliver([event(1)])
            assert isinstance(outcome, RetryLater)
            assert outcome.status == 503
            fake.healthy()
            assert await h.deliver([event(1)]) == [DELIVERED]
