"""Target paths of a mapping: parse, format, flatten nested tables, merge overrides.

Pure functions on plain dicts (no JMESPath): the path rules of :mod:`crossdock.transform.mapping`
(``"a.b"`` nests, ``\\.`` escapes a dot, ``"."`` is the whole output) and how an override
replaces default fields (:func:`merge_mapping`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["flat", "format_path", "merge_mapping", "parse_path"]


def parse_path(path: str) -> tuple[str, ...]:
    """Split a target path on unescaped dots (``\\.`` is a dot, ``\\\\`` a backslash).

    ``"."`` gives ``()`` (the whole output). Raises ``ValueError`` for empty segments or
    unknown escapes.
    """
    if path == ".":
        return ()
    segments: list[str] = []
    current: list[str] = []
    chars = iter(path)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in (".", "\\"):
                raise ValueError("a backslash must be followed by '.' or '\\'")
            current.append(nxt)
        elif ch == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
    segments.append("".join(current))
    if any(not s for s in segments):
        raise ValueError("empty segment in target path")
    return tuple(segments)


def format_path(segments: tuple[str, ...]) -> str:
    """The canonical text of a target path (inverse of :func:`parse_path`)."""
    if not segments:
        return "."
    return ".".join(s.replace("\\", "\\\\").replace(".", "\\.") for s in segments)


def _flatten(fields: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """``(path text, value)`` pairs; nested mappings become dotted paths with literal keys."""
    for key, value in fields.items():
        if isinstance(value, Mapping):
            try:
                head = prefix + parse_path(key) if not prefix else (*prefix, key)
            except ValueError:
                yield key, value  # reported by the caller
                continue
            yield from _flatten(value, head)
        elif prefix:
            yield format_path((*prefix, key)), value
        else:
            yield key, value


def flat(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with nested tables turned into dotted target paths (keys inside a nested table
    are literal names; top-level keys are paths)."""
    return dict(_flatten(fields))


def _segments(key: str) -> tuple[str, ...] | None:
    try:
        return parse_path(key)
    except ValueError:
        return None


def merge_mapping(default: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    """``default`` with ``overrides`` applied.

    An override replaces the default field of the same path in place; setting ``a`` drops the
    defaults under ``a`` (and a default leaf that is an ancestor of it); an empty string ``""``
    removes the field and everything under it. Keys are compared as parsed paths (``a.b`` and
    ``{"a": {"b": ...}}`` are the same field); keys that do not parse are kept as written, for
    validation to report.
    """
    merged: dict[str, Any] = flat(default)
    for key, expr in flat(overrides).items():
        target = _segments(key)
        if target is None:
            merged[key] = expr
            continue
        for existing in list(merged):
            other = _segments(existing)
            if other is None or other == target:
                continue
            under = other[: len(target)] == target and target != ()
            above = expr != "" and other != () and target[: len(other)] == other
            if under or above:
                del merged[existing]
        same = [k for k in merged if _segments(k) == target]
        if expr == "":
            for k in same:
                del merged[k]
        elif same:
            merged[same[0]] = expr
        else:
            merged[key] = expr
    return merged
