"""The cheap search for long digit runs in ingest bodies agrees with the regex it replaced."""

from __future__ import annotations

import random
import re

import pytest

from crossdock.errors import IngestError
from crossdock.ingest.body import parse_json
from crossdock.ingest.limits import _may_hold_long_int

REFERENCE = re.compile(rb"\d{20}|-\d{19}")


def _random_body(rng: random.Random) -> bytes:
    alphabet = b'0123456789-"{}[],:. ab\xd9\xa3\xef\xbc\x91'  # plus bytes of non-ASCII digits
    pieces = []
    for _ in range(rng.randrange(1, 12)):
        if rng.random() < 0.5:
            pieces.append(b"7" * rng.randrange(15, 23))
        else:
            pieces.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 6))))
        if rng.random() < 0.3:
            pieces.append(b"-")
    return b"".join(pieces)


def test_agrees_with_the_regex_on_random_bodies() -> None:
    rng = random.Random(1215)
    for _ in range(5000):
        body = _random_body(rng)
        assert _may_hold_long_int(body) == (REFERENCE.search(body) is not None), body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"1" * 19, False),
        (b"1" * 20, True),
        (b"-" + b"1" * 18, False),
        (b"-" + b"1" * 19, True),
        (b"x-" + b"0" * 19 + b"y", True),
        ("\u0661" * 25, False),  # Arabic-Indic digits are not JSON numbers
        (b"", False),
    ],
)
def test_edges(body: bytes | str, expected: bool) -> None:
    data = body.encode() if isinstance(body, str) else body
    assert _may_hold_long_int(data) is expected


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, str])
def test_parse_json_refuses_a_big_integer_whatever_the_buffer_type(kind: type) -> None:
    raw = b'{"n": 18446744073709551616}'
    data = raw.decode() if kind is str else kind(raw)
    with pytest.raises(IngestError) as info:
        parse_json(data)
    assert info.value.code == "integer_out_of_range"
