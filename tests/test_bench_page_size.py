"""``bench/page_size.py`` measures what it says (no timings asserted): each file has the page
size it is reported under, every event is stored, and each figure is set against 4 KiB pages
of the same run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import page_size  # noqa: E402


async def test_each_file_has_the_page_size_it_is_reported_under(tmp_path: Path) -> None:
    args = argparse.Namespace(events=300, page_sizes=[4096, 8192], groups=[1, 100])
    result = await page_size._main(args)
    assert result["events"] == 300
    assert 300 < result["mean_row_bytes"] < 2000  # realistic SDK events, not toy ones
    got = {(r["page_size"], r["events_per_commit"]): r for r in result["results"]}
    assert set(got) == {(4096, 1), (8192, 1), (4096, 100), (8192, 100)}
    for (size, group), r in got.items():
        assert r["stored_bytes"] > 0
        assert r["written_bytes"] > 0
        ratios = r["vs_4096"]
        if size == 4096:
            assert ratios == {"stored_bytes": 1.0, "written_bytes": 1.0, "writer_cpu_us": 1.0}
        else:
            base = got[(4096, group)]
            assert ratios["written_bytes"] == round(r["written_bytes"] / base["written_bytes"], 3)


async def test_the_rows_are_what_the_handler_stores() -> None:
    rows = page_size.realistic_rows(250)
    assert len(rows) == 250
    ids = [mid for mid, _ in rows]
    assert len(set(ids)) == 250
    assert all(ids)
    assert all(data.startswith(b"{") for _, data in rows)
