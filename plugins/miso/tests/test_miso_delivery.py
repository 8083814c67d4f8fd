"""Per-event outcomes against the strict FakeMiso: delivered, 422 isolation, rejection before
sending, retries, credentials; and the 422 parser on both of Miso's error shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

import crossdock_miso
from crossdock import CredentialsRejected, Delivered, Rejected, RetryLater
from crossdock.testing.events import golden_event, page, track
from crossdock.testing.fakes import Answer, RecordedRequest
from crossdock.testing.harness import DestinationHarness
from crossdock_miso.deliverer import record_errors
from crossdock_miso.testing import FakeMiso

KEY = "sk_test_123456"


def harness(fake: FakeMiso, key: str = KEY, **kwargs: Any) -> DestinationHarness:
    return DestinationHarness(crossdock_miso, {"api_key": key, "base_url": fake.url}, **kwargs)


async def test_records_are_sent_in_one_request_with_the_key_in_a_header() -> None:
    events = [golden_event("Product Viewed"), golden_event("Order Completed")]
    async with FakeMiso() as fake, harness(fake) as h:
        outcomes = await h.deliver(events)
        assert outcomes == [Delivered(), Delivered()]
        [request] = fake.requests
        assert request.method == "POST"
        assert request.path == "/v1/interactions"
        assert request.headers["X-API-KEY"] == KEY
        assert request.headers["Content-Type"] == "application/json"
        assert "api_key" not in request.query
        assert request.json() == {"data": [h.transform(e) for e in events]}
        assert fake.records == [h.transform(e) for e in events]


async def test_base_url_with_a_trailing_slash() -> None:
    async with FakeMiso() as fake:
        settings = {"api_key": KEY, "base_url": fake.url + "/"}
        async with DestinationHarness(crossdock_miso, settings) as h:
            assert await h.deliver([golden_event("Product Viewed")]) == [Delivered()]
        assert fake.requests[0].path == "/v1/interactions"


async def test_one_bad_record_is_rejected_with_misos_message_and_the_rest_resent() -> None:
    good = golden_event("Product Viewed")
    bad = golden_event("Order Completed")
    other = golden_event("Product Added")
    # An override that sends a string timestamp Miso refuses, for one event only.
    async with (
        FakeMiso() as fake,
        harness(
            fake,
            mapping={
                "timestamp": "event == 'Order Completed' && 'yesterday' || iso_time(timestamp)"
            },
        ) as h,
    ):
        outcomes = await h.deliver([good, bad, other])
        assert isinstance(outcomes[0], Delivered)
        assert isinstance(outcomes[2], Delivered)
        rejected = outcomes[1]
        assert isinstance(rejected, Rejected)
        assert rejected.status == 422
        assert rejected.reason == (
            "Miso 422: timestamp is invalid. \"yesterday\" should match the 'date-time' format"
        )
        assert len(fake.requests) == 2
        assert len(fake.requests[0].json()["data"]) == 3
        assert fake.requests[1].json() == {"data": [h.transform(good), h.transform(other)]}
        assert [r["type"] for r in fake.records] == ["product_detail_page_view", "add_to_cart"]


async def test_several_bad_records_with_several_messages_each() -> None:
    events = [track("Product Viewed", {"product_id": f"p-{i}"}) for i in range(5)]
    mapping = {"duration": "properties.product_id", "type": "'product_detail_page_view'"}
    async with FakeMiso() as fake, harness(fake, mapping=mapping) as h:
        items = h.items(events)
        # corrupt two records the way a broken override would
        for i in (1, 3):
            items[i].data = orjson.dumps({**items[i].payload, "duration": "long", "rating": 7})
        outcomes = await h.deliver_items(items)
        assert [type(o).__name__ for o in outcomes] == [
            "Delivered", "Rejected", "Delivered", "Rejected", "Delivered",
        ]  # fmt: skip
        assert "duration is invalid" in outcomes[1].reason
        assert "rating is invalid" in outcomes[1].reason
        assert [r["product_ids"] for r in fake.records] == [["p-0"], ["p-2"], ["p-4"]]


async def test_records_without_any_id_are_rejected_before_sending() -> None:
    anonymous = track("Product Viewed", userId=None, anonymousId=None)
    async with FakeMiso() as fake, harness(fake) as h:
        outcomes = await h.deliver([anonymous, golden_event("Product Viewed")])
        assert isinstance(outcomes[0], Rejected)
        assert outcomes[0].reason.startswith("Miso record not sent: neither user_id nor")
        assert outcomes[0].status is None
        assert isinstance(outcomes[1], Delivered)
        [request] = fake.requests
        assert len(request.json()["data"]) == 1
        assert not fake.refused


async def test_only_invalid_records_alone_make_no_request() -> None:
    async with FakeMiso() as fake, harness(fake) as h:
        outcomes = await h.deliver([track("Product Viewed", {"name": "no id"})])
        assert outcomes == [
            Rejected("Miso record not sent: no product_ids (product_detail_page_view needs the "
                     "product the user acted on)")
        ]  # fmt: skip
        assert not fake.requests


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (track("Product Reviewed", {"product_id": "p", "rating": "great"}), "rate needs"),
        (track("Products Searched", {}), "search needs search.keywords"),
        (track("Product Viewed", {"product_id": "p" * 513}), "product_ids: an id is longer"),
        (track("Product Viewed", {"product_id": "p"}, userId="u" * 513), "user_id is longer"),
    ],
)
async def test_records_miso_would_refuse_are_rejected_alone(event: Any, reason: str) -> None:
    async with FakeMiso() as fake, harness(fake) as h:
        outcomes = await h.deliver([event, golden_event("Product Added")])
        assert isinstance(outcomes[0], Rejected)
        assert reason in outcomes[0].reason
        assert isinstance(outcomes[1], Delivered)
        assert len(fake.records) == 1


async def test_unknown_interaction_type_from_a_table_is_rejected() -> None:
    tables = {"miso_events": {"Product Viewed": "product_view"}}
    async with FakeMiso() as fake, harness(fake, tables=tables) as h:
        [outcome] = await h.deliver([golden_event("Product Viewed")])
        assert isinstance(outcome, Rejected)
        assert "'product_view' is not a Miso interaction type" in outcome.reason
        assert not fake.requests


class UnnamedRefusal(FakeMiso):
    """Refuses any request holding product p-0 with a 422 that names no record."""

    async def check(self, request: RecordedRequest) -> web.Response | None:
        refusal = await super().check(request)
        if refusal is None and any(r["product_ids"] == ["p-0"] for r in request.json()["data"]):
            body = {"detail": [{"loc": ["body"], "msg": "bad"}]}
            return web.json_response(body, status=422)
        return refusal


async def test_a_422_naming_no_record_is_narrowed_down_by_halving() -> None:
    events = [track("Product Added", {"product_id": f"p-{i}"}) for i in range(4)]
    async with UnnamedRefusal() as fake, harness(fake) as h:
        outcomes = await h.deliver(events)
        assert isinstance(outcomes[0], Rejected)
        assert outcomes[0].reason == 'Miso 422: [{"loc":["body"],"msg":"bad"}]'
        assert all(isinstance(o, Delivered) for o in outcomes[1:])
        assert sorted(r["product_ids"][0] for r in fake.records) == ["p-1", "p-2", "p-3"]
        # the whole batch, its halves, then the first half's halves
        assert len(fake.requests) == 5


async def test_fastapi_shaped_422_with_indices_isolates_records() -> None:
    events = [track("Product Added", {"product_id": f"p-{i}"}) for i in range(3)]
    detail = [{"loc": ["body", "data", 2, "quantities"], "msg": "value is not a valid list",
               "type": "type_error.list"}]  # fmt: skip
    async with FakeMiso() as fake, harness(fake) as h:
        fake.script([{"status": 422, "body": {"detail": detail}}])
        outcomes = await h.deliver(events)
        assert outcomes[:2] == [Delivered(), Delivered()]
        assert outcomes[2] == Rejected(
            "Miso 422: quantities: value is not a valid list",
            422,
            orjson.dumps({"detail": detail}).decode(),
        )


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried(status: int) -> None:
    async with FakeMiso() as fake, harness(fake) as h:
        fake.respond(status, {"message": "down"})
        outcomes = await h.deliver([golden_event("Product Viewed"), golden_event("Product Added")])
        assert all(isinstance(o, RetryLater) and o.status == status for o in outcomes)
        assert not fake.records


async def test_429_retried_after_retry_after() -> None:
    async with FakeMiso() as fake, harness(fake) as h:
        fake.rate_limited(30)
        [outcome] = await h.deliver([golden_event("Product Viewed")])
        assert outcome == RetryLater("HTTP 429", 30.0, 429)
        fake.healthy()
        assert await h.deliver([golden_event("Product Viewed")]) == [Delivered()]


async def test_retry_after_a_422_resend_that_hits_a_5xx() -> None:
    events = [track("Product Added", {"product_id": f"p-{i}"}) for i in range(3)]
    async with FakeMiso() as fake, harness(fake) as h:
        refusal = {"errors": True, "message": "x", "data": ["data.1.product_ids is invalid. no"]}
        fake.script([Answer(422, refusal), 503])
        outcomes = await h.deliver(events)
        assert isinstance(outcomes[1], Rejected)
        assert isinstance(outcomes[0], RetryLater)
        assert isinstance(outcomes[2], RetryLater)


async def test_invalid_key_is_credentials_rejected() -> None:
    async with FakeMiso() as fake, harness(fake, key="sk_wrong_999999") as h:
        outcomes = await h.deliver([golden_event("Product Viewed"), golden_event("Product Added")])
        assert outcomes == [CredentialsRejected(
            "Miso 401: invalid api key. (use the secret API key)", 401)] * 2  # fmt: skip
        assert "sk_wrong_999999" not in repr(outcomes)


async def test_publishable_key_is_credentials_rejected_with_the_bot_blocking_message() -> None:
    async with FakeMiso() as fake, harness(fake, key="pk_test_123456") as h:
        [outcome] = await h.deliver([golden_event("Product Viewed")])
        assert isinstance(outcome, CredentialsRejected)
        assert outcome.status == 403
        assert "bot blocking" in outcome.reason


async def test_other_4xx_is_rejected_with_the_answer_and_no_secret() -> None:
    async with FakeMiso() as fake, harness(fake) as h:
        fake.respond(400, {"message": f"bad request for key {KEY}"})
        [outcome] = await h.deliver([golden_event("Product Viewed")])
        assert isinstance(outcome, Rejected)
        assert outcome.status == 400
        assert KEY not in outcome.reason
        assert KEY not in (outcome.body or "")
        assert outcome.reason == "Miso 400: bad request for key ***"


async def test_connection_refused_is_retried() -> None:
    settings = {"api_key": KEY, "base_url": "http://127.0.0.1:9"}
    async with DestinationHarness(crossdock_miso, settings) as h:
        [outcome] = await h.deliver([golden_event("Product Viewed")])
        assert isinstance(outcome, RetryLater)
        assert KEY not in outcome.reason


def test_record_errors_reads_misos_shape() -> None:
    body = {
        "errors": True,
        "message": "None of the records were inserted…",
        "data": [
            "data.0.product_ids is invalid. 'sku' is not of type 'array'",
            "data.0.timestamp is invalid. 'x' should match the 'date-time' format",
            "data.7.type is invalid. 'x' is not valid",
            "data.12 is invalid. 5 is not of type 'object'",
            "something about the whole request",
        ],
    }
    assert record_errors(orjson.dumps(body).decode(), 13) == {
        0: [
            "product_ids is invalid. 'sku' is not of type 'array'",
            "timestamp is invalid. 'x' should match the 'date-time' format",
        ],
        7: ["type is invalid. 'x' is not valid"],
        12: ["data.12 is invalid. 5 is not of type 'object'"],
    }
    assert record_errors(orjson.dumps(body).decode(), 5) == {0: record_errors(
        orjson.dumps(body).decode(), 13)[0]}  # fmt: skip


def test_record_errors_reads_fastapi_shape_and_ignores_garbage() -> None:
    detail = {"detail": [{"loc": ["body", "data", 3, "context", "page", "url"],
                          "msg": "field required"},
                         {"loc": ["body", "data"], "msg": "not a list"},
                         {"loc": ["body", "data", True], "msg": "odd"}]}  # fmt: skip
    assert record_errors(orjson.dumps(detail).decode(), 5) == {
        3: ["context.page.url: field required"]
    }
    assert record_errors("not json", 5) == {}
    assert record_errors("[1, 2]", 5) == {}


async def test_413_splits_the_batch_in_halves() -> None:
    events = [track("Product Added", {"product_id": f"p-{i}"}) for i in range(4)]
    async with FakeMiso() as fake, harness(fake) as h:
        fake.script([Answer(413, {"message": "Request Entity Too Large"})])
        outcomes = await h.deliver(events)
        assert outcomes == [Delivered()] * 4
        assert [len(r.json()["data"]) for r in fake.requests] == [4, 2, 2]
        assert len(fake.records) == 4


async def test_a_page_mapped_to_custom_is_named_after_the_page() -> None:
    tables = {"miso_pages": {"Pricing": "custom"}}
    async with FakeMiso() as fake, harness(fake, tables=tables) as h:
        event = page("Pricing", {"url": "https://shop.example.com/pricing"})
        assert await h.deliver([event]) == [Delivered()]
        assert fake.records[0]["custom_action_name"] == "Pricing"
