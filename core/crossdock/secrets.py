"""A string type for credentials whose ``repr``/``str`` never show the value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

_MASK: Final = "***"


class Secret:
    """A credential read from the configuration.

    ``str()``, ``repr()`` and f-strings print ``***``; only :meth:`reveal` returns the value, so
    a secret that leaks into a log line, an exception or ``crossdock check`` output shows nothing.
    Equality compares values in constant time; secrets are hashable so they can sit in sets.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            msg = "a secret must be a string"
            raise TypeError(msg)
        self._value = value

    def reveal(self) -> str:
        """Return the real value. Call this only where the value is sent to its vendor."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        import hmac

        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("crossdock.Secret", self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def mask(text: str, secrets: list[Secret] | tuple[Secret, ...]) -> str:
    """Replace every secret value found in ``text`` with ``***`` (for vendor error bodies)."""
    for secret in secrets:
        value = secret.reveal()
        if value and len(value) >= 4:
            text = text.replace(value, _MASK)
    return text


def find_secrets(value: Any, depth: int = 0) -> Iterator[Secret]:
    """Every :class:`~crossdock.Secret` inside ``value`` (attrs instances, mappings, sequences)."""
    if depth > 8:
        return
    if isinstance(value, Secret):
        yield value
    elif attrs.has(type(value)):
        for a in attrs.fields(type(value)):
            yield from find_secrets(getattr(value, a.name, None), depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from find_secrets(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from find_secrets(item, depth + 1)
