"""The standard checks every destination must pass, as a generated pytest class.

Like Meltano's ``get_tap_test_class``: a plugin's test module makes the class once with sample
settings and a fake of its vendor, and pytest collects it::

    from crossdock.testing.contract import destination_contract_tests
    from crossdock_acme.testing import FakeAcme
    import crossdock_acme

    TestAcmeContract = destination_contract_tests(
        crossdock_acme,
        settings={"api_key": "sk_test_123456", "base_url": "{fake_url}"},
        fake_factory=FakeAcme,
    )

``"{fake_url}"`` inside a string setting is replaced by the fake's base URL, which is also how
the suite checks that the vendor URL is overridable. Checks: settings structure and precise
missing-field paths, default mapping compiles, sample events map or are dropped on purpose,
secrets absent from repr/str/errors, base URL overridable, 2xx → delivered, vendor "invalid" →
rejected with a reason, 5xx and timeouts → retry, 429 honours ``Retry-After``, batch count and
bytes limits respected, and one bad event among four isolated (3 delivered, 1 rejected, every
request paid for in the rate limiter): the deliverer maps the vendor's per-index answer, or
answers :class:`~crossdock.BatchRejected` and the core splits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
import orjson
import pytest

from crossdock.deliver.pacing import RateLimiter
from crossdock.errors import ConfigError
from crossdock.secrets import Secret
from crossdock.testing.fakes import AnswerLike, FakeVendor, RecordedRequest, _as_answer
from crossdock.testing.harness import DestinationHarness, destination_types
from crossdock.types import Delivered, Event, Rejected, RetryLater

__all__ = ["destination_contract_tests", "sample_events"]


def sample_events() -> list[Event]:
    """Golden events from :mod:`crossdock.testing.events` when available, else a small set of
    canonical events (one per Spec type)."""
    try:
        from crossdock.testing import events as golden  # type: ignore[attr-defined]

        loader = getattr(golden, "golden_events", None)
        if callable(loader):
            loaded = loader()
            values = list(loaded.values()) if isinstance(loaded, Mapping) else list(loaded)
            if values:
                return values
    except ImportError:
        pass
    base = {
        "receivedAt": "2024-05-01T12:00:00.000Z",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "context": {"crossdock": {"source": "web", "sources": ["web"]}},
    }
    return [
        {**base, "type": "identify", "messageId": "g-identify", "userId": "u1",
         "traits": {"email": "ada@example.com", "firstName": "Ada"}},
        {**base, "type": "track", "messageId": "g-track", "userId": "u1",
         "event": "Order Completed",
         "properties": {"order_id": "o1", "total": 30.5, "currency": "EUR",
                        "products": [{"product_id": "p1", "price": 10.0, "quantity": 3}]}},
        {**base, "type": "page", "messageId": "g-page", "anonymousId": "a1", "name": "Home",
         "properties": {"url": "https://example.com/", "path": "/"}},
        {**base, "type": "screen", "messageId": "g-screen", "userId": "u1", "name": "Cart"},
        {**base, "type": "group", "messageId": "g-group", "userId": "u1", "groupId": "g1",
         "traits": {"name": "Acme"}},
        {**base, "type": "alias", "messageId": "g-alias", "userId": "u1", "previousId": "a1"},
    ]  # fmt: skip


def _fill(settings: Mapping[str, Any], url: str) -> dict[str, Any]:
    return {
        k: v.replace("{fake_url}", url) if isinstance(v, str) else v for k, v in settings.items()
    }


def _required(settings_class: type) -> list[str]:
    return [a.name for a in attrs.fields(settings_class) if a.default is attrs.NOTHING]


def destination_contract_tests(
    plugin: Any,
    *,
    settings: Mapping[str, Any],
    fake_factory: Callable[[], FakeVendor] = FakeVendor,
    name: str | None = None,
    events: Sequence[Event] | None = None,
    invalid_answer: AnswerLike = 400,
    invalid_at: Callable[[int], AnswerLike] | None = None,
    expect_dropped: Sequence[str] = (),
    timeout: float = 0.5,
) -> type:
    """Build the pytest class of standard destination checks for ``plugin``.

    :param plugin: the plugin module (or object) holding the hookimpls.
    :param settings: a valid ``[destinations.settings]`` dict; ``"{fake_url}"`` in a string is
        replaced by the fake's URL.
    :param fake_factory: makes the vendor fake (a :class:`FakeVendor` whose default answer
        accepts the sample events sent with ``settings``).
    :param name: the destination type, when the plugin declares several.
    :param events: events to check the mapping with (default :func:`sample_events`).
    :param invalid_answer: what the fake answers to mean "this event is invalid".
    :param invalid_at: for a vendor that names the bad event: what the fake answers when the
        event at index ``i`` of a request is invalid (default: ``invalid_answer``, naming none).
    :param expect_dropped: ``messageId`` of sample events the mapping drops on purpose.
    :param timeout: the client timeout used to check that a slow vendor means retry.
    """
    samples = list(events) if events is not None else sample_events()

    def harness(fake: FakeVendor, **kwargs: Any) -> DestinationHarness:
        return DestinationHarness(plugin, _fill(settings, fake.url), name=name, **kwargs)

    def deliverable() -> list[Event]:
        return [e for e in samples if e.get("messageId") not in expect_dropped][:1]

    class DestinationContract:
        """Standard checks for a Crossdock destination plugin."""

        def test_declares_the_type(self) -> None:
            types = destination_types(plugin)
            names = [t.name for t in types]
            assert names, "the plugin declares no destination type"
            if name is not None:
                assert name in names
            for t in types:
                assert attrs.has(t.settings), f"{t.name}: settings must be an attrs class"
                limits = t.limits
                assert limits.max_batch_count >= 1
                assert limits.max_batch_bytes >= (limits.max_event_bytes or 1)

        def test_settings_structure(self) -> None:
            h = DestinationHarness(plugin, _fill(settings, "http://127.0.0.1:9"), name=name)
            assert isinstance(h.destination.settings, h.type.settings)

        def test_missing_required_fields_are_named(self) -> None:
            h = DestinationHarness(plugin, _fill(settings, "http://127.0.0.1:9"), name=name)
            for field_name in _required(h.type.settings):
                broken = {k: v for k, v in settings.items() if k != field_name}
                with pytest.raises(ConfigError) as info:
                    DestinationHarness(plugin, _fill(broken, "http://127.0.0.1:9"), name=name)
                assert any(p.startswith(f"settings.{field_name}:") for p in info.value.problems), (
                    info.value.problems
                )

        def test_unknown_setting_is_refused(self) -> None:
            with pytest.raises(ConfigError) as info:
                DestinationHarness(plugin, {**settings, "no_such_setting": 1}, name=name)
            assert any(p.startswith("settings") for p in info.value.problems)

        def test_default_mapping_compiles(self) -> None:
            from crossdock.transform.sections import compile_spec

            h = DestinationHarness(plugin, _fill(settings, "http://127.0.0.1:9"), name=name)
            compile_spec(h.type.spec, functions=h.type.functions)

        def test_sample_events_map_or_are_dropped_on_purpose(self) -> None:
            h = DestinationHarness(plugin, _fill(settings, "http://127.0.0.1:9"), name=name)
            limit = h.type.limits.max_event_bytes
            for event in samples:
                payload = h.transform(event)
                message_id = event.get("messageId")
                if message_id in expect_dropped:
                    assert payload is None, f"{message_id} should be dropped"
                    continue
                assert payload is not None, f"{message_id} was dropped unexpectedly"
                data = orjson.dumps(payload)
                assert limit is None or len(data) <= limit

        def test_secrets_never_shown(self) -> None:
            h = DestinationHarness(plugin, _fill(settings, "http://127.0.0.1:9"), name=name)
            values = [
                getattr(h.destination.settings, a.name).reveal()
                for a in attrs.fields(h.type.settings)
                if isinstance(getattr(h.destination.settings, a.name), Secret)
            ]
            shown = [repr(h.destination.settings), str(h.destination.settings),
                     repr(h.destination)]  # fmt: skip
            for field_name in _required(h.type.settings):
                broken = {k: v for k, v in settings.items() if k != field_name}
                try:
                    DestinationHarness(plugin, {**broken, "no_such": 1}, name=name)
                except ConfigError as exc:
                    shown.append(str(exc))
            for value in values:
                for text in shown:
                    assert value not in text

        async def test_base_url_overridable_and_2xx_delivered(self) -> None:
            async with fake_factory() as fake, harness(fake) as h:
                outcomes = await h.deliver(deliverable())
                assert outcomes, "no event to deliver"
                assert all(isinstance(o, Delivered) for o in outcomes), outcomes
                assert fake.requests, "the destination did not call the overridden URL"

        async def test_vendor_invalid_is_rejected_with_reason(self) -> None:
            async with fake_factory() as fake, harness(fake) as h:
                fake.script([invalid_answer] * 8)
                outcomes = await h.deliver(deliverable())
                assert outcomes
                assert all(isinstance(o, Rejected) and o.reason for o in outcomes), outcomes

        async def test_5xx_is_retried(self) -> None:
            async with fake_factory() as fake, harness(fake) as h:
                fake.respond(503)
                outcomes = await h.deliver(deliverable())
                assert outcomes
                assert all(isinstance(o, RetryLater) for o in outcomes), outcomes

        async def test_timeout_is_retried(self) -> None:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
            try:
                async with fake_factory() as fake, harness(fake, http=session) as h:
                    fake.respond(200, delay=timeout * 4)
                    outcomes = await h.deliver(deliverable())
                    assert outcomes
                    assert all(isinstance(o, RetryLater) for o in outcomes), outcomes
            finally:
                await session.close()

        async def test_429_honours_retry_after(self) -> None:
            async with fake_factory() as fake, harness(fake) as h:
                fake.respond(429, {"message": "slow down"}, {"Retry-After": "7"})
                outcomes = await h.deliver(deliverable())
                assert outcomes
                for o in outcomes:
                    assert isinstance(o, RetryLater), o
                    assert o.after == pytest.approx(7.0)

        async def test_batch_limits_respected(self) -> None:
            async with fake_factory() as fake, harness(fake) as h:
                limits = h.type.limits
                template = deliverable()[0]
                count = min(limits.max_batch_count, 200)
                batch = [{**template, "messageId": f"limit-{i}"} for i in range(count)]
                outcomes = await h.deliver(batch)
                assert len(outcomes) == count
                assert all(isinstance(o, Delivered) for o in outcomes), outcomes[:3]
                assert fake.requests
                for request in fake.requests:
                    assert len(request.content) <= limits.max_batch_bytes + 1024

        async def test_one_bad_event_among_four_is_isolated(self) -> None:
            limiter = _CountingLimiter(None)
            async with fake_factory() as fake, harness(fake, limiter=limiter) as h:
                template = deliverable()[0]
                batch = [
                    {**template, "messageId": f"{_MARKER}{i}", "userId": f"{_MARKER}{i}"}
                    for i in range(4)
                ]
                bad = f"{_MARKER}2"
                _refuse_requests_holding(fake, bad, invalid_at or (lambda i: invalid_answer))
                outcomes = await h.deliver(batch)
                kinds = [type(o).__name__ for o in outcomes]
                assert kinds == ["Delivered", "Delivered", "Rejected", "Delivered"], outcomes
                assert outcomes[2].reason  # type: ignore[union-attr]
                assert any(bad in r.text() for r in fake.requests), "the marker was not sent"
                assert len(fake.requests) <= limiter.granted, "requests bypassed the rate limit"

    DestinationContract.__name__ = (
        f"DestinationContract_{name or getattr(plugin, '__name__', 'plugin')}"
    )
    _mark_async_tests(DestinationContract)
    return DestinationContract


_MARKER = "crossdock-contract-user-"


@attrs.define
class _CountingLimiter(RateLimiter):
    """An unlimited rate limiter that counts the tokens it grants."""

    granted: float = 0.0

    async def acquire(self, tokens: float = 1.0) -> None:
        self.granted += tokens


def _refuse_requests_holding(
    fake: FakeVendor, marker: str, answer: Callable[[int], AnswerLike]
) -> None:
    """Make ``fake`` answer ``answer(i)`` to requests holding ``marker`` (after its own checks);
    ``i`` is the position of the item holding it in the request's JSON array."""
    checks = fake.check

    async def check(request: RecordedRequest) -> Any:
        refusal = await checks(request)
        if refusal is not None or marker not in request.text():
            return refusal
        try:
            index = _position(request.json(), marker)
        except orjson.JSONDecodeError:
            index = 0
        return _as_answer(answer(index)).response()

    fake.check = check  # type: ignore[method-assign]


def _position(value: Any, marker: str) -> int:
    """Index of the element holding ``marker`` in the outermost JSON array that holds it (found
    through objects, e.g. ``{"users": [...]}``); 0 when there is none."""
    if isinstance(value, list):
        for i, element in enumerate(value):
            if marker in orjson.dumps(element).decode():
                return i
        return 0
    if isinstance(value, dict):
        for element in value.values():
            if marker in orjson.dumps(element).decode():
                return _position(element, marker)
    return 0


def _mark_async_tests(cls: type) -> None:
    """Mark every coroutine test of ``cls`` for pytest-asyncio, with a function-scoped loop.

    The marks make the suite run in a plugin's own repository whatever its ``asyncio_mode``
    (strict, the default, needs them; auto accepts them), so an author sets nothing.
    """
    for attr, value in list(vars(cls).items()):
        if attr.startswith("test_") and inspect.iscoroutinefunction(value):
            setattr(cls, attr, pytest.mark.asyncio(loop_scope="function")(value))
