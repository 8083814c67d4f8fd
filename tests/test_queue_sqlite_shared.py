"""One SQLite writer for ``--workers N``: the other processes send their rows to process 0."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossdock.errors import QueueError
from crossdock.queue import AppendResult
from crossdock.queue._sqlite_shared import (
    AppendClient,
    AppendServer,
    RemoteUnavailable,
    decode_rows,
    encode_request,
)
from crossdock.queue.sqlite import SqliteQueue

TOKEN = "per-run-token"


def rows(prefix: str, n: int) -> list[tuple[str | None, bytes]]:
    return [
        (f"{prefix}-{i}", orjson.dumps({"messageId": f"{prefix}-{i}", "n": i})) for i in range(n)
    ]


@pytest.fixture
async def two_processes(tmp_path: Path):
    """Process 0's queue serving its writer, and another process's queue sending to it."""
    writer, other = SqliteQueue(tmp_path / "q.db"), SqliteQueue(tmp_path / "q.db")
    await writer.open(["d"])
    await writer.append_encoded(rows("earlier", 10))
    server = AppendServer(str(tmp_path / "w.sock"), TOKEN, writer.append_encoded)
    await server.start()
    client = AppendClient(str(tmp_path / "w.sock"), TOKEN)
    other.send_appends_to(client)  # as crossdock.web.app does: before it opens
    await other.open(["d"])
    yield writer, other, server, client
    other.send_appends_to(None)
    await client.close()
    await server.stop()
    await other.close()
    await writer.close()


async def test_rows_go_to_process_0s_group_commit(two_processes) -> None:
    writer, other, _server, client = two_processes
    results = await asyncio.gather(*(other.append_encoded(rows(f"r{i}", 50)) for i in range(8)))
    assert [r.stored for r in results] == [50] * 8
    assert client.sent == 8
    assert other.commits == 0  # nothing committed by the sending process itself
    assert writer.commits >= 1
    again = await other.append_encoded(rows("r3", 50) + rows("new", 2))
    assert (again.stored, again.duplicates) == (2, 50)
    fetched = await writer.fetch("d", 1000, 0.0)
    assert len(fetched) == 412
    assert {q.event["messageId"] for q in fetched} >= {"earlier-0", "r0-0", "r7-49", "new-1"}
    assert other._dedupe is None  # no index of its own: process 0 has the one


async def test_an_unreachable_writer_means_storing_here_and_ids_stay_known(
    two_processes, caplog: pytest.LogCaptureFixture
) -> None:
    writer, other, server, client = two_processes
    await other.append_encoded(rows("before", 20))
    await server.stop()  # process 0 gone (restarting)
    assert other._dedupe is None
    with caplog.at_level(logging.INFO, logger="crossdock.queue"):
        # Storing here begins by indexing what process 0 stored.
        local = await other.append_encoded(
            rows("during", 20) + rows("before", 20) + rows("earlier", 3)
        )
        assert (local.stored, local.duplicates) == (20, 23)
        assert other._dedupe is not None
        assert other.commits == 1
        assert not client.reachable
        await other.append_encoded(rows("still", 5))  # no new attempt for a moment
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1
    # Process 0 back: appends go there again, and it knows the ids stored meanwhile.
    restarted = AppendServer(server.path, TOKEN, writer.append_encoded)
    await restarted.start()
    try:
        client._down_until = 0.0  # skip the pause before trying again
        with caplog.at_level(logging.INFO, logger="crossdock.queue"):
            back = await other.append_encoded(rows("during", 20) + rows("after", 3))
        assert (back.stored, back.duplicates) == (3, 20)
        assert other.commits == 2  # unchanged: process 0 stored it
        assert any("again" in r.getMessage() for r in caplog.records)
    finally:
        await restarted.stop()


async def test_a_storing_failure_in_process_0_reaches_the_sender(tmp_path: Path) -> None:
    async def failing(_rows: list) -> AppendResult:
        raise QueueError("sqlite queue q.db: disk I/O error")

    server = AppendServer(str(tmp_path / "w.sock"), TOKEN, failing)
    await server.start()
    client = AppendClient(str(tmp_path / "w.sock"), TOKEN)
    try:
        with pytest.raises(QueueError, match="disk I/O error"):
            await client.append(rows("x", 3))
        with pytest.raises(QueueError, match="disk I/O error"):  # the connection is reusable
            await client.append(rows("y", 3))
        assert client.reachable
    finally:
        await client.close()
        await server.stop()


async def test_a_wrong_token_or_a_malformed_request_gets_no_answer(tmp_path: Path) -> None:
    stored: list = []

    async def append(batch: list) -> AppendResult:
        stored.append(batch)
        return AppendResult(len(batch), 0)

    server = AppendServer(str(tmp_path / "w.sock"), TOKEN, append)
    await server.start()
    try:
        with pytest.raises(RemoteUnavailable):
            await AppendClient(str(tmp_path / "w.sock"), "forged").append(rows("x", 3))
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "w.sock"))
        header = orjson.dumps([["a", "b"], [5, 5]])
        token = TOKEN.encode()
        writer.writelines([struct.pack("<III", len(token), len(header), 4), token, header, b"abcd"])
        assert await reader.read() == b""  # lengths disagree: closed, nothing stored
        writer.close()
        assert stored == []
        assert (tmp_path / "w.sock").stat().st_mode & 0o777 == 0o600
    finally:
        await server.stop()
    assert not (tmp_path / "w.sock").exists()


async def test_stopping_answers_the_request_being_stored_first(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow(batch: list) -> AppendResult:
        await release.wait()
        return AppendResult(len(batch), 0)

    server = AppendServer(str(tmp_path / "w.sock"), TOKEN, slow)
    await server.start()
    client = AppendClient(str(tmp_path / "w.sock"), TOKEN)
    idle = AppendClient(str(tmp_path / "w.sock"), TOKEN)
    release.set()
    await idle.append(rows("idle", 1))  # leaves an idle connection open
    release.clear()
    sending = asyncio.create_task(client.append(rows("busy", 4)))
    for _ in range(1000):  # until the server has read the request and is storing it
        if server._busy:
            break
        await asyncio.sleep(0.01)
    assert server._busy
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.05)
    release.set()
    assert (await sending).stored == 4
    await asyncio.wait_for(stopping, 10)
    await client.close()
    await idle.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.text(max_size=40)), st.binary(max_size=200)),
        max_size=30,
    )
)
def test_rows_round_trip(batch: list[tuple[str | None, bytes]]) -> None:
    frames = encode_request(b"t", batch)
    _, header_len, body_len = struct.unpack("<III", frames[0])
    assert (len(frames[2]), len(frames[3])) == (header_len, body_len)
    assert decode_rows(frames[2], frames[3]) == batch


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=60))
def test_malformed_headers_are_refused_with_value_errors(header: bytes, body: bytes) -> None:
    try:
        decoded = decode_rows(header, body)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        return
    assert b"".join(data for _, data in decoded) == body


async def test_a_sender_stopped_halfway_does_not_hold_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossdock.queue import _sqlite_shared

    monkeypatch.setattr(_sqlite_shared, "_STOP_WAIT", 0.2)

    async def append(batch: list) -> AppendResult:
        return AppendResult(len(batch), 0)

    server = AppendServer(str(tmp_path / "w.sock"), TOKEN, append)
    await server.start()
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "w.sock"))
    token = TOKEN.encode()
    writer.write(struct.pack("<III", len(token), 10, 10) + token)  # then nothing more
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.stop(), 10)
    assert await reader.read() == b""
    writer.close()


def test_negative_or_fractional_row_lengths_are_refused() -> None:
    for lengths in ([5, -2], [1.5, 1.5]):
        header = orjson.dumps([["a", "b"], lengths])
        with pytest.raises(ValueError, match="count of bytes"):
            decode_rows(header, b"abc")
