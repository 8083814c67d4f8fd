"""The public ingest helpers every source uses: body limits, JSON errors, labels, signatures."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import crossdock
from crossdock import IndexLabels, IngestError


async def answer(
    read: Callable[[web.Request], Awaitable[Any]], data: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    """POST ``data`` to a one-route server on 127.0.0.1 whose handler answers ``read(request)``."""

    async def handle(request: web.Request) -> web.Response:
        try:
            return web.json_response({"value": await read(request)})
        except IngestError as exc:
            return web.json_response({"code": exc.code, "message": exc.message}, status=exc.status)

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            url = f"http://127.0.0.1:{port}/in"
            async with session.post(url, data=data, headers=headers) as response:
                return response.status, await response.json()
    finally:
        await runner.cleanup()


async def test_read_body_limit_with_the_sources_own_answer() -> None:
    async def read(request: web.Request) -> Any:
        body = await crossdock.read_body(request, 1024 * 1024, status=413, code="big")
        return len(body)

    assert await answer(read, b"x" * 1024 * 1024, {}) == (200, {"value": 1024 * 1024})
    status, body = await answer(read, b"x" * (1024 * 1024 + 1), {})
    assert (status, body) == (413, {"code": "big", "message": "body: larger than 1 MB"})
    zipped = gzip.compress(b"x" * (1024 * 1024 + 1))
    status, body = await answer(read, zipped, {"Content-Encoding": "gzip"})
    assert (status, body["code"]) == (413, "big")  # the same answer after inflating


async def test_read_body_defaults_to_segments_400_in_kb() -> None:
    async def read(request: web.Request) -> Any:
        return crossdock.parse_json(await crossdock.read_body(request, 32 * 1024, "event"))

    status, body = await answer(read, b"1" * (32 * 1024 + 1), {})
    assert (status, body) == (400, {"code": "too_large", "message": "event: larger than 32 KB"})
    zipped = gzip.compress(b'{"a": 1}')
    assert await answer(read, zipped, {"Content-Encoding": "gzip"}) == (200, {"value": {"a": 1}})
    status, body = await answer(read, zipped[:-4], {"Content-Encoding": "gzip"})
    assert (status, body["code"]) == (400, "invalid_encoding")


async def test_read_body_inflates_deflate_and_refuses_other_encodings() -> None:
    import zlib

    async def read(request: web.Request) -> Any:
        return crossdock.parse_json(await crossdock.read_body(request, 32 * 1024))

    deflated = zlib.compress(b'{"a": 2}')
    assert await answer(read, deflated, {"Content-Encoding": "deflate"}) == (
        200,
        {"value": {"a": 2}},
    )
    status, body = await answer(read, zlib.compress(b"1" * 40_000), {"Content-Encoding": "deflate"})
    assert (status, body["code"]) == (400, "too_large")
    status, body = await answer(read, b"\x00\x01", {"Content-Encoding": "br"})
    assert (status, body["code"]) == (400, "invalid_encoding")
    assert "use gzip" in body["message"]


def test_parse_json_names_what_and_where() -> None:
    assert crossdock.parse_json(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(IngestError) as info:
        crossdock.parse_json(b'{"a": nope}', "batch")
    assert (info.value.status, info.value.code) == (400, "invalid_json")
    assert info.value.message.startswith("batch: invalid JSON (")
    assert info.value.message.endswith("at byte 6)")


def test_index_labels_are_made_on_demand() -> None:
    labels = IndexLabels(3, "batch")
    assert len(labels) == 3
    assert labels[2] == "batch[2]"
    assert list(labels) == ["batch[0]", "batch[1]", "batch[2]"]
    assert labels[1:] == ["batch[1]", "batch[2]"]
    assert IndexLabels(1)[0] == "[0]"
    with pytest.raises(IndexError):
        labels[3]


def test_secret_in_takes_str_or_bytes() -> None:
    assert crossdock.secret_in("k2", [b"k1", "k2"])
    assert crossdock.secret_in(b"k1", ["k1"])
    assert not crossdock.secret_in("k", ["k1", b"k2"])
    assert not crossdock.secret_in("k", [])


def test_signature_valid_hex_hmac_of_any_candidate() -> None:
    body = b'{"type":"track"}'
    sha1 = hmac.new(b"shh", body, hashlib.sha1).hexdigest()
    sha256 = hmac.new(b"shh", body, hashlib.sha256).hexdigest()
    assert crossdock.signature_valid("shh", sha256, [body])
    assert crossdock.signature_valid(b"shh", f" {sha1.upper()} ", [b"other", body], digest="sha1")
    assert not crossdock.signature_valid("shh", sha1, [body])  # sha256 by default
    assert not crossdock.signature_valid("other", sha256, [body])
    assert not crossdock.signature_valid("shh", None, [body])
    assert not crossdock.signature_valid("shh", "", [body])


async def test_basic_user_and_bearer_token() -> None:
    async def read(request: web.Request) -> Any:
        return [crossdock.basic_user(request), crossdock.bearer_token(request)]

    basic = "Basic " + base64.b64encode(b"wk_1:").decode()
    assert await answer(read, b"", {"Authorization": basic}) == (200, {"value": ["wk_1", None]})
    bearer = {"Authorization": "Bearer  tok-9 "}
    assert await answer(read, b"", bearer) == (200, {"value": [None, "tok-9"]})
    assert await answer(read, b"", {"Authorization": "Basic !!"}) == (200, {"value": [None, None]})
    assert await answer(read, b"", {}) == (200, {"value": [None, None]})
