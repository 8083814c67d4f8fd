"""What ``crossdock init`` writes: a starter configuration, or (``--plugin NAME``) a new plugin.

The plugin template lives in ``plugin_template/`` beside this module: every ``*.tmpl`` file is
written without its suffix, with ``{{token}}`` replaced in its path and its text (tokens:
:func:`plugin_tokens`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = [
    "STARTER",
    "PluginNameError",
    "builtin_type_names",
    "check_plugin_name",
    "init_plugin",
    "plugin_files",
    "write_plugin",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME = 24
"""Longest plugin name: the template's lines stay within 100 characters up to it."""
_TOKEN_RE = re.compile(r"\{\{(\w+)\}\}")
_SUFFIX = ".tmpl"
_FALLBACK_RANGE = ">=0.2,<0.3"
"""The version range of a source tree without an installed ``crossdock``."""


class PluginNameError(ValueError):
    """``crossdock init --plugin NAME`` was given a name a plugin cannot have."""


def check_plugin_name(name: str, taken: frozenset[str] = frozenset()) -> None:
    """Raise :class:`PluginNameError` saying precisely why ``name`` is not a plugin name.

    A plugin name is a lower-case slug (it becomes the entry-point name, the destination type
    and, with ``-`` as ``_``, the package ``crossdock_<name>``); ``taken`` are names of built-in
    types it would clash with.
    """
    hint = "a lower-case slug: a letter, then letters, digits or single hyphens (like acme-cloud)"
    if name.startswith("crossdock"):
        bare = name.removeprefix("crossdock").lstrip("-_") or "acme"
        msg = f"{name!r}: give the vendor's name without the crossdock prefix (like {bare!r})"
        raise PluginNameError(msg)
    if not _NAME_RE.match(name):
        msg = f"{name!r} is not {hint}"
        raise PluginNameError(msg)
    if len(name) > MAX_NAME:
        msg = f"{name!r} is longer than {MAX_NAME} characters"
        raise PluginNameError(msg)
    if name in taken:
        msg = f"{name!r} is the name of a built-in type; choose another"
        raise PluginNameError(msg)


def crossdock_range(version: str) -> str:
    """The requirement a new plugin puts on the core: this minor version only (``>=0.2,<0.3``)."""
    match = re.match(r"^(\d+)\.(\d+)", version)
    if match is None:
        return _FALLBACK_RANGE
    major, minor = int(match[1]), int(match[2])
    if major == 0:
        return f">={major}.{minor},<{major}.{minor + 1}"
    return f">={major}.{minor},<{major + 1}"


def plugin_tokens(name: str, version: str) -> dict[str, str]:
    """The template's tokens for plugin ``name`` written by crossdock ``version``."""
    words = name.split("-")
    return {
        "name": name,
        "module": "_".join(words),
        "package": "crossdock_" + "_".join(words),
        "Class": "".join(w.capitalize() for w in words),
        "title": " ".join(w.capitalize() for w in words),
        "env": "_".join(words).upper(),
        "crossdock_range": crossdock_range(version),
    }


def _render(text: str, tokens: dict[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        try:
            return tokens[match[1]]
        except KeyError:
            msg = f"plugin template {where}: unknown token {match[0]}"
            raise LookupError(msg) from None

    return _TOKEN_RE.sub(one, text)


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(_SUFFIX):
            yield f"{prefix}{entry.name}", entry


def plugin_files(name: str, version: str) -> dict[str, str]:
    """Every file of the new plugin ``name``: relative path → text."""
    tokens = plugin_tokens(name, version)
    root = resources.files("crossdock.cli").joinpath("plugin_template")
    files = {}
    for rel, entry in _walk(root):
        path = _render(rel.removesuffix(_SUFFIX), tokens, rel)
        files[path] = _render(entry.read_text(encoding="utf-8"), tokens, rel)
    return files


def write_plugin(name: str, directory: Path, version: str, *, force: bool = False) -> list[Path]:
    """Write the plugin ``name`` into ``directory``; return the files written.

    Raises :class:`FileExistsError` when ``directory`` is a file, or holds anything and
    ``force`` is false; with ``force`` the template's files are overwritten, others left alone.
    """
    if directory.exists() and (not directory.is_dir() or (any(directory.iterdir()) and not force)):
        raise FileExistsError(str(directory))
    written = []
    for rel, text in plugin_files(name, version).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def builtin_type_names() -> frozenset[str]:
    """Names of the built-in source and destination types (a plugin named so would clash)."""
    from crossdock.plugins.discovery import make_plugin_manager

    pm = make_plugin_manager(entrypoints=False).pm
    declared = [*pm.hook.crossdock_destination_types(), *pm.hook.crossdock_source_types()]
    return frozenset(t.name for result in declared for t in result)


def init_plugin(name: str, directory: Path | None, *, force: bool = False) -> int:
    """``crossdock init --plugin NAME [--dir DIR]``: write the plugin, print what to do next.

    Returns the exit code: 0 written, 1 the directory is not empty (without ``force``),
    2 an invalid name.
    """
    from crossdock.plugins.discovery import core_version

    try:
        check_plugin_name(name, builtin_type_names())
    except PluginNameError as exc:
        print(f"crossdock init: --plugin {exc}", file=sys.stderr)
        return 2
    target = directory if directory is not None else Path(f"crossdock-{name}")
    try:
        written = write_plugin(name, target, core_version(), force=force)
    except FileExistsError:
        print(
            f"crossdock init: {target} exists (a file, or a directory with files);"
            " use --force to write into a directory",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {len(written)} files of crossdock-{name} in {target}; try it with:")
    print(f"  cd {target} && pip install -e '.[test]' && pytest")
    return 0


STARTER = """\
# crossdock.toml: written by `crossdock init`. Check it with `crossdock check`.
# Relative paths are resolved against this file's directory. "${VAR}" reads an environment
# variable ("$${" is a literal "${"); secrets never appear in logs or in `crossdock check`.

[server]
listen = "127.0.0.1:8088"
# public_url = "https://events.example.com"   # how browsers reach this server (analytics.js)
# admin_token = "${CROSSDOCK_ADMIN_TOKEN}"    # enables /admin/... (Bearer token)

[queue]
backend = "sqlite"
path = "var/crossdock.db"
# dedupe_window = "24h"                       # drop repeated messageIds seen within this time

[log]
level = "info"
format = "text"                               # "json" for log shippers

# A Segment-compatible tracking API at /v1/* (analytics.js, analytics-python, ...).
# Browser write keys are public; server-side keys can come from the environment.
[[sources]]
id = "web"
type = "segment"
write_keys = ["change-me-write-key"]

# Every event, one JSON object per line: see what arrives before adding vendors.
[[destinations]]
id = "events-file"
plugin = "file"
[destinations.settings]
path = "var/events.ndjson"

# Any HTTP endpoint (Segment-style X-Signature when `secret` is set):
# [[destinations]]
# id = "my-webhook"
# plugin = "webhook"
# sources = ["web"]                           # default: every source
# where = "type == 'track'"                   # JMESPath condition
# [destinations.settings]
# url = "https://hooks.example.com/events"
# secret = "${MY_WEBHOOK_SECRET}"
# [destinations.mapping]                      # field overrides on top of the defaults
# "properties.plan" = "traits.plan"
# [destinations.delivery]
# batch_size = 100
# max_attempts = 12
# max_age = "24h"
"""
