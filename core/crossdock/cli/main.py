"""The ``crossdock`` command: run, check, plugins, test, dlq, backfill, init, completion.

Exit codes: 0 ok, 1 problems (invalid config, failed delivery, ...), 2 usage errors. Nothing
printed ever contains a configured secret.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from crossdock.cli.common import (
    CONFIG_ENV,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    default_config,
    load,
)
from crossdock.errors import ConfigError, CrossdockError
from crossdock.types import HasNotes

if TYPE_CHECKING:
    from crossdock.config.load import Config
    from crossdock.plugins.registry import Registry

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code for usage is 2 as well
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="crossdock", description="Self-hosted customer-event router.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def config_arg(p: argparse.ArgumentParser) -> None:
        _file(
            p.add_argument(
                "-c",
                "--config",
                default=None,
                metavar="FILE",
                help=f"config file (default: ${CONFIG_ENV} or crossdock.toml)",
            )
        )

    p = sub.add_parser("run", help="run the daemon")
    config_arg(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the queue (on sqlite, process 0 stores and delivers and the"
        " others take the connections)",
    )
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)

    p = sub.add_parser("check", help="validate the config and plugins; list every problem")
    config_arg(p)
    p.add_argument(
        "--json", action="store_true", help="one JSON object: ok, problems, notes, counts"
    )

    p = sub.add_parser("plugins", help="installed plugins, versions, their types")
    p.add_argument("--json", action="store_true", help="JSON rows for scripts")

    p = sub.add_parser("test", help="show the request(s) DEST would get for an event")
    config_arg(p)
    p.add_argument("destination", metavar="DEST", help="destination id")
    _file(
        p.add_argument(
            "--event", required=True, metavar="FILE", help="JSON event (or list), '-' = stdin"
        )
    )
    p.add_argument("--send", action="store_true", help="really deliver and show the response")
    p.add_argument(
        "--source",
        metavar="SOURCE",
        help="test the event as accepted by this source (default: the source a captured event "
        "names, else the destination's first source)",
    )
    p.add_argument(
        "--allow-dropped",
        action="store_true",
        help="exit 0 even when no event would be sent",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: problems, notes, each event's outcome, the requests (masked)",
    )

    p = sub.add_parser("dlq", help="dead-letter queue: list, replay, purge")
    dlq = p.add_subparsers(dest="dlq_command", metavar="ACTION", parser_class=_Parser)
    for name, text in (
        ("list", "list dead-lettered events"),
        ("replay", "queue dead-lettered events again"),
        ("purge", "delete dead-lettered events for good"),
    ):
        q = dlq.add_parser(name, help=text)
        config_arg(q)
        q.add_argument("destination", metavar="DEST", nargs="?", help="destination id")
        q.add_argument("--id", dest="ids", type=int, action="append", metavar="N", help="entry id")
        if name == "list":
            q.add_argument("--limit", type=int, default=100)
            q.add_argument("--offset", type=int, default=0)
            q.add_argument("--json", action="store_true", help="JSON rows, events included")
        if name == "purge":
            q.add_argument("--all", action="store_true", help="purge every destination's entries")

    p = sub.add_parser("backfill", help="import historical events (NDJSON, or gzip of it)")
    config_arg(p)
    _file(p.add_argument("file", metavar="FILE", help="NDJSON of Spec events, optionally gzipped"))
    p.add_argument("--to", required=True, metavar="DEST", dest="destination", help="destination")
    p.add_argument(
        "--state", metavar="PATH", help="resume state (default: FILE.DEST.backfill.json)"
    )
    p.add_argument("--restart", action="store_true", help="ignore saved state; start at line 1")
    p.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (0: none)",
    )

    p = sub.add_parser("init", help="write a starter crossdock.toml, or a new plugin (--plugin)")
    p.add_argument("path", nargs="?", default=None, metavar="PATH", help="default: crossdock.toml")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument(
        "--plugin", metavar="NAME", help="write a new plugin distribution crossdock-NAME instead"
    )
    p.add_argument("--dir", metavar="DIR", help="where --plugin writes (default: ./crossdock-NAME)")

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=COMPLETION_SHELLS, help="the shell to complete in")
    return parser


COMPLETION_SHELLS = ("bash", "zsh", "fish")


def _file(action: argparse.Action) -> None:
    """Let shell completion offer file names for ``action`` (shtab reads ``complete``)."""
    import shtab

    action.complete = shtab.FILE  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossdock`` command; returns the exit code (and exits with it when
    called as a script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from crossdock.plugins.discovery import core_version

        print(f"crossdock {core_version()}")
        return _exit(EXIT_OK, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return _exit(EXIT_USAGE, argv)
    handler = {
        "run": cmd_run,
        "check": cmd_check,
        "plugins": cmd_plugins,
        "test": _cmd_test,
        "dlq": _cmd_dlq,
        "backfill": _cmd_backfill,
        "init": cmd_init,
        "completion": cmd_completion,
    }[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        code = 130
    return _exit(code, argv)


def _exit(code: int, argv: Sequence[str] | None) -> int:
    if argv is None:  # called as the console script
        sys.exit(code)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    """``crossdock run``: validate, then run the daemon until SIGTERM/SIGINT."""
    if args.workers < 1:
        print("crossdock run: --workers: must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    loaded = load(args.config)
    if loaded is None:
        return EXIT_PROBLEMS
    config, registry = loaded
    if args.worker_index is None:
        for problem in registry.problems:
            print(f"warning: {problem}", file=sys.stderr)
    from crossdock.heap import prepare_for_serving
    from crossdock.web.app import run_app, run_workers

    try:
        if args.workers > 1 and args.worker_index is None:
            return run_workers(config, args.config or default_config(), args.workers)
        prepare_for_serving()
        run_app(config, registry, worker_index=args.worker_index or 0, workers=args.workers)
    except CrossdockError as exc:
        from crossdock.secrets import mask

        print(f"crossdock run: {mask(str(exc), config.secrets())}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """``crossdock check``: every config and plugin problem, or ``ok: N sources, M destinations``.

    Exit 1 on any problem. ``--json`` prints one object instead: ``ok``, ``problems`` and
    ``notes`` (lists of ``path: message``, masked), ``sources`` and ``destinations`` (counts, 0
    when the config is invalid).
    """
    report = check_report(args.config)
    heading = report.pop("heading", "")
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif report["ok"]:
        for note in report["notes"]:
            print(f"note: {note}")
        print(f"ok: {report['sources']} sources, {report['destinations']} destinations")
    else:
        print(heading)
        for problem in report["problems"]:
            print(f"  {problem}")
    return EXIT_OK if report["ok"] else EXIT_PROBLEMS


def check_report(config_path: str | None) -> dict[str, Any]:
    """What ``crossdock check`` found, as a JSON-ready dict (``heading``: the text form's first
    line when there are problems)."""
    from crossdock.config.load import load_config
    from crossdock.plugins.registry import load_registry

    registry = load_registry()
    path = config_path or default_config()
    report: dict[str, Any] = {
        "ok": False,
        "config": str(path),
        "problems": [],
        "notes": [],
        "sources": 0,
        "destinations": 0,
    }
    try:
        config = load_config(path, registry)
    except ConfigError as exc:
        report["problems"] = [*exc.problems, *registry.problems]
        report["heading"] = f"{path}: {len(exc.problems)} problem(s):"
        return report
    if registry.problems:
        report["problems"] = list(registry.problems)
        report["heading"] = f"{len(registry.problems)} plugin problem(s):"
        return report
    notes: list[str] = []
    problems = transformer_problems(config, registry, notes=notes)
    report["sources"], report["destinations"] = len(config.sources), len(config.destinations)
    if problems:
        report["problems"] = problems
        report["heading"] = f"{len(problems)} problem(s):"
        return report
    report.update(ok=True, notes=notes)
    return report


def transformer_problems(
    config: Config, registry: Registry, *, notes: list[str] | None = None
) -> list[str]:
    """Build every destination's transformer as ``run`` would (pure: no I/O) and say which
    fail, so a plugin's own mapping checks show up in ``check`` and not only at start-up.

    A transformer's ``notes()`` (:class:`crossdock.HasNotes`: what the operator should know
    about this configuration, e.g. a default the vendor needs that is not set) are appended to
    ``notes``, masked like problems."""
    from crossdock.secrets import mask

    secrets = config.secrets()
    problems: list[str] = []
    for i, destination in enumerate(config.destinations):
        where = f"destinations[{i}] ({destination.id})"
        try:
            transformer = registry.make_transformer(destination)
            said = transformer.notes() if isinstance(transformer, HasNotes) else ()
        except Exception as exc:
            text = mask(str(exc), secrets) or type(exc).__name__
            problems.append(f"{where}: {text}")
            continue
        if notes is not None:
            notes += [f"{where}: {mask(str(note), secrets)}" for note in said]
    return problems


def cmd_plugins(args: argparse.Namespace) -> int:
    """``crossdock plugins``: one row per plugin; ``--json`` for scripts."""
    from crossdock.plugins.discovery import installed_plugins

    rows = installed_plugins()
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_table(rows))
    return EXIT_PROBLEMS if any(r["status"].startswith("failed") for r in rows) else EXIT_OK


def format_table(rows: list[dict[str, Any]]) -> str:
    """The aligned plain-text table of ``crossdock plugins``."""
    header = ("PLUGIN", "DISTRIBUTION", "VERSION", "SOURCES", "DESTINATIONS", "HOOKS", "STATUS")
    lines = [header]
    for r in rows:
        hooks = ",".join(h.removeprefix("crossdock_") for h in r["hooks"]) or "-"
        lines.append(
            (
                r["name"],
                r["distribution"] or "-",
                r["version"] or "-",
                ",".join(r["source_types"]) or "-",
                ",".join(r["destination_types"]) or "-",
                hooks,
                r["status"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    )


def _cmd_test(args: argparse.Namespace) -> int:
    from crossdock.cli.test import cmd_test

    return cmd_test(args)


def _cmd_dlq(args: argparse.Namespace) -> int:
    from crossdock.cli.dlq import cmd_dlq

    return cmd_dlq(args)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from crossdock.cli.backfill import cmd_backfill

    return cmd_backfill(args)


def cmd_init(args: argparse.Namespace) -> int:
    """``crossdock init``: write a commented starter config, or with ``--plugin NAME`` a new
    plugin distribution (never overwrites without --force)."""
    from crossdock.cli.init import STARTER, init_plugin

    if args.plugin is not None:
        if args.path is not None:
            print("crossdock init: --plugin writes a directory: use --dir", file=sys.stderr)
            return EXIT_USAGE
        directory = Path(args.dir) if args.dir is not None else None
        return init_plugin(args.plugin, directory, force=args.force)
    if args.dir is not None:
        print("crossdock init: --dir goes with --plugin NAME", file=sys.stderr)
        return EXIT_USAGE
    path = Path(args.path or "crossdock.toml")
    if path.exists() and not args.force:
        print(f"crossdock init: {path} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_PROBLEMS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER, encoding="utf-8")
    print(f"wrote {path}; check it with: crossdock check -c {path}")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """``crossdock completion bash|zsh|fish``: the completion script for that shell, generated
    from the argument parser by shtab (so it never lags behind the commands)."""
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    main()
