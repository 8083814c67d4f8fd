"""``FakeSegmentify``: a strict fake of Segmentify's events endpoint, for tests.

Built on :class:`crossdock.testing.fakes.FakeVendor` (a real aiohttp server on 127.0.0.1) and
strict like the vendor (``contracts/segmentify.md`` §9)::

    async with FakeSegmentify() as fake:
        settings = {"api_key": fake.api_key, "data_center_url": fake.url, "origin": fake.origin}
        ...
        assert fake.events[0]["name"] == "PAGE_VIEW"

Refusals come as Segmentify sends them: ``{"statusCode": CODE, "statusText": "…"}``, with HTTP
400 by default (the real status is unknown; ``error_status=200`` answers errors under 200, which
the vendor may also do). One bad event refuses the whole request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from crossdock.testing.fakes import FakeVendor, RecordedRequest

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_ORIGIN",
    "EVENTS_PATH",
    "EVENT_NAMES",
    "FakeSegmentify",
    "check_event",
]

EVENTS_PATH = "/add/events/v1.json"
DEFAULT_API_KEY = "8f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
DEFAULT_ORIGIN = "https://www.example-shop.com"
EVENT_NAMES = frozenset(
    {
        "PAGE_VIEW",
        "PRODUCT_VIEW",
        "BASKET_OPERATIONS",
        "CHECKOUT",
        "USER_OPERATIONS",
        "USER_CHANGE",
        "CUSTOM_EVENT",
        "INTERACTION",
        "SEARCH",
        "USER_FORM",
        "BANNER_VIEW",
        "BANNER_OPERATIONS",
        "BANNER_GROUP_VIEW",
        "USER_TRAITS",
    }
)
_CONTENT_TYPES = ("application/json", "text/plain")
_BASKET_STEPS = frozenset({"add", "remove"})
_CHECKOUT_STEPS = frozenset({"view-basket", "customer", "payment-info", "purchase"})
_USER_STEPS = frozenset({"signup", "signin", "signout", "update"})
_GENDERS = frozenset({"M", "F", "U"})

_TEXTS = {
    "NO_API_KEY": "apiKey parameter is missing",
    "NO_ACCOUNT": "no account for this apiKey",
    "NO_DOMAIN_APIKEY_MATCH": "Origin does not match the account's domain",
    "BAD_INPUT": "malformed input",
    "NO_EVENT": "no event in the request",
    "NO_USERID": "at least one event in the request lacks userId",
    "NO_SESSIONID": "at least one event in the request lacks sessionId",
}


def _present(event: Mapping[str, Any], key: str) -> bool:
    value = event.get(key)
    return isinstance(value, str) and value != ""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _user_problem(event: Mapping[str, Any]) -> str | None:
    """USER_OPERATIONS: the step (§9), and the types of §3.6 for the profile fields Crossdock
    sends (gender ``M``/``F``/``U``, birthdate text, segments an array of strings); the real
    server's checks of those types are unknown, the fake holds the plugin to the contract."""
    if event.get("step") not in _USER_STEPS:
        return "USER_OPERATIONS needs step signup, signin, signout or update"
    if "gender" in event and event["gender"] not in _GENDERS:
        return "USER_OPERATIONS gender must be M, F or U"
    if "birthdate" in event and not _present(event, "birthdate"):
        return "USER_OPERATIONS birthdate must be a non-empty string"
    segments = event.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, str) and s for s in segments):
        return "USER_OPERATIONS segments must be an array of strings"
    return None


def check_event(event: Any) -> tuple[str, str] | None:
    """``(statusCode, statusText)`` when Segmentify would refuse ``event``, else ``None``."""
    if not isinstance(event, dict):
        return "BAD_INPUT", "an event must be a JSON object"
    if not _present(event, "userId"):
        return "NO_USERID", _TEXTS["NO_USERID"]
    if not _present(event, "sessionId"):
        return "NO_SESSIONID", _TEXTS["NO_SESSIONID"]
    name = event.get("name")
    if name not in EVENT_NAMES:
        return "INVALID_EVENT", "unknown event name"
    problem: str | None = None
    step = event.get("step")
    if name == "PRODUCT_VIEW" and not _present(event, "productId"):
        problem = "PRODUCT_VIEW needs productId"
    elif name == "BASKET_OPERATIONS":
        if step not in _BASKET_STEPS:
            problem = "BASKET_OPERATIONS needs step add or remove"
        elif not _present(event, "productId"):
            problem = "BASKET_OPERATIONS needs productId"
    elif name == "CHECKOUT":
        if step not in _CHECKOUT_STEPS:
            problem = "CHECKOUT needs step view-basket, customer, payment-info or purchase"
        elif not _number(event.get("totalPrice")):
            problem = "CHECKOUT needs a numeric totalPrice"
        elif not isinstance(event.get("productList"), list):
            problem = "CHECKOUT needs a productList array"
        elif step == "purchase" and not _present(event, "orderNo"):
            problem = "CHECKOUT purchase needs orderNo"
    elif name == "USER_OPERATIONS":
        problem = _user_problem(event)
    elif name == "CUSTOM_EVENT" and not _present(event, "type"):
        problem = "CUSTOM_EVENT needs type"
    elif name == "USER_CHANGE" and not _present(event, "oldUserId"):
        problem = "USER_CHANGE needs oldUserId"
    return None if problem is None else ("INVALID_EVENT", problem)


