"""Checks an ingestor leaves to the core, made on the JSON serialized for storage.

The handler serializes every accepted event once (:func:`crossdock.queue.encode_rows`). Two
checks a source would otherwise make with a pass of its own over the whole body are made on
those bytes instead (see :class:`crossdock.Ingested`):

- **integers beyond 64 bits** (``unchecked_json``). orjson reads such an integer as a float of
  magnitude at least 2^63, and writes every float of magnitude 1e16 or more in exponent form
  (``1.8446744073709552e+19``); an integer too large even for a float is invalid JSON to it. So
  a stored row without a digit, ``e`` and ``+`` in a row holds no such integer, and the exact
  check (:func:`~crossdock.ingest.limits.check_integers` on the body: a translate of every byte,
  75 µs for a 54 KB SDK batch) runs only for a row that has one: a phone number or a URL with
  a ``+`` is not enough, ``"2e+5"`` in a string is (and passes the exact check).
- **one message's size** (``max_event_bytes``). A stored row longer than the limit sends the
  request to the exact check: each message re-serialized as sent, the first one over named.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from crossdock.ingest.body import too_large
from crossdock.ingest.limits import check_integers
from crossdock.ingest.normalize import label
from crossdock.queue import EncodedEvent
from crossdock.types import Ingested

__all__ = ["check_stored_rows", "check_unencoded", "may_hold_big_float"]

_EXPONENT: Final = frozenset(b"eE")
_DIGITS: Final = frozenset(b"0123456789")


def may_hold_big_float(data: bytes) -> bool:
    """Whether ``data`` has a digit, ``e`` (or ``E``) and ``+`` in a row: a float orjson wrote
    in exponent form, as it writes every one of magnitude 1e16 or more."""
    at = data.find(b"+", 2)
    while at != -1:
        if data[at - 1] in _EXPONENT and data[at - 2] in _DIGITS:
            return True
        at = data.find(b"+", at + 1)
    return False


def check_stored_rows(rows: Sequence[EncodedEvent], ingested: Ingested) -> None:
    """Make the checks ``ingested`` left to the core, on its events serialized for storage.

    :raises IngestError: 400 ``integer_out_of_range`` or ``too_large``, as the ingestor's own
        check would have answered.
    """
    unchecked = ingested.unchecked_json
    limit = ingested.max_event_bytes
    if unchecked is None and limit is None:
        return
    big_float = unchecked is None  # nothing to look for then
    too_long = limit is None
    for _, data in rows:
        if not too_long and len(data) > limit:  # type: ignore[operator]
            too_long = True
            check_event_sizes(ingested, limit)  # type: ignore[arg-type]
        if not big_float and b"+" in data and may_hold_big_float(data):
            big_float = True
            check_integers(unchecked)  # type: ignore[arg-type]
        if big_float and too_long:
            return


def check_unencoded(ingested: Ingested) -> None:
    """The same checks, exactly, for a queue that takes events unserialized."""
    if ingested.max_event_bytes is not None:
        check_event_sizes(ingested, ingested.max_event_bytes)
    if ingested.unchecked_json is not None:
        check_integers(ingested.unchecked_json)


def check_event_sizes(ingested: Ingested, limit: int) -> None:
    """400 ``too_large`` naming the first message whose compact JSON is over ``limit`` bytes."""
    dumps = orjson.dumps
    for index, message in enumerate(ingested.events):
        if len(dumps(message)) > limit:
            raise too_large(label(ingested, index) or "event", limit)
