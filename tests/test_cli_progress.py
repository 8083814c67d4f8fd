"""``crossdock backfill`` progress: a bar fitted to the terminal, plain lines when not a TTY."""

from __future__ import annotations

import io
import re

from crossdock.cli.backfill import Progress
from crossdock.deliver.backfill import BackfillStats

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _run(progress: Progress) -> None:
    stats = BackfillStats(position=0, total_bytes=10**6)
    progress.update(stats)
    for i in range(1, 6):
        stats.lines, stats.delivered, stats.dropped = i * 100_000, i * 99_000, i * 1_000
        stats.position = i * 190_000
        progress.update(stats, force=True)
        if i == 3:
            progress.message("line 250000: rejected by the vendor")
    progress.close(stats)


def test_terminal_bar_redraws_in_place_within_the_width() -> None:
    out = io.StringIO()
    _run(Progress(out, every=10.0, tty=True, width=80))
    text = out.getvalue()
    lines = text.split("\n")
    # one line for the message, one final line left on screen: redraws never scroll
    assert lines[-1] == ""
    assert len(lines) == 3
    assert lines[0].endswith("line 250000: rejected by the vendor")
    for frame in re.split(r"[\r\n]", text):
        assert len(_ANSI.sub("", frame)) <= 80
    final = lines[1].split("\r")[-1]
    assert final.startswith(" 95.0%|")
    assert "500,000 lines  495,000 ok  5,000 dropped  0 failed" in final


def test_narrow_terminal_still_fits() -> None:
    out = io.StringIO()
    _run(Progress(out, every=10.0, tty=True, width=40))
    for frame in re.split(r"[\r\n]", out.getvalue()):
        assert len(_ANSI.sub("", frame)) <= 40


def test_not_a_tty_prints_plain_lines_without_control_characters() -> None:
    out = io.StringIO()
    progress = Progress(out, every=0.0, tty=False)
    _run(progress)
    text = out.getvalue()
    assert "\r" not in text
    assert "\x1b" not in text
    # every=0: only the message; forced updates print a line each
    lines = text.splitlines()
    assert "line 250000: rejected by the vendor" in lines
    progress_lines = [line for line in lines if "ETA" in line]
    assert progress_lines[-1].startswith(" 95.0%  line 500,000  delivered 495,000")
    assert all("ev/s" in line for line in progress_lines)


def test_not_a_tty_with_every_zero_prints_no_progress_unless_forced() -> None:
    out = io.StringIO()
    progress = Progress(out, every=0.0, tty=False)
    progress.update(BackfillStats(position=1, total_bytes=10))
    progress.close(BackfillStats(position=10, total_bytes=10))
    assert out.getvalue() == ""
