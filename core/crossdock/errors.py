"""Exceptions raised by the core. Vendor failures are outcomes (crossdock.types), not these."""

from __future__ import annotations

from collections.abc import Iterable


class CrossdockError(Exception):
    """Base class of every error Crossdock raises on purpose."""


class ConfigError(CrossdockError):
    """The configuration is invalid; ``problems`` holds every problem as ``path: message``.

    Messages never contain configured values, so they are safe to print and log.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = sorted(set(problems))
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class PluginError(CrossdockError):
    """A plugin is broken: it failed to import, declared a bad type, or broke a hook contract."""

    def __init__(self, plugin: str, message: str, *, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.reason = message
        where = f"{plugin} ({distribution})" if distribution else plugin
        super().__init__(f"plugin {where}: {message}")


class IngestError(CrossdockError):
    """A request cannot be accepted; the source answers ``status`` with ``code`` and ``message``.

    ``status`` is a 4xx. ``code`` is a short snake_case word (Segment clients read ``code`` and
    ``message`` from error bodies); ``message`` names the offending field, e.g.
    ``batch[3].event: required for track``.
    """

    def __init__(self, status: int, message: str, *, code: str = "bad_request") -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


class MappingError(CrossdockError):
    """A JMESPath mapping or condition is invalid; ``path`` names the mapping key."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


class Unsendable(CrossdockError):
    """An event that can never be sent to its vendor: the core dead-letters it with ``reason``.

    Raise it from a plugin's JMESPath function or transformer when the event lacks what the
    vendor requires (``track: no identity claim (userId, anonymousId or email)``). Unlike other
    exceptions, whose text the core replaces with the failing field's path, ``reason`` is kept
    as written, so it must not contain event data the operator would not want in a dead letter.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class QueueError(CrossdockError):
    """The queue backend cannot do what was asked (unwritable file, lost server, ...)."""
