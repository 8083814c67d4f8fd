"""Property-based fuzzing of every ingest route of every installed source type (issue 15).

One real daemon holds one source of each installed type (built-in and plugin); its routes come
from the registry. Hypothesis posts arbitrary and adversarial JSON and bytes to each route and
checks, per request: never a 5xx; nothing stored unless the answer is 2xx; a 200 on a body of
Spec messages stores every one of them; the daemon stays up.

Examples per route: ``CROSSDOCK_FUZZ_EXAMPLES`` (default 25, a few seconds per route in CI).
A longer run is one command::

    CROSSDOCK_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/test_fuzz_ingest.py

Every 5xx it ever found is kept below as an ``@example``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crossdock.config.load import parse_config
from crossdock.plugins.registry import load_registry
from crossdock.testing.daemon import Daemon

EXAMPLES = int(os.environ.get("CROSSDOCK_FUZZ_EXAMPLES", "25"))
WRITE_KEY = "wk-fuzz-0123456789"
TOKEN = "fuzz-token-0123456789"

# One ``[[sources]]`` body per installed source type: a new type must be added here (the test
# below fails until it is), so every source is fuzzed.
SOURCE_TABLES: dict[str, str] = {
    "segment": f'write_keys = ["{WRITE_KEY}"]',
    "webhook": "",
    "segment-webhook": "",
    "hardal": f'token = "{TOKEN}"',
    "hull": f'connector_secret = "{TOKEN}"',
}
# What each type's sender presents (a valid credential, so bodies reach the parser).
HEADERS: dict[str, dict[str, str]] = {
    "segment": {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()},
    "hardal": {"Authorization": f"Bearer {TOKEN}"},
}
# Types whose body is a Spec message or a list of them, stored one event per message.
SPEC_BODIES = {"webhook", "segment-webhook"}

REGISTRY = load_registry()
INSTALLED = sorted(REGISTRY.source_types)


def _config() -> str:
    tables = []
    for name in INSTALLED:
        if name not in SOURCE_TABLES:
            continue
        sid = name.replace("-", "_")
        tables.append(f'[[sources]]\nid = "{sid}"\ntype = "{name}"\n{SOURCE_TABLES[name]}\n')
    return "\n".join(tables)


def _routes() -> list[tuple[str, str, str]]:
    config = parse_config(_config(), REGISTRY, {})
    out = []
    for source in config.sources:
        for route in REGISTRY.make_ingestor(source).routes():
            out.append((source.type, source.id, route.path))
    return out


ROUTES = _routes()


def test_every_installed_source_type_is_fuzzed() -> None:
    assert set(INSTALLED) <= set(SOURCE_TABLES), "add the new source type to SOURCE_TABLES"
    assert {kind for kind, _, _ in ROUTES} == set(INSTALLED)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # No destination: only ingest is under test. Small limits make the limits reachable.
    config = "[server.limits]\nmax_events = 50\nmax_depth = 16\n\n" + _config()
    d = Daemon(config, tmp_path_factory.mktemp("fuzz")).start()
    yield d
    d.kill()


# -- strategies ---------------------------------------------------------------------------------

BIG_INTS = st.sampled_from([2**64, 2**64 - 1, -(2**63) - 1, -(2**63), 10**30, -(10**25)])
ODD_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59.9999Z",
        "2026-13-01T00:00:00Z",
        "",
        "now",
        "2026-01-01T00:00:00.000Z",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | BIG_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | ODD_TIMES
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "timestamp",
        "sentAt",
        "originalTimestamp",
        "messageId",
        "properties",
        "traits",
        "context",
        "groupId",
        "previousId",
        "name",
        "integrations",
        "batch",
    ]
)
SPEC_TYPES = st.sampled_from(["track", "identify", "page", "screen", "group", "alias"])


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message close to the Spec, with some fields replaced by anything."""
    msg: dict[str, Any] = {
        "type": draw(SPEC_TYPES),
        "userId": "u-1",
        "anonymousId": "a-1",
        "event": "Fuzzed",
        "groupId": "g-1",
        "previousId": "p-1",
        "timestamp": draw(ODD_TIMES),
    }
    for field in draw(st.lists(FIELDS, max_size=4)):
        msg[field] = draw(JSON)
    return msg


def _deep(depth: int) -> bytes:
    return b'{"type": "track", "userId": "u", "event": "E", "properties": ' + (
        b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    )


RAW = st.one_of(
    st.binary(max_size=64),
    st.builds(_deep, st.integers(1, 1100)),
    st.sampled_from([b"", b"[]", b"{}", b"null", b"[" * 2000, b'"x"', b"[1e999]", b"\xff\xfe"]),
)


def _dumps(value: Any) -> bytes:
    # stdlib json: it writes integers beyond 64 bits, which orjson refuses to.
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.builds(_dumps, messages()),
    st.builds(lambda ms: _dumps({"batch": ms}), st.lists(messages(), max_size=6)),
    st.builds(_dumps, st.lists(messages(), min_size=1, max_size=6)),
    st.builds(_dumps, st.lists(messages(), min_size=51, max_size=60)),
    st.builds(_dumps, JSON.filter(lambda j: not isinstance(j, int))),
    BIG_INTS.map(lambda n: b'{"type": "track", "userId": "u", "event": "E", "n": %d}' % n),
    RAW,
)


# -- the daemon, seen from outside ---------------------------------------------------------------


def _post(daemon: Daemon, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


_SERIES = re.compile(
    r'^(crossdock_events_(?:received|deduplicated|looped)_total)\{source="([^"]+)"\} (\S+)$', re.M
)


def _counted(daemon: Daemon, source_id: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(v) for _, sid, v in _SERIES.findall(text) if sid == source_id)


def _spec_count(body: bytes) -> int | None:
    """How many events a 200 must have stored for a Spec-message body (None: unknown)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(parsed) is dict:
        return 1
    if type(parsed) is list:
        return len(parsed)
    return None


@pytest.mark.parametrize(("kind", "source_id", "path"), ROUTES, ids=[r[2] for r in ROUTES])
def test_fuzzed_bodies_never_get_a_5xx_nor_half_stored(
    daemon: Daemon, kind: str, source_id: str, path: str
) -> None:
    headers = HEADERS.get(kind, {})

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=BODIES)
    # Regressions: 500s found on main before issue 15 (unhashable type, calendar overflow).
    @example(body=b'{"type": {}, "userId": "u"}')
    @example(body=b'{"batch": [{"type": [], "userId": "u"}]}')
    @example(
        body=b'[{"type": "identify", "userId": "u", "timestamp": "0001-01-01T00:00:00+01:00"}]'
    )
    @example(body=b'{"type": "identify", "userId": "u", "timestamp": "9999-12-31T23:59:59-01:00"}')
    @example(body=_deep(300))
    def check(body: bytes) -> None:
        before = _counted(daemon, source_id)
        status, answer = _post(daemon, path, body, headers)
        after = _counted(daemon, source_id)
        assert status < 500, (status, answer[:300])
        if status >= 300:
            assert after == before, f"{status} but {after - before} events stored"
        elif kind in SPEC_BODIES:
            expected = _spec_count(body)
            if expected is not None:
                assert after - before == expected, (answer[:300], after - before, expected)

    check()
    status, _ = _get_health(daemon)
    assert status == 200


def _get_health(daemon: Daemon) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
