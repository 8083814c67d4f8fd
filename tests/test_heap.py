"""``crossdock run``'s collector settings (:mod:`crossdock.heap`)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from crossdock.heap import YOUNG_THRESHOLD, prepare_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_come_less_often(
    restored_gc: None,
) -> None:
    _, older, oldest = gc.get_threshold()
    prepare_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, older, oldest)


def test_a_batch_of_decoded_events_no_longer_triggers_young_collections(
    restored_gc: None,
) -> None:
    # What the threshold is for: a delivery batch of 500 decoded events (a few thousand
    # dicts and lists) used to set off a dozen collections that freed nothing.
    row = orjson.dumps(
        {"type": "track", "event": "E", "properties": {"a": [1, 2], "b": {"c": 1}}, "context": {}}
    )
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            collections.append(1)

    prepare_for_serving()
    gc.collect()
    gc.callbacks.append(count)
    try:
        batch = [orjson.loads(row) for _ in range(500)]
    finally:
        gc.callbacks.remove(count)
    assert len(batch) == 500
    assert collections == []


def test_crossdock_run_applies_it_before_serving(tmp_path: Path) -> None:
    # The run command calls prepare_for_serving() right before run_app(): checked in a child
    # process (it changes interpreter-wide state) with run_app replaced by a probe.
    probe = (
        "import gc, sys\n"
        "import crossdock.web.app as app\n"
        "def fake(*a, **k):\n"
        "    print('threshold', gc.get_threshold()[0], 'frozen', gc.get_freeze_count() > 0)\n"
        "app.run_app = fake\n"
        "from crossdock.cli.main import main\n"
        "sys.exit(main(['run', '-c', sys.argv[1]]))\n"
    )
    config = tmp_path / "crossdock.toml"
    config.write_text(
        '[server]\nlisten = "127.0.0.1:0"\n\n[queue]\npath = "q.db"\n\n'
        '[[sources]]\nid = "web"\ntype = "segment"\nwrite_keys = ["k"]\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert f"threshold {YOUNG_THRESHOLD} frozen True" in out.stdout
