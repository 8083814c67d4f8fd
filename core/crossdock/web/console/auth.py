"""Signing in to the console: a stateless signed cookie, CSRF tokens, the Origin check and the
sign-in rate limit.

The cookie value is ``<issued_at>.<nonce>.<mac>``: ``mac`` is HMAC-SHA256 over
``<issued_at>.<nonce>`` keyed by a key derived from the admin token, so every process of
``crossdock run --workers N`` can check it without shared state, and a new token (reload)
signs everyone out. The CSRF token is another HMAC, of the cookie value; the page reads it
from the sign-in answer (or ``GET /console/api/session``) and sends it as
``X-Crossdock-CSRF`` with every state-changing request. Scripts may send
``Authorization: Bearer <admin token>`` instead of the cookie (no CSRF token then: browsers do
not add that header by themselves). Tokens and cookies are compared in constant time and
never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from crossdock.ingest.handler import error_body, json_response
from crossdock.secrets import Secret

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSION_SECONDS",
    "SignInLimiter",
    "Signer",
    "check_request",
    "same_origin",
]

COOKIE = "crossdock_console"
CSRF_HEADER = "X-Crossdock-CSRF"
SESSION_SECONDS = 12 * 3600
"""A session cookie is valid this long after sign-in."""

CLOCK_SKEW = 60
"""Seconds a cookie may claim to be issued in the future (processes' clocks differ a little)."""

_KEY_LABEL = b"crossdock console session v1"


class Signer:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(self, token: Secret) -> None:
        self._key = hmac.new(token.reveal().encode(), _KEY_LABEL, hashlib.sha256).digest()

    def issue(self, now: float) -> str:
        """A new cookie value issued at ``now``."""
        payload = f"{int(now)}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._mac(b'session:' + payload.encode())}"

    def expires_at(self, value: str) -> int:
        """When the (valid) cookie ``value`` expires (epoch seconds)."""
        return int(value.split(".", 1)[0]) + SESSION_SECONDS

    def valid(self, value: str | None, now: float) -> bool:
        """Whether ``value`` is a cookie this token signed, and not expired."""
        if not value or len(value) > 200:
            return False
        parts = value.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        issued = int(parts[0])
        payload = f"{parts[0]}.{parts[1]}"
        expected = self._mac(b"session:" + payload.encode())
        if not hmac.compare_digest(parts[2].encode(), expected.encode()):
            return False
        return issued - CLOCK_SKEW <= now < issued + SESSION_SECONDS

    def csrf(self, value: str) -> str:
        """The CSRF token that goes with cookie ``value``."""
        return self._mac(b"csrf:" + value.encode())

    def csrf_ok(self, value: str, given: str | None) -> bool:
        """Whether ``given`` is the CSRF token of cookie ``value`` (constant time)."""
        if not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf(value).encode())

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


class SignInLimiter:
    """At most ``limit`` failed sign-ins per client address per ``window`` seconds.

    Bounded: at most ``max_clients`` addresses are remembered (the oldest failures go first
    when more arrive); only failures are recorded, so signing in normally costs nothing.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float) -> int:
        """Seconds ``client`` must wait before trying again (0: may try now)."""
        failures = self._failures.get(client)
        if failures is None:
            return 0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0
        if len(failures) < self.limit:
            return 0
        return max(1, int(failures[0] + self.window - now + 0.999))

    def failed(self, client: str, now: float) -> None:
        """Count a failed sign-in of ``client``."""
        failures = self._failures.get(client)
        if failures is None:
            if len(self._failures) >= self.max_clients:
                # dicts keep insertion order: forget the address seen first
                del self._failures[next(iter(self._failures))]
            failures = self._failures[client] = deque(maxlen=self.limit)
        failures.append(now)


def bearer_ok(request: web.Request, token: Secret) -> bool:
    """Whether the request carries ``Authorization: Bearer <admin token>`` (constant time)."""
    given = request.headers.get("Authorization")
    if not given:
        return False
    expected = "Bearer " + token.reveal()
    return hmac.compare_digest(given.encode(), expected.encode())


def request_scheme(request: web.Request) -> str:
    """``https`` when the request came over TLS, directly or through a proxy that says so
    (``X-Forwarded-Proto``), else ``http``."""
    if request.secure:
        return "https"
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return "https" if forwarded == "https" else request.scheme


def same_origin(request: web.Request, public_url: str | None) -> bool:
    """Whether the request's ``Origin`` (when present) is the daemon itself: the origin the
    request was addressed to, or ``server.public_url``'s."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    host = request.host.lower()
    allowed = {f"{request.scheme}://{host}", f"{request_scheme(request)}://{host}"}
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme and parts.netloc:
            allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origin in allowed


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    """A console error answer (the admin API's shape)."""
    return json_response(status, error_body(code, message), headers)


def check_request(
    request: web.Request, token: Secret, signer: Signer, public_url: str | None, now: float
) -> web.Response | None:
    """``None`` when the request may go on, else the 401/403/415 answer.

    A valid bearer token passes; else a valid cookie, plus on a non-GET request the CSRF token
    and a same-origin ``Origin``. A non-GET request's body must be JSON.
    """
    unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
    if not bearer_ok(request, token):
        cookie = request.cookies.get(COOKIE)
        if cookie is None or not signer.valid(cookie, now):
            return error(401, "unauthorized", "sign in first: missing, expired or wrong session")
        if unsafe and (
            not signer.csrf_ok(cookie, request.headers.get(CSRF_HEADER))
            or not same_origin(request, public_url)
        ):
            return error(
                403, "csrf", "missing or wrong X-Crossdock-CSRF header, or a foreign Origin"
            )
    elif unsafe and not same_origin(request, public_url):
        return error(403, "csrf", "a foreign Origin")
    if request.method == "POST" and not json_body(request):
        return error(415, "unsupported_media_type", "body: must be application/json")
    return None


def json_body(request: web.Request) -> bool:
    """Whether the request says its body is JSON."""
    return request.content_type == "application/json"
