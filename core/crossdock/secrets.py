"""A string type for credentials whose ``repr``/``str`` never show the value."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, unquote_plus

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


MIN_MASKED: Final = 4
"""Values shorter than this are not masked (masking ``"1"`` would garble every text); any
realistic credential is longer, and every value of 4 characters or more is always masked."""


@functools.lru_cache(maxsize=1024)
def variants(value: str) -> tuple[str, ...]:
    """The forms in which ``value`` can reappear in a text: itself, URL-encoded (as in an echoed
    URL or form body) and base64 (as in an echoed ``Authorization: Basic`` header, where it may
    be ``value``, ``value:`` or ``:value``); a URL-encoded value also decoded. Empty for values
    shorter than :data:`MIN_MASKED`."""
    if len(value) < MIN_MASKED:
        return ()
    found = {value, quote(value, safe=""), quote_plus(value, safe="")}
    # a value written URL-encoded in the config (a query token) is echoed decoded too
    for plain in {unquote(value), unquote_plus(value)}:
        # URL libraries re-encode a query with "/", ":" and "@" left plain
        found.update((plain, quote(plain, safe="/"), quote(plain, safe="/:@")))
    found = {v for v in found if len(v) >= MIN_MASKED}
    for raw in (value, value + ":", ":" + value):
        encoded = base64.b64encode(raw.encode()).decode()
        found.update((encoded, encoded.rstrip("=")))
    return tuple(sorted(found, key=len, reverse=True))


def mask_values(text: str, values: Iterable[str]) -> str:
    """Replace every form (see :func:`variants`) of every value found in ``text`` with ``***``,
    longest first so a secret containing another is masked whole."""
    for form in _forms(tuple(values)):
        if form in text:
            text = text.replace(form, _MASK)
    return text


@functools.lru_cache(maxsize=256)
def _forms(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every form of every value, longest first (cached: workers mask with the same secrets)."""
    forms = {form for value in values for form in variants(value)}
    return tuple(sorted(forms, key=len, reverse=True))


def mask(text: str, secrets: Iterable[Secret | str]) -> str:
    """Replace every secret value found in ``text`` with ``***`` (for vendor error bodies, check
    and test output): also its URL-encoded and base64 forms, see :func:`variants`."""
    values = (s.reveal() if isinstance(s, Secret) else s for s in secrets)
    return mask_values(text, values)


def walk(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """``(path, leaf)`` for every value inside ``value`` that is not a container: attrs
    instances (by field alias), mappings (by key) and sequences and sets (by index) are walked,
    eight levels deep at most. A :class:`Secret` is a leaf."""
    if len(path) > 8:
        return
    if attrs.has(type(value)):
        for a in attrs.fields(type(value)):
            yield from walk(getattr(value, a.name, None), (*path, a.alias or a.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk(item, (*path, str(key)))
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield from walk(item, (*path, i))
    else:
        yield path, value


def find_secrets(value: Any) -> Iterator[Secret]:
    """Every :class:`~crossdock.Secret` inside ``value`` (attrs instances, mappings, sequences)."""
    return (leaf for _, leaf in walk(value) if isinstance(leaf, Secret))