class FakeSegmentify(FakeVendor):
    """A strict fake of ``POST {data_center}/add/events/v1.json?apiKey=…``.

    ``accounts`` maps each known API key to the domain (``Origin``) its account is tied to.
    In order, like the vendor: wrong path or method → 404; ``apiKey`` missing → ``NO_API_KEY``,
    unknown → ``NO_ACCOUNT``; ``Origin`` not the account's → ``NO_DOMAIN_APIKEY_MATCH``; a
    content type other than JSON or text → ``BAD_INPUT``; a body that is not a JSON array or
    object → ``BAD_INPUT``; no events → ``NO_EVENT``; more than ``max_events`` → ``BAD_INPUT``;
    then every event is checked (:func:`check_event`) and the first problem refuses the whole
    request. Success: 200 ``{"statusCode": "SUCCESS", "responses": [[]…], "timestamp": ms}``
    and the events are appended to :attr:`events`. Refused requests are only in
    :attr:`requests`; :attr:`refusals` lists ``(statusCode, statusText)`` in order.
    """

    def __init__(
        self,
        accounts: Mapping[str, str] | None = None,
        *,
        error_status: int = 400,
        max_events: int = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.accounts = dict(accounts or {DEFAULT_API_KEY: DEFAULT_ORIGIN})
        self.error_status = error_status
        self.max_events = max_events
        self.events: list[dict[str, Any]] = []
        self.refusals: list[tuple[str, str]] = []

    @property
    def api_key(self) -> str:
        """The first account's API key."""
        return next(iter(self.accounts))

    @property
    def origin(self) -> str:
        """The first account's domain."""
        return self.accounts[self.api_key]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``[destinations.settings]`` pointing at this fake with its first account."""
        return {
            "api_key": self.api_key,
            "data_center_url": self.url,
            "origin": self.origin,
            **overrides,
        }

    def rate_limited(self, seconds: int = 2) -> None:
        """Answer 429 with ``Retry-After`` until :meth:`healthy` (after the contract checks)."""
        self.respond(429, "Too Many Requests", {"Retry-After": str(seconds)})

    def unavailable(self) -> None:
        """Answer 503 until :meth:`healthy`."""
        self.respond(503, "Service Unavailable")

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    def refuse(self, code: str, text: str | None = None) -> web.Response:
        """Segmentify's error answer for ``code`` (recorded in :attr:`refusals`)."""
        message = text or _TEXTS.get(code, code.lower().replace("_", " "))
        self.refusals.append((code, message))
        return web.json_response(
            {"statusCode": code, "statusText": message}, status=self.error_status
        )

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.path != EVENTS_PATH or request.method != "POST":
            return web.Response(status=404, text="Not Found")
        key = request.query.get("apiKey")
        if not key:
            return self.refuse("NO_API_KEY")
        if key not in self.accounts:
            return self.refuse("NO_ACCOUNT")
        if request.headers.get("Origin") != self.accounts[key]:
            return self.refuse("NO_DOMAIN_APIKEY_MATCH")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in _CONTENT_TYPES:
            return self.refuse("BAD_INPUT", "unsupported content type")
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return self.refuse("BAD_INPUT", "body is not valid JSON")
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list):
            return self.refuse("BAD_INPUT", "body must be a JSON array of events")
        if not body:
            return self.refuse("NO_EVENT")
        if len(body) > self.max_events:
            return self.refuse("BAD_INPUT", f"more than {self.max_events} events")
        for event in body:
            problem = check_event(event)
            if problem is not None:
                return self.refuse(*problem)
        return None

    async def answer(self, request: RecordedRequest) -> web.Response:
        body = request.json()
        events = [body] if isinstance(body, dict) else list(body)
        self.events.extend(events)
        return web.json_response(
            {
                "statusCode": "SUCCESS",
                "responses": [[] for _ in events],
                "timestamp": int(time.time() * 1000),
            }
        )

    def events_named(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The accepted events whose ``name`` is one of ``names``."""
        wanted = set(names)
        return [e for e in self.events if e.get("name") in wanted]
