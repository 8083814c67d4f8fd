"""A long digit run inside a string (an analytics.js id) no longer sends the body through the
exact (stdlib json) parse: ``check_integers`` decides as the exact parse would, on random
bodies mixing long integers, long digit runs in strings and long fractions."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from crossdock.errors import IngestError
from crossdock.ingest.limits import INT_MAX, INT_MIN, _may_be_long_int_token, check_integers


def _digits(rng: random.Random, low: int, high: int) -> str:
    return str(rng.randrange(1, 10)) + "".join(
        str(rng.randrange(10)) for _ in range(rng.randrange(low, high) - 1)
    )


def _value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return ("-" if rng.random() < 0.5 else "") + _digits(rng, 17, 23)
    if kind == 1:
        prefix = rng.choice(["ajs-next-", "x-", "-", "", "a ", ": ", "[", "1.", "e"])
        return json.dumps(prefix + _digits(rng, 17, 25) + rng.choice(["", "ab", "-"]))
    if kind == 2:
        return "0." + _digits(rng, 18, 25) + rng.choice(["", "e5", "E-3"])
    if kind == 3:
        return str(rng.randrange(-1000, 1000))
    if kind == 4:
        return json.dumps("ajs-next-" + "".join(rng.choice("0123456789abcdef") for _ in range(32)))
    if kind == 5:
        items = [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
        return "[" + rng.choice([",", ", ", " ,\n"]).join(items) + "]"
    spaces = ["", " ", "\t"]
    pairs = [f'"k{i}":{rng.choice(spaces)}{_value(rng, depth + 1)}' for i in range(3)]
    return "{" + ",".join(pairs) + "}"


def _exactly_out_of_range(body: bytes) -> bool:
    out = False

    def parse_int(text: str) -> int:
        nonlocal out
        value = int(text)
        out = out or not INT_MIN <= value <= INT_MAX
        return value

    json.loads(body, parse_int=parse_int)
    return out


def test_decides_as_the_exact_parse_on_random_bodies() -> None:
    rng = random.Random(1212)
    refused = 0
    for _ in range(4000):
        body = _value(rng, 2 if rng.random() < 0.3 else 0).encode()
        orjson.loads(body)  # valid JSON, as check_integers requires
        expected = _exactly_out_of_range(body)
        if expected:
            refused += 1
            assert _may_be_long_int_token(body), body
            with pytest.raises(IngestError):
                check_integers(body)
        else:
            check_integers(body)
    assert 200 < refused < 3800  # both outcomes are well exercised


@pytest.mark.parametrize(
    ("body", "possible"),
    [
        (b'{"messageId": "ajs-next-2ff760510629923735627716beb814c1"}', False),
        (b'{"id": "x-' + b"1" * 19 + b'"}', False),
        (b'{"f": 1.' + b"1" * 25 + b"}", False),
        (b'{"f": 1e' + b"1" * 25 + b"}", False),
        (b'{"n": ' + b"1" * 20 + b"}", True),
        (b'{"n":-' + b"1" * 19 + b"}", True),
        (b"[\n" + b"1" * 20 + b"]", True),
        (b"1" * 20, True),
        (b"-" + b"1" * 19, True),
        (b"[" + b"1" * 19 + b"]", False),
    ],
)
def test_run_in_place(body: bytes, possible: bool) -> None:
    assert _may_be_long_int_token(body) is possible
