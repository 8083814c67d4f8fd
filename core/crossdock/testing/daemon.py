"""Run the real Crossdock daemon (``crossdock run``) as a subprocess on a free port.

Tests get the genuine article: the console entry point, config loading, real sockets, a real
SQLite file, signals. ``kill()`` sends SIGKILL for crash tests; ``restart()`` starts it again
on the same port and files.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SERVING = "======== Running on"  # what aiohttp logs once a process listens


class Daemon:
    """A ``crossdock run`` subprocess built from a config body.

    ``config`` is TOML text holding the ``[[sources]]`` and ``[[destinations]]`` tables (and
    optionally more); the daemon adds ``[server]`` (listen on a free port, an admin token) and
    ``[queue]`` (a SQLite file in ``workdir``) unless the text has its own. ``{workdir}`` in the
    text is replaced by the working directory, for file destinations.
    """

    def __init__(
        self,
        config: str,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = ADMIN_TOKEN
        self.env = {**os.environ, **(env or {})}
        self.extra_args = extra_args
        self.config_path = self.workdir / "crossdock.toml"
        self.log_path = self.workdir / "crossdock.log"
        self.config_path.write_text(
            self._full_config(config.replace("{workdir}", str(self.workdir)))
        )
        self.process: subprocess.Popen[bytes] | None = None

    def _full_config(self, body: str) -> str:
        head = ""
        if "[server]" not in body:
            head += (
                f'[server]\nlisten = "127.0.0.1:{self.port}"\n'
                f'admin_token = "{ADMIN_TOKEN}"\nshutdown_timeout = 5\n\n'
            )
        if "[queue]" not in body:
            head += '[queue]\npath = "queue.db"\n\n'
        if "[log]" not in body:
            head += '[log]\nlevel = "info"\nformat = "json"\n\n'
        return head + body

    def start(self, timeout: float = 20.0) -> Daemon:
        """Start the process and wait until ``/health`` answers."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crossdock",
                "run",
                "-c",
                str(self.config_path),
                *self.extra_args,
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Poll ``/health`` until it answers 200; raise with the log if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                msg = f"crossdock exited with {self.process.returncode}:\n{self.log()}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
                    if sock.recv(64).split(b" ", 2)[1:2] == [b"200"]:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        msg = f"crossdock did not become healthy in {timeout}s:\n{self.log()}"
        raise TimeoutError(msg)

    def wait_processes_serving(self, count: int, timeout: float = 60.0) -> None:
        """Under ``--workers N``: wait until ``count`` processes have opened the queue and
        listen (``/health`` answers as soon as the first does; the others may still be
        indexing the dedupe window). Reads the log, so it needs ``info`` logging."""
        deadline = time.monotonic() + timeout
        while sum(r.get("message", "").startswith(_SERVING) for r in self.log_records()) < count:
            if self.process is not None and self.process.poll() is not None:
                msg = f"crossdock exited with {self.process.returncode}:\n{self.log()}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"{count} processes did not all start in {timeout}s:\n{self.log()}"
                raise TimeoutError(msg)
            time.sleep(0.1)

    def log(self) -> str:
        """Everything the daemon printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines parsed (non-JSON lines are skipped)."""
        records = []
        for line in self.log().splitlines():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return records

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: the crash in crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout: float = 20.0) -> Daemon:
        """Start again on the same port, config and files."""
        return self.start(timeout)

    def admin_headers(self) -> dict[str, str]:
        """Headers for the admin API."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
