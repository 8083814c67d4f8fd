"""The built-in ``file`` destination: NDJSON appends."""

from __future__ import annotations

from pathlib import Path

import orjson

from crossdock import DELIVERED, RetryLater
from crossdock.deliver.destinations import file as file_destination
from crossdock.testing.harness import DestinationHarness


async def test_appends_one_json_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.ndjson"
    async with DestinationHarness(file_destination, {"path": str(path)}) as h:
        events = [
            {"type": "track", "event": "E", "userId": "u", "messageId": f"m{i}"} for i in range(3)
        ]
        assert await h.deliver(events[:2]) == [DELIVERED, DELIVERED]
        assert await h.deliver(events[2:]) == [DELIVERED]
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["messageId"] for line in lines] == ["m0", "m1", "m2"]


async def test_unwritable_path_retries(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    async with DestinationHarness(file_destination, {"path": str(blocker / "sub" / "x")}) as h:
        (outcome,) = await h.deliver([{"type": "track", "event": "E", "userId": "u"}])
    assert isinstance(outcome, RetryLater)
