"""The SQLite queue's cross-process write turn (``<queue>.writelock``, for ``--workers N``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from crossdock.queue._sqlite_writelock import WriteLock
from crossdock.queue.sqlite import SqliteQueue


def test_one_holder_at_a_time_and_the_turn_passes_when_it_lets_go(tmp_path: Path) -> None:
    first, second = WriteLock(tmp_path / "q.db", 30.0), WriteLock(tmp_path / "q.db", 30.0)
    order: list[str] = []
    taken = threading.Event()

    def take_second() -> None:
        taken.set()
        with second:
            order.append("second")

    with first:
        thread = threading.Thread(target=take_second)
        thread.start()
        taken.wait()
        thread.join(0.2)  # it cannot have the turn while the first holds it
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "second"]
    assert (tmp_path / "q.db.writelock").exists()
    first.close()
    second.close()


def test_a_holder_that_never_lets_go_ends_in_database_is_locked(tmp_path: Path) -> None:
    holder, waiter = WriteLock(tmp_path / "q.db", 30.0), WriteLock(tmp_path / "q.db", 0.05)
    with holder, pytest.raises(sqlite3.OperationalError, match="database is locked"), waiter:
        pass
    with waiter:  # free again
        pass
    holder.close()
    waiter.close()


async def test_two_queues_on_one_file_take_turns_and_keep_every_event(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    one, two = SqliteQueue(path), SqliteQueue(path)
    await one.open(["d"])
    await two.open(["d"])
    try:
        batches = [
            [{"messageId": f"m-{q}-{i}-{j}"} for j in range(50)] for q in (1, 2) for i in range(20)
        ]
        results = await asyncio.gather(
            *(queue.append(batch) for queue, batch in zip([one, two] * 20, batches, strict=True))
        )
        assert sum(r.stored for r in results) == 2000
        again = await one.append(batches[0] + batches[-1])  # each sees the other's ids
        assert again.duplicates == 100
    finally:
        await one.close()
        await two.close()
