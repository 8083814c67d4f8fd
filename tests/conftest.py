"""Fixtures shared by the core's test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crossdock.queue.nats_server import local_nats, nats_unavailable


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    """A ``nats-server -js`` of this test module (from PATH, on a free port, with a temporary
    store), or ``$CROSSDOCK_TEST_NATS_URL``; skips with the reason when there is neither."""
    reason = nats_unavailable()
    if reason:
        pytest.skip(reason)
    with local_nats() as url:
        yield url
