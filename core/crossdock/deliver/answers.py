"""Helpers every deliverer needs to build a request and read a vendor's answer.

Public through :mod:`crossdock`: :func:`json_array` (a request body from the items' serialized
payloads), :func:`error_message` (the vendor's message in a JSON error body), :func:`mask_body`
(secrets masked in a response body before it becomes a reason) and :func:`outcomes_by_index`
(a vendor's per-index failure list as one outcome per item).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Final

import orjson

from crossdock.secrets import Secret, mask
from crossdock.types import DELIVERED, BatchItem, Outcome

__all__ = ["error_message", "json_array", "mask_body", "outcomes_by_index"]

MESSAGE_LIMIT = 200
"""Characters kept of a vendor's error message."""


def json_array(items: Sequence[BatchItem]) -> bytes:
    """``[data,data,...]``: a JSON array of the items' payloads, serialized once by the core."""
    if not items:
        return b"[]"
    # One join (the brackets go on the end parts): the body of a batch is hundreds of KB, and
    # ``b"[" + joined + b"]"`` allocated and copied it twice.
    parts = list(map(_DATA, items))
    parts[0] = b"[" + parts[0]
    parts[-1] += b"]"
    return b",".join(parts)


_DATA: Final = attrgetter("data")


def error_message(
    text: str,
    keys: Sequence[str] = ("message", "error"),
    *,
    default: str = "no message",
    limit: int = MESSAGE_LIMIT,
) -> str:
    """The vendor's message in an error body, cut to ``limit`` characters.

    A JSON object gives the value of its first key in ``keys`` that is set (a string as is,
    anything else as JSON); any other body gives its stripped text. ``default`` when empty.
    """
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:limit]
            if value not in (None, "", [], {}) and not isinstance(value, str):
                return orjson.dumps(value).decode()[:limit]
    return text.strip()[:limit] or default


def mask_body(text: str, secrets: Iterable[Secret | str], limit: int | None = None) -> str:
    """``text`` with every secret (also URL-encoded and base64, as echoed URLs and ``Basic``
    headers carry it) replaced by ``***``, cut to ``limit`` characters. Values shorter than 4
    characters are not masked."""
    text = mask(text, secrets)
    return text if limit is None else text[:limit]


def outcomes_by_index(
    count: int,
    failures: Mapping[int, Outcome] | Iterable[tuple[int, Outcome]],
    default: Outcome = DELIVERED,
) -> list[Outcome]:
    """One outcome per item of a request of ``count`` items, from the vendor's per-index
    failures (``{index: outcome}`` or ``(index, outcome)`` pairs); the others get ``default``.

    Indices outside ``0..count-1`` are ignored (a vendor's answer is not trusted to be in
    range); when an index comes twice the first outcome wins.
    """
    pairs = failures.items() if isinstance(failures, Mapping) else failures
    outcomes: list[Outcome] = [default] * count
    seen: set[int] = set()
    for index, outcome in pairs:
        if isinstance(index, int) and 0 <= index < count and index not in seen:
            seen.add(index)
            outcomes[index] = outcome
    return outcomes
