"""``crossdock backfill FILE --to DEST``: the command line of :mod:`crossdock.deliver.backfill`.

Progress goes to stderr: a tqdm bar redrawn in place on a terminal, fitted to its width, a
plain line every ``--progress-every`` seconds otherwise (logs, CI). Failed lines are printed
with their number as they happen; the summary goes to stdout. Exit 0 when every line was
delivered or dropped on purpose, 1 when some failed (they are in the failures file) or the run
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from tqdm import tqdm

from crossdock.cli.common import EXIT_OK, EXIT_PROBLEMS, load
from crossdock.deliver.backfill import (
    BackfillError,
    BackfillRun,
    BackfillState,
    BackfillStats,
    read_lines,
    with_backfill_settings,
)
from crossdock.deliver.session import outbound_session
from crossdock.errors import CrossdockError
from crossdock.secrets import Secret, mask

__all__ = ["Progress", "cmd_backfill"]


class Progress:
    """Renders :class:`~crossdock.deliver.backfill.BackfillStats` for people and for logs.

    On a terminal: a tqdm bar redrawn in place, as wide as the terminal (re-read at every redraw,
    or ``width`` columns), the counters and events/s after it, trimmed to fit. Otherwise: a plain
    :meth:`line` every ``every`` seconds (0: none)."""

    def __init__(
        self, out: TextIO, *, every: float, tty: bool | None = None, width: int | None = None
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.every = every
        self.width = width
        self.started = time.monotonic()
        self._start_position: int | None = None
        self._start_events: int | None = None
        self._last = 0.0
        self._bar: tqdm[Any] | None = None

    def line(self, stats: BackfillStats) -> str:
        """One progress line: percent, line, counters, events/s and ETA."""
        counters, eta = self._counters(stats)
        total = max(stats.total_bytes, 1)
        return f"{100.0 * stats.position / total:5.1f}%  {counters}  ETA {eta}"

    def _counters(self, stats: BackfillStats) -> tuple[str, str]:
        events = stats.delivered + stats.dropped + stats.failed
        if self._start_position is None:
            self._start_position, self._start_events = stats.position, events
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (events - (self._start_events or 0)) / elapsed
        total = max(stats.total_bytes, 1)
        done_bytes = stats.position - self._start_position
        eta = "--:--"
        if done_bytes > 0 and stats.position < total:
            eta = _clock((total - stats.position) * elapsed / done_bytes)
        elif stats.position >= total:
            eta = "0:00"
        counters = (
            f"line {stats.lines:,}  delivered {stats.delivered:,}  dropped {stats.dropped:,}  "
            f"failed {stats.failed:,}  {rate:,.0f} ev/s"
        )
        return counters, eta

    def update(self, stats: BackfillStats, *, force: bool = False) -> None:
        """Redraw the bar (terminal: tqdm decides when) or print a line when it is time to."""
        if self.tty:
            self._draw(stats, force=force)
            return
        now = time.monotonic()
        if not force and (self.every <= 0 or now - self._last < self.every):
            return
        self._last = now
        self.out.write(self.line(stats) + "\n")
        self.out.flush()

    def _draw(self, stats: BackfillStats, *, force: bool) -> None:
        counters, _ = self._counters(stats)
        if self._bar is None:
            self._bar = tqdm(
                total=max(stats.total_bytes, 1),
                initial=stats.position,
                file=self.out,
                ncols=self.width,
                dynamic_ncols=self.width is None,
                bar_format="{percentage:5.1f}%|{bar}| ETA {remaining}  {desc}",
                mininterval=0.2,
                leave=True,
            )
        self._bar.set_description_str(_compact(counters), refresh=False)
        self._bar.update(stats.position - self._bar.n)
        if force:
            self._bar.refresh()

    def message(self, text: str) -> None:
        """Print a message on its own line without garbling the progress bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def close(self, stats: BackfillStats) -> None:
        """Leave the final progress on screen (terminal)."""
        if self.tty:
            self._draw(stats, force=True)
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def _compact(counters: str) -> str:
    """The counters for the bar, shorter: ``1,000 lines  990 ok  10 dropped  0 failed  9 ev/s``."""
    words = counters.split()
    values = dict(zip(words[0:8:2], words[1:8:2], strict=True))
    return (
        f"{values['line']} lines  {values['delivered']} ok  {values['dropped']} dropped  "
        f"{values['failed']} failed  {words[8]} ev/s"
    )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def cmd_backfill(args: argparse.Namespace) -> int:
    """Run one backfill (see the module docstring)."""
    loaded = load(args.config)
    if loaded is None:
        return EXIT_PROBLEMS
    config, registry = loaded
    secrets = config.secrets()
    try:
        destination = config.destination(args.destination)
    except KeyError:
        listing = ", ".join(d.id for d in config.destinations) or "none configured"
        print(f'unknown destination "{args.destination}" (known: {listing})', file=sys.stderr)
        return EXIT_PROBLEMS
    path = Path(args.file)
    if not path.is_file():
        print(f"crossdock backfill: {path}: no such file", file=sys.stderr)
        return EXIT_PROBLEMS
    state_path = (
        Path(args.state)
        if args.state
        else path.with_name(f"{path.name}.{destination.id}.backfill.json")
    )
    failures_path = state_path.with_name(state_path.name.removesuffix(".json") + ".failures.ndjson")
    try:
        destination, applied = with_backfill_settings(destination)
        state = _state(path, destination.id, state_path, failures_path, restart=args.restart)
        if state is None:
            print(
                f"{path}: already backfilled into {destination.id} (state {state_path}); "
                "use --restart to send it again"
            )
            return EXIT_OK
        transform = registry.make_transformer(destination)
    except CrossdockError as exc:
        print(f"crossdock backfill: {mask(str(exc), secrets)}", file=sys.stderr)
        return EXIT_PROBLEMS
    if applied:
        shown = ", ".join(f"{k}={v!r}" for k, v in applied.items())
        print(f"backfill settings of {destination.plugin}: {shown}", file=sys.stderr)
    if state.line:
        print(f"resuming {path} after line {state.line:,}", file=sys.stderr)
    progress = Progress(sys.stderr, every=args.progress_every)
    started = time.monotonic()
    try:
        stats = asyncio.run(
            _run(
                registry,
                destination,
                transform,
                path,
                state,
                state_path,
                failures_path,
                progress,
                secrets,
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress.message(
            f"interrupted: lines up to {state.line:,} are settled; run the same command to resume"
        )
        return 130
    except CrossdockError as exc:
        progress.message(f"crossdock backfill: {mask(str(exc), secrets)}")
        return EXIT_PROBLEMS
    elapsed = max(time.monotonic() - started, 1e-6)
    progress.close(stats)
    sent = stats.delivered + stats.dropped + stats.failed
    print(
        f"backfill {destination.id}: {stats.lines:,} lines, delivered {stats.delivered:,}, "
        f"dropped {stats.dropped:,}, failed {stats.failed:,} in {elapsed:.1f} s "
        f"({sent / elapsed:,.0f} ev/s)"
    )
    if stats.failed:
        print(f"failed lines and reasons: {failures_path}")
        return EXIT_PROBLEMS
    return EXIT_OK


def _state(
    path: Path, destination: str, state_path: Path, failures_path: Path, *, restart: bool
) -> BackfillState | None:
    """The state to start from; ``None`` when this file was already fully backfilled."""
    size = path.stat().st_size
    fresh = BackfillState(file=str(path.resolve()), size=size, destination=destination)
    if restart:
        state_path.unlink(missing_ok=True)
        failures_path.unlink(missing_ok=True)
        return fresh
    saved = BackfillState.load(state_path)
    if saved is None:
        return fresh
    if saved.destination != destination or saved.file != fresh.file:
        msg = (
            f"{state_path} belongs to {saved.file} → {saved.destination}; "
            "pass another --state or --restart"
        )
        raise BackfillError(msg)
    if saved.size != size:
        msg = f"{path} changed since the saved state ({saved.size} → {size} bytes); use --restart"
        raise BackfillError(msg)
    return None if saved.done else saved


async def _run(
    registry,
    destination,
    transform,
    path: Path,
    state: BackfillState,
    state_path: Path,
    failures_path: Path,
    progress: Progress,
    secrets: list[Secret],
) -> BackfillStats:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    lines, size = read_lines(path, skip=state.line)
    timeout = aiohttp.ClientTimeout(total=destination.delivery.timeout)
    async with outbound_session(timeout=timeout) as http:
        deliverer = registry.make_deliverer(destination, http)
        run = BackfillRun(
            destination,
            transform,
            deliverer,
            file_id=state.file,
            state=state,
            state_path=state_path,
            failures_path=failures_path,
            on_progress=progress.update,
            on_failure=lambda line, reason: progress.message(f"line {line}: {reason}"),
            secrets=secrets,
        )
        try:
            return await run.run(lines, size)
        finally:
            await deliverer.close()
