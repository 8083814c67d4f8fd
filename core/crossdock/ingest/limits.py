"""Ingest limits every source gets from the core, whatever its ingestor does.

- ``max_events``: events in one request. The core's handler checks what every ingestor returned
  (:attr:`crossdock.Ingested.events`); :func:`crossdock.parse_json` also refuses a top-level
  array longer than that before an ingestor maps it item by item (the early, cheap cap).
- ``max_concurrent`` and ``max_body_bytes_in_flight``: ingest requests in progress at once, and
  the bytes of their bodies (by ``Content-Length``; a chunked body counts as
  :data:`CHUNKED_WEIGHT`), across every source of the daemon. Memory follows body bytes, not
  request counts: a 35 KB SDK batch and a 4 MB webhook body cost very differently, so many small
  requests run at once while a few large ones queue. A request beyond either is answered at once
  with 503 and ``Retry-After`` (the SDKs' back-off signal), before its body is read; one request
  alone is always admitted (its source's byte limit still applies).
- integers outside 64 bits: orjson reads them as floats, so the stored event would not hold what
  was sent; :func:`crossdock.parse_json` refuses them with a 400 naming the field.

- ``max_depth``: JSON nesting of one event (the event object is level 1); the handler refuses a
  deeper event with a 400 naming it, the whole request refused (nothing stored).

Bodies over a source's byte limit (after decompression) are refused by
:func:`crossdock.read_body`.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Iterator
from typing import Any, Final

from crossdock.config.load import IngestLimits
from crossdock.errors import IngestError

__all__ = [
    "CHUNKED_WEIGHT",
    "DEFAULT_LIMITS",
    "IngestGate",
    "IngestLimits",
    "check_integers",
    "check_top_level_events",
    "current_limits",
    "too_many_events",
]

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
"""Integers in ``INT_MIN..INT_MAX`` are kept exact; outside, the body is refused."""


DEFAULT_LIMITS: Final = IngestLimits()

_CURRENT: contextvars.ContextVar[IngestLimits] = contextvars.ContextVar(
    "crossdock_ingest_limits", default=DEFAULT_LIMITS
)


def current_limits() -> IngestLimits:
    """The limits of the request being handled (the defaults outside a request)."""
    return _CURRENT.get()


def set_current_limits(limits: IngestLimits) -> None:
    """Make ``limits`` those of the current request (the handler's task)."""
    _CURRENT.set(limits)


def too_many_events(count: int, limit: int) -> IngestError:
    """413 ``too_many_events``: ``body: 120000 events, more than 5000 per request``."""
    msg = f"body: {count} events, more than {limit} per request (send smaller batches)"
    return IngestError(413, msg, code="too_many_events")


def check_top_level_events(parsed: Any) -> None:
    """Refuse a top-level array longer than the current ``max_events`` (413)."""
    limit = _CURRENT.get().max_events
    if type(parsed) is list and len(parsed) > limit:
        raise too_many_events(len(parsed), limit)


CHUNKED_WEIGHT: Final = 512 * 1024
"""The bytes a body without ``Content-Length`` (chunked) is counted as while in flight."""


class IngestGate:
    """Counts ingest requests in progress and their body bytes; :meth:`enter` refuses one over
    ``max_concurrent`` or ``max_body_bytes_in_flight`` (see the module docstring)."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self.in_flight = 0
        self.bytes_in_flight = 0

    def enter(self, content_length: int | None = None) -> int | None:
        """Admit a request whose body declares ``content_length`` bytes; returns the weight to
        give back to :meth:`leave`, or ``None`` (nothing taken) when the daemon is full."""
        weight = CHUNKED_WEIGHT if content_length is None else max(0, content_length)
        if self.in_flight and (
            self.in_flight >= self.limits.max_concurrent
            or self.bytes_in_flight + weight > self.limits.max_body_bytes_in_flight
        ):
            return None
        self.in_flight += 1
        self.bytes_in_flight += weight
        return weight

    def leave(self, weight: int) -> None:
        """Give back what :meth:`enter` took."""
        self.in_flight -= 1
        self.bytes_in_flight -= weight


# ---------------------------------------------------------------------------------------------
# Integers beyond 64 bits

# Every integer outside INT_MIN..INT_MAX has at least 20 digits, or 19 after a minus sign.
# The search also hits digit runs inside strings; only then is the slow exact parse run.
# It is the regex ``\d{20}|-\d{19}`` (ASCII digits), done as a translate (every digit becomes
# "0") and two substring searches: 75 µs instead of 1.5 ms on a 54 KB SDK batch, where the
# regex was a third of the event loop's work (bench/README.md, "Production-like ingest").
_DIGITS_TO_ZERO: Final = bytes(0x30 if 0x30 <= b <= 0x39 else b for b in range(256))
_TWENTY_DIGITS: Final = b"0" * 20
_MINUS_NINETEEN_DIGITS: Final = b"-" + b"0" * 19


def _may_hold_long_int(data: bytes) -> bool:
    """Whether ``data`` has a run of 20 ASCII digits, or a minus sign and 19."""
    digits = data.translate(_DIGITS_TO_ZERO)
    return _TWENTY_DIGITS in digits or _MINUS_NINETEEN_DIGITS in digits


# A run found above is very often inside a string: analytics.js ids are 32 random hex digits,
# and about one batch of 100 in twenty has a run of 20 decimal digits in one. Before the exact
# (slow: stdlib json) parse, each run of 19+ digits is looked at in place: a JSON number starts
# after ``[``, ``,``, ``:``, whitespace or at the start, so digits after anything else
# (a letter, a quote, ``.``, ``e``) cannot be an integer token.
_LONG_RUN: Final = re.compile(rb"0{19,}")
_NUMBER_AFTER: Final = frozenset(b"[,: \t\r\n")


def _may_be_long_int_token(data: bytes) -> bool:
    """Whether a run of 20 digits (or ``-`` and 19) in ``data`` can be a JSON integer."""
    digits = data.translate(_DIGITS_TO_ZERO)
    for match in _LONG_RUN.finditer(digits):
        start = match.start()
        before = data[start - 1] if start else None
        if before == 0x2D:  # "-": the token starts there
            if start == 1 or data[start - 2] in _NUMBER_AFTER:
                return True
        elif match.end() - start >= 20 and (before is None or before in _NUMBER_AFTER):
            return True
    return False


class _OutOfRange(Exception):
    pass


def _exact_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise _OutOfRange
    return value


def check_integers(data: bytes, what: str = "body") -> None:
    """Refuse a body holding an integer outside 64 bits: 400 ``integer_out_of_range`` naming it.

    ``data`` must already be valid JSON (orjson parsed it).
    """
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes | bytearray):
        data = bytes(data)  # a memoryview: translate needs bytes
    if not _may_hold_long_int(data) or not _may_be_long_int_token(data):
        return
    try:
        json.loads(data, parse_int=_exact_int)
    except _OutOfRange:
        where = _first_big_int(json.loads(data), what)
        msg = (
            f"{where}: integer outside -2^63 .. 2^64-1 (it would not be stored exactly; "
            "send it as a string)"
        )
        raise IngestError(400, msg, code="integer_out_of_range") from None
    except (ValueError, RecursionError):
        # stdlib json is stricter than orjson in corner cases (or recurses too deep): orjson's
        # reading stands, and the long digit run was not a number it would have lost.
        return


def _first_big_int(value: Any, path: str) -> str:
    for where, item in _walk(value, path):
        if type(item) is int and not INT_MIN <= item <= INT_MAX:
            return where
    return path


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if type(item) is dict:
            stack.extend((f"{where}.{k}", v) for k, v in reversed(item.items()))
        elif type(item) is list:
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        else:
            yield where, item
