"""Outbound HTTP: ``crossdock/<version>`` User-Agent, the environment's proxies and ``~/.netrc``."""

from __future__ import annotations

import asyncio
import base64
import socketserver
import threading
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from crossdock.cli.main import main
from crossdock.deliver import session as session_module
from crossdock.deliver.http import send_http
from crossdock.deliver.session import environment_options, outbound_session, user_agent
from crossdock.plugins.discovery import core_version

CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["wk-test"]

[[destinations]]
id = "hook"
plugin = "webhook"
[destinations.settings]
url = "URL"
"""


class _Recorder(socketserver.StreamRequestHandler):
    """A fake that is a vendor or a forward proxy: records each request's line and headers,
    answers 200 (502 to ``CONNECT``: no tunnel, the test only needs to see it asked)."""

    def handle(self) -> None:
        line = self.rfile.readline().decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (raw := self.rfile.readline().decode("latin-1").strip()) != "":
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        if length := int(headers.get("content-length", "0")):
            self.rfile.read(length)
        self.server.seen.append((line, headers))  # type: ignore[attr-defined]
        status = "502 Bad Gateway" if line.startswith("CONNECT") else "200 OK"
        body = b'{"ok": true}'
        self.wfile.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


@pytest.fixture
def recorder() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "CROSSDOCK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _send(tmp_path, url: str) -> int:
    config = tmp_path / "crossdock.toml"
    config.write_text(CONFIG.replace("URL", url))
    event = tmp_path / "event.json"
    event.write_bytes(orjson.dumps({"type": "track", "event": "Sent", "userId": "u1"}))
    return main(["test", "hook", "--event", str(event), "-c", str(config), "--send"])


def _url(server: socketserver.ThreadingTCPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def test_user_agent_names_crossdock_and_its_version(tmp_path, recorder, capsys) -> None:
    assert user_agent() == f"crossdock/{core_version()}"
    assert _send(tmp_path, _url(recorder) + "/events") == 0
    [(line, headers)] = recorder.seen
    assert line.startswith("POST /events ")
    assert headers["user-agent"] == f"crossdock/{core_version()}"


def test_http_proxy_from_the_environment_carries_the_request(
    tmp_path, recorder, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HTTP_PROXY", _url(recorder))
    assert _send(tmp_path, "http://vendor.invalid/events") == 0  # only the proxy can answer
    [(line, headers)] = recorder.seen
    assert line.startswith("POST http://vendor.invalid/events ")
    assert headers["user-agent"].startswith("crossdock/")


def test_https_proxy_from_the_environment_is_asked_for_a_tunnel(
    tmp_path, recorder, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", _url(recorder))
    assert _send(tmp_path, "https://vendor.invalid/events") == 1  # the fake proxy refuses
    [(line, _headers)] = recorder.seen
    assert line.startswith("CONNECT vendor.invalid:443 ")


async def test_outbound_session_keeps_explicit_headers() -> None:
    async with outbound_session(headers={"X-Extra": "1"}) as session:
        assert session.headers["User-Agent"] == user_agent()
        assert session.headers["X-Extra"] == "1"


async def test_the_environment_is_looked_up_once_per_origin(monkeypatch) -> None:
    calls: list[str] = []
    look_up = session_module._look_up

    def counting(url):
        calls.append(str(url))
        return look_up(url)

    monkeypatch.setattr(session_module, "_look_up", counting)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    async with outbound_session() as session:
        for path in ("/a", "/b?x=1", "/a"):
            options = await environment_options(session, "https://vendor.invalid" + path, {})
            assert str(options["proxy"]) == "http://proxy.invalid:3128"
        assert await environment_options(session, "https://direct.invalid/x", {}) == {}
        assert len(calls) == 2  # one per origin, not one per request
    async with aiohttp.ClientSession() as other:  # not an outbound session: left alone
        assert await environment_options(other, "https://vendor.invalid/a", {}) == {}


def test_netrc_credentials_apply_unless_the_request_has_its_own(
    tmp_path, recorder, monkeypatch
) -> None:
    host = recorder.server_address[0]
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host} login robot password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    async def send(headers: dict[str, str]) -> None:
        async with outbound_session() as session:
            outcome, status, _ = await send_http(session, "POST", _url(recorder), b"{}", headers)
            assert status == 200, outcome

    asyncio.run(send({}))
    asyncio.run(send({"Authorization": "Bearer vendor-key"}))
    [(_, first), (_, second)] = recorder.seen
    assert first["authorization"] == "Basic " + base64.b64encode(b"robot:s3cret").decode()
    assert second["authorization"] == "Bearer vendor-key"
