"""Small pure helpers of delivery: reason words for metrics, secret masking, timestamps.

Metric labels must stay low-cardinality, so every reason that reaches a metric goes through
:func:`retry_reason`, never the vendor's free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from crossdock.secrets import Secret, mask
from crossdock.types import RetryLater

BODY_LIMIT = 4096
"""Vendor response bodies kept in dead letters and errors are cut to this many characters."""


def retry_reason(outcome: RetryLater) -> str:
    """A low-cardinality word for a retry: ``http_<status>``, ``timeout`` or ``connection``."""
    if outcome.status is not None:
        return f"http_{outcome.status}"
    text = outcome.reason.lower()
    if text.startswith("timeout") or "timed out" in text:
        return "timeout"
    if text.startswith("plugin"):
        return "plugin_error"
    return "connection"


def secrets_of(settings: Any) -> tuple[Secret, ...]:
    """Every :class:`Secret` held by an attrs settings object (fields, lists and dict values)."""
    return tuple(_walk(settings, depth=0))


def _walk(value: Any, depth: int) -> Iterator[Secret]:
    if depth > 4:
        return
    if isinstance(value, Secret):
        yield value
    elif attrs.has(type(value)):
        for f in attrs.fields(type(value)):
            yield from _walk(getattr(value, f.name, None), depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _walk(item, depth + 1)


def clean_text(text: str | None, secrets: Iterable[Secret], limit: int = BODY_LIMIT) -> str | None:
    """``text`` with secrets masked and cut to ``limit`` characters (``None`` stays ``None``)."""
    if text is None:
        return None
    text = mask(text, tuple(secrets))
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


def received_epoch(event: Mapping[str, Any]) -> float | None:
    """The event's ``receivedAt`` as epoch seconds, or ``None`` when absent or unreadable."""
    value = event.get("receivedAt")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
