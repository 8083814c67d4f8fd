"""``crossdock dlq list|replay|purge``: the dead-letter queue, opened straight from ``[queue]``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import orjson

from crossdock.cli.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, load
from crossdock.errors import CrossdockError
from crossdock.secrets import mask

__all__ = ["cmd_dlq"]


def cmd_dlq(args: argparse.Namespace) -> int:
    """Run one ``dlq`` action; the daemon may be running at the same time."""
    if args.dlq_command is None:
        print("crossdock dlq: choose list, replay or purge", file=sys.stderr)
        return EXIT_USAGE
    if args.dlq_command == "purge" and not (args.destination or args.ids or args.all):
        print("crossdock dlq purge: name a DEST, --id N, or --all", file=sys.stderr)
        return EXIT_USAGE
    loaded = load(args.config)
    if loaded is None:
        return EXIT_PROBLEMS
    config, _ = loaded
    known = [d.id for d in config.destinations]
    if args.destination is not None and args.destination not in known:
        listing = ", ".join(known) or "none configured"
        print(f'unknown destination "{args.destination}" (known: {listing})', file=sys.stderr)
        return EXIT_PROBLEMS
    try:
        return asyncio.run(_run(args, config, known))
    except CrossdockError as exc:
        print(f"crossdock dlq: {mask(str(exc), config.secrets())}", file=sys.stderr)
        return EXIT_PROBLEMS


async def _run(args: argparse.Namespace, config: Any, known: list[str]) -> int:
    from crossdock.queue import make_queue

    queue = make_queue(config.queue)
    await queue.open(known)
    try:
        if args.dlq_command == "list":
            entries = await queue.dlq_list(args.destination, args.limit, args.offset)
            if args.ids:
                entries = [e for e in entries if e.id in set(args.ids)]
            _print_entries(entries, config.secrets(), as_json=args.json)
        elif args.dlq_command == "replay":
            count = await queue.dlq_replay(args.destination, args.ids)
            print(f"replayed {count} event(s)")
        else:
            count = await queue.dlq_purge(args.destination, args.ids)
            print(f"purged {count} event(s)")
    finally:
        await queue.close()
    return EXIT_OK


def _print_entries(entries: list[Any], secrets: list[Any], *, as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "id": e.id,
                "destination": e.destination,
                "failed_at": e.failed_at,
                "attempts": e.attempts,
                "status": e.status,
                "reason": mask(e.reason, secrets),
                "body": mask(e.body, secrets) if e.body is not None else None,
                "event": e.event,
            }
            for e in entries
        ]
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not entries:
        print("no dead-lettered events")
        return
    header = ("ID", "DESTINATION", "FAILED AT", "ATTEMPTS", "STATUS", "REASON")
    lines = [header]
    for e in entries:
        when = dt.datetime.fromtimestamp(e.failed_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = str(e.status) if e.status is not None else "-"
        reason = mask(e.reason, secrets).replace("\n", " ")[:120]
        lines.append((str(e.id), e.destination, when, str(e.attempts), status, reason))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]))
