"""HTTP answer → outcome, shared by the built-in HTTP destinations and public for plugins.

The usual vendor semantics: 2xx delivered; 408, 429 and 5xx except 501 retried (``Retry-After``
in seconds or as an HTTP date); 401/403 credentials rejected; other 4xx (and 501) rejected with
the status and body; connection errors and timeouts retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import aiohttp

from crossdock.deliver.outcomes import BODY_LIMIT
from crossdock.deliver.session import environment_options
from crossdock.types import DELIVERED, CredentialsRejected, Outcome, Rejected, RetryLater

MAX_RETRY_AFTER = 3600.0
"""A vendor's ``Retry-After`` is honoured up to an hour."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def outcome_for_status(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    retry_headers: tuple[str, ...] = ("Retry-After",),
) -> Outcome:
    """The outcome of one HTTP answer (see the module docstring)."""
    if 200 <= status < 300:
        return DELIVERED
    if status in (401, 403):
        return CredentialsRejected(f"HTTP {status}: credentials rejected", status)
    if status in (408, 429) or (status >= 500 and status != 501):
        after = None
        for name in retry_headers:
            after = parse_retry_after(headers.get(name))
            if after is not None:
                break
        return RetryLater(f"HTTP {status}", after, status, body[:BODY_LIMIT])
    return Rejected(f"HTTP {status}", status, body[:BODY_LIMIT])


def outcome_for_error(exc: BaseException) -> RetryLater:
    """The outcome of a request that got no answer (connection error or timeout)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return RetryLater(f"timeout: {type(exc).__name__}")
    return RetryLater(f"connection: {type(exc).__name__}: {exc}"[:500])


async def send_http(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    retry_headers: tuple[str, ...] = ("Retry-After",),
) -> tuple[Outcome, int | None, str]:
    """Send one request; return its outcome, the status (``None`` without an answer) and body."""
    try:
        options = {"headers": headers, **await environment_options(http, url, headers)}
        async with http.request(method, url, data=data, **options) as response:
            text = await response.text(errors="replace")
            outcome = outcome_for_status(
                response.status, response.headers, text, retry_headers=retry_headers
            )
            return outcome, response.status, text
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return outcome_for_error(exc), None, ""
