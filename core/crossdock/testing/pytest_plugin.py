"""Pytest fixtures of the Crossdock test kit (registered through the ``pytest11`` entry point).

Import-light on purpose: this module loads in every pytest run of an environment where
crossdock is installed, so it imports nothing heavy at module level and stays harmless where
pytest-asyncio is missing (only the async fixtures need it). ``-p no:crossdock`` turns it off.
Every fixture is prefixed ``crossdock_``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from crossdock.testing.daemon import Daemon
    from crossdock.testing.fakes import FakeVendor


@pytest.fixture
def crossdock_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: ``crossdock_daemon(config_text, **kw)`` starts ``crossdock run`` on a free port.

    Every daemon started through it is killed at teardown.
    """
    from crossdock.testing.daemon import Daemon

    started: list[Daemon] = []

    def start(config: str, *, name: str = "daemon", **kwargs: Any) -> Daemon:
        daemon = Daemon(config, tmp_path / name, **kwargs)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.kill()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixtures need pytest-asyncio
    pytest_asyncio = None

if pytest_asyncio is not None:
    # An explicit loop scope: right in strict and auto mode, whatever the project's default.
    @pytest_asyncio.fixture(loop_scope="function")
    async def crossdock_fake_vendor() -> AsyncIterator[FakeVendor]:
        """A running :class:`~crossdock.testing.fakes.FakeVendor` on 127.0.0.1."""
        from crossdock.testing.fakes import FakeVendor

        fake = FakeVendor()
        await fake.start()
        try:
            yield fake
        finally:
            await fake.close()
