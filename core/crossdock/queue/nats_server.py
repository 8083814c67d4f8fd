"""A throw-away local ``nats-server -js`` for tests and benchmarks of the NATS queue.

``local_nats()`` yields a URL: ``$CROSSDOCK_TEST_NATS_URL`` when set (a server someone else
runs), else a ``nats-server`` from ``PATH`` started on a free 127.0.0.1 port with JetStream
storage in a temporary directory (stopped and removed afterwards). :func:`nats_unavailable`
says why neither is possible, for a test's skip reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["ENV_URL", "NatsServer", "local_nats", "nats_unavailable"]

ENV_URL = "CROSSDOCK_TEST_NATS_URL"


def nats_unavailable() -> str | None:
    """``None`` if a server can be had; else the reason (for ``pytest.skip``)."""
    if os.environ.get(ENV_URL):
        return None
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install 'crossdock[nats]')"
    if shutil.which("nats-server") is None and not os.path.exists("/usr/sbin/nats-server"):
        return f"no nats-server on PATH and {ENV_URL} is not set (apt-get install nats-server)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One ``nats-server -js`` subprocess on a free port; ``stop()`` ends it (``kill()`` -9)."""

    def __init__(self, store_dir: str | None = None, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._own_dir = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="crossdock-nats-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start and wait until the port accepts connections."""
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"nats-server exited with {self.process.returncode}"
                raise RuntimeError(msg)
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4) == b"INFO":
                    return self
            time.sleep(0.05)
        self.stop()
        msg = f"nats-server did not start in {timeout}s"
        raise TimeoutError(msg)

    def stop(self) -> None:
        """Stop the server and remove its storage (if this object made it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)


@contextlib.contextmanager
def local_nats() -> Iterator[str]:
    """A JetStream server URL for the duration of the block (see the module docstring)."""
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    server = NatsServer().start()
    try:
        yield server.url
    finally:
        server.stop()
