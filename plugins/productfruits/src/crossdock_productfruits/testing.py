"""A strict fake of Product Fruits' Segment-webhook intake (``contracts/productfruits.md`` §6).

Built on :class:`crossdock.testing.fakes.FakeVendor`, so scripting (``script``, ``respond``),
the request log and ``wait_for`` work as usual; the contract checks run first::

    async with FakeProductFruits(secret="pf-secret") as pf:
        settings = {"webhook_url": pf.webhook_url, "webhook_secret": "pf-secret"}
        ...
        assert pf.matches[0].how == "email"

Checks, in order (a refused request is in ``requests`` but nothing else is recorded):

1. only the configured path → else 404; only ``POST`` → else 405; ``Content-Type:
   application/json`` → else 415;
2. ``X-Signature`` present and equal (constant-time) to the lowercase hex HMAC-SHA1 of the raw
   body bytes keyed by the webhook secret → else 401 (status inferred);
3. the body is one JSON object (an array, i.e. a batch, → 400) whose ``type`` is a Spec type,
   with an ``event`` string on track and object ``traits``/``properties``/``context`` → else 400.

Accepted identify/track messages are matched like Product Fruits does: by email
(``traits.email``, then ``context.traits.email``) against the users' ``email``, then ``userId``
against ``username``, else a user is created; without ``userId`` and email the message is
accepted (200) but recorded in :attr:`unmatched` (Product Fruits would make an orphan user).
Other types are accepted and ignored. Error bodies are ``{"error": "<message>"}`` (inferred).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web
from attrs import define, field

from crossdock.testing.fakes import FakeVendor, RecordedRequest

__all__ = ["DEFAULT_PATH", "DEFAULT_SECRET", "FakeProductFruits", "Match", "User"]

DEFAULT_SECRET = "pf-webhook-secret-0123456789"
DEFAULT_PATH = "/integrations/segment/webhook/ws-test-1234"
SPEC_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})


@define
class User:
    """A Product Fruits user as the fake keeps it: ``username``, ``email``, custom ``props``
    (updated, never removed, as in Full sync mode) and the names of the events tracked."""

    username: str | None
    email: str | None = None
    props: dict[str, Any] = field(factory=dict)
    events: list[str] = field(factory=list)


@define
class Match:
    """How one accepted identify/track message was matched: ``how`` is ``email``,
    ``username``, ``created`` or ``unmatched``; ``user`` the user it landed on (``None`` when
    unmatched)."""

    message: dict[str, Any]
    how: str
    user: User | None


class FakeProductFruits(FakeVendor):
    """The fake webhook receiver (see the module docstring).

    :param secret: the Webhook Secret requests must be signed with.
    :param path: the path of the Webhook URL (:attr:`webhook_url` is the full URL).
    :param users: users that exist before the test, e.g. ``[User("ana@example.com",
        "ana@example.com")]``.
    """

    def __init__(
        self,
        secret: str = DEFAULT_SECRET,
        *,
        path: str = DEFAULT_PATH,
        users: Iterable[User] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.path = path
        self.users: list[User] = list(users)
        self.messages: list[dict[str, Any]] = []
        self.matches: list[Match] = []
        self.unmatched: list[dict[str, Any]] = []

    @property
    def webhook_url(self) -> str:
        """The Webhook URL to configure (``webhook_url`` setting)."""
        return self.url + self.path

    # -- failure modes ---------------------------------------------------------------------------

    def unavailable(self, status: int = 503) -> None:
        """Answer ``status`` (a 5xx) to every signed request until :meth:`healthy`."""
        self.respond(status, {"error": "Service Unavailable"})

    def slow(self, seconds: float = 6.0) -> None:
        """Answer 200 only after ``seconds`` (Segment gives up after 5 s) until :meth:`healthy`."""
        self.respond(200, {"success": True}, delay=seconds)

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    # -- lookups ---------------------------------------------------------------------------------

    def user(self, *, username: str | None = None, email: str | None = None) -> User | None:
        """The user with this username or email, if any."""
        for user in self.users:
            if (username is not None and user.username == username) or (
                email is not None and user.email == email
            ):
                return user
        return None

    # -- contract --------------------------------------------------------------------------------

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.path != self.path:
            return _error(404, "Not found")
        if request.method != "POST":
            return _error(405, "Method not allowed")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(415, "Content-Type must be application/json")
        signature = request.headers.get("X-Signature", "").strip().lower()
        expected = hmac.new(self.secret.encode(), request.body, hashlib.sha1).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return _error(401, "Invalid signature")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return _error(400, "Invalid JSON")
        if isinstance(body, list):
            return _error(400, "Expected one Segment message, got a batch")
        if not isinstance(body, dict):
            return _error(400, "Expected a JSON object")
        return _invalid(body)

    async def answer(self, request: RecordedRequest) -> web.Response:
        message = request.json()
        self.messages.append(message)
        if message["type"] in ("identify", "track"):
            self._match(message)
        return web.json_response({"success": True})

    def _match(self, message: dict[str, Any]) -> None:
        email = _email(message)
        user_id = message.get("userId") or None
        user, how = None, "unmatched"
        if email is not None:
            user, how = self.user(email=email), "email"
        if user is None and user_id is not None:
            user, how = self.user(username=user_id), "username"
        if user is None and (user_id is not None or email is not None):
            user, how = User(username=user_id or email, email=email), "created"
            self.users.append(user)
        if user is None:
            self.unmatched.append(message)
            self.matches.append(Match(message, "unmatched", None))
            return
        if email is not None and user.email is None:
            user.email = email
        if message["type"] == "identify":
            traits = message.get("traits") or {}
            user.props.update({k: v for k, v in traits.items() if k != "email"})
        else:
            user.events.append(message["event"])
        self.matches.append(Match(message, how, user))


def _email(message: Mapping[str, Any]) -> str | None:
    for holder in (message.get("traits"), (message.get("context") or {}).get("traits")):
        if isinstance(holder, Mapping):
            value = holder.get("email")
            if isinstance(value, str) and value:
                return value
    return None


def _invalid(body: Mapping[str, Any]) -> web.Response | None:
    kind = body.get("type")
    if kind not in SPEC_TYPES:
        return _error(400, "type must be one of identify, track, page, screen, group, alias")
    if kind == "track" and (not isinstance(body.get("event"), str) or not body["event"]):
        return _error(400, "event is required for track")
    for name in ("traits", "properties", "context", "integrations"):
        if name in body and body[name] is not None and not isinstance(body[name], dict):
            return _error(400, f"{name} must be an object")
    for name in ("userId", "anonymousId"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            return _error(400, f"{name} must be a string")
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
