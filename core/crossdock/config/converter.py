"""The project's one cattrs converter, its hooks, and the error renderer for config problems.

Every structuring of configuration goes through :func:`structure` (never the global
``cattrs.structure``). The converter forbids unknown keys, collects every error
(``detailed_validation``), and :func:`render_errors` turns cattrs' exception trees into
``path: message`` lines that never contain the offending value, since the value may be a secret.

Types with special structuring, for settings classes:

- :class:`~crossdock.Secret`: from a string;
- :data:`Duration` (float seconds): ``"24h"``, ``"15m"``, ``"90s"``, ``"500ms"``, ``"1d"`` or a
  number of seconds;
- :data:`Url`: an ``http``/``https`` URL; a bare host's trailing ``/`` is dropped. Fields named
  ``url`` or ending in ``_url`` annotated ``str`` are checked the same way, and ``*base_url`` fields
  lose every trailing ``/`` so plugins can append paths;
- :data:`Listen`: ``host:port``;
- ``Literal[...]`` fields answer ``must be one of a, b``;
- ``int``, ``float`` and ``bool`` are strict (no ``"5"`` → ``5``, no ``1`` → ``true``);
- ``str`` also takes a TOML integer or float, written as Python writes it (``project_id =
  123456`` → ``"123456"``), before the settings class's own converter runs; never a boolean.
  :class:`~crossdock.Secret` does not: a credential is quoted (``${VAR}``), and a bare number
  would silently lose leading zeros (``pin = 007``).

Every attrs class is structured field by field (:class:`_AttrsStructurer`): unknown keys,
missing keys, type errors and the class's own converters and validators are reported together,
each with its field path; a validator's message is shown except on a ``Secret`` field.
"""

from __future__ import annotations

import contextlib
import re
import typing
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePath
from typing import Any, Literal, NewType, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from crossdock.secrets import Secret
from crossdock.types import DeliverySettings

__all__ = [
    "Duration",
    "Invalid",
    "Listen",
    "Url",
    "join_path",
    "parse_duration",
    "render_errors",
    "structure",
    "structure_collect",
]

T = TypeVar("T")

Duration = NewType("Duration", float)
"""Seconds; configured as ``"24h"``, ``"15m"``, ``"90s"``, ``"500ms"``, ``"2d"`` or a number."""

Url = NewType("Url", str)
"""An absolute ``http``/``https`` URL."""

Listen = NewType("Listen", str)
"""``host:port`` to listen on (``[::1]:8088`` for IPv6)."""


class Invalid(ValueError):
    """A structuring failure whose message is safe to show (it never contains the value)."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = "expected a duration like 24h, 15m, 90s or 500ms, or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds from ``"24h"``, ``"15m"``, ``"90s"``, ``"500ms"``, ``"2d"`` or a number.

    Raises :class:`Invalid` (with a message safe to show) for anything else.
    """
    if isinstance(value, bool):
        raise Invalid(_DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise Invalid(_DURATION_HINT)
    if seconds < 0:
        msg = "must not be negative"
        raise Invalid(msg)
    return seconds


def _url(value: object, *, strip_slash: bool = False) -> str:
    if not isinstance(value, str):
        msg = "expected a URL string"
        raise Invalid(msg)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        msg = "invalid URL"
        raise Invalid(msg) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = "expected an http:// or https:// URL"
        raise Invalid(msg)
    if parts.query or parts.fragment:
        return value
    if strip_slash or parts.path == "/":
        return value.rstrip("/")
    return value


def _listen(value: object) -> str:
    hint = "expected host:port, like 127.0.0.1:8088"
    if not isinstance(value, str):
        raise Invalid(hint)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Invalid(hint)
    if host.startswith("[") != host.endswith("]"):
        raise Invalid(hint)
    return value


def _strict(kind: type, name: str) -> Callable[[object, type], Any]:
    def hook(value: object, _: type) -> Any:
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            # TOML ids are often written bare (project_id = 123456); the settings say string
            return str(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            return value
        msg = f"expected {name}"
        raise Invalid(msg)

    return hook


def _secret(value: object, _: type) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        msg = "expected a string"
        raise Invalid(msg)
    return Secret(value)


def _path(value: object, _: type) -> Path:
    if isinstance(value, PurePath):
        return Path(value)
    if not isinstance(value, str) or not value:
        msg = "expected a file path"
        raise Invalid(msg)
    return Path(value)


def _literal_factory(cl: Any) -> Callable[[object, type], Any]:
    options = get_args(cl)
    text = ", ".join(str(o) for o in options)

    def hook(value: object, _: type) -> Any:
        for option in options:
            if value == option and type(value) is type(option):
                return option
        msg = f"must be one of {text}"
        raise Invalid(msg)

    return hook


_SEQUENCES = (list, tuple, set, frozenset, Sequence, MutableSequence, AbstractSet)


def _is_sequence(t: Any) -> bool:
    return get_origin(t) in _SEQUENCES or t in (list, tuple)


def _sequence_factory(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(t: Any) -> Callable[[Any, Any], Any]:
        origin = get_origin(t) or t
        args = get_args(t)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            item_type = Any  # fixed-size tuples do not occur in settings; items stay as read
        else:
            item_type = args[0] if args else Any
        items = list_structure_factory(list[item_type], conv)  # type: ignore[valid-type]

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, list | tuple):
                msg = "expected a list"
                raise Invalid(msg)
            result = items(value, list[item_type])  # type: ignore[valid-type]
            if origin in (list, Sequence, MutableSequence):
                return result
            if origin in (set, AbstractSet):
                return set(result)
            if origin is frozenset:
                return frozenset(result)
            return tuple(result)

        return hook

    return factory


def _is_url_field(a: attrs.Attribute[Any]) -> bool:
    if not (a.name == "url" or a.name.endswith("_url")):
        return False
    return a.type in (str, str | None, "str", "str | None")


def _attrs_factory(conv: cattrs.Converter) -> Callable[[type], Callable[[Any, type], Any]]:
    def factory(cl: type) -> Callable[[Any, type], Any]:
        # unresolvable annotations: structure as declared
        with contextlib.suppress(Exception):
            attrs.resolve_types(cl)
        hooks: dict[str, Callable[[Any, Any], Any]] = {}
        for a in attrs.fields(cl):
            if _is_url_field(a):
                strip = a.name.endswith("base_url")
                hooks[a.name] = _optional(lambda v, _t, s=strip: _url(v, strip_slash=s), a.type)
        if cl is DeliverySettings:
            for name in ("max_age", "timeout"):
                hooks[name] = lambda v, _t: parse_duration(v)
        return _AttrsStructurer(cl, conv, hooks)

    return factory


class _ValidatorNote(str):
    """Marks an exception raised by a field's own validator or converter (field name known)."""

    name: str

    def __new__(cls, name: str) -> _ValidatorNote:
        note = super().__new__(cls, f"Validating attribute {name!r}")
        note.name = name
        return note


class _AttrsStructurer:
    """Structures one attrs class and reports every problem at once.

    cattrs stops at the class: an attrs validator runs only in ``__init__``, so validators were
    reached only when every field structured, and then one at a time. Here each field is
    structured by its type (a failure noted with the field), then the author's converter and
    validators run field by field on a partly built instance, so unknown keys, missing keys,
    type errors and validator messages all come back together. Only a clean input is handed to
    the class itself (which runs the validators again and ``__attrs_post_init__``).
    """

    def __init__(
        self, cl: type, conv: cattrs.Converter, hooks: dict[str, Callable[[Any, Any], Any]]
    ) -> None:
        self.cl = cl
        self.conv = conv
        self.hooks = hooks
        self.fields = [a for a in attrs.fields(cl) if a.init]

    def __call__(self, data: Any, _: type) -> Any:
        if not isinstance(data, Mapping):
            msg = "expected a table"
            raise Invalid(msg)
        errors: list[Exception] = []
        known = {a.name for a in self.fields}
        extra = {str(k) for k in data if k not in known}
        if extra:
            errors.append(ForbiddenExtraKeysError(None, self.cl, extra))
        values: dict[str, Any] = {}
        for a in self.fields:
            if a.name not in data:
                if a.default is attrs.NOTHING:
                    note = AttributeValidationNote(f"Required field {a.name!r}", a.name, a.type)
                    errors.append(_noted(KeyError(a.name), note))
                continue
            try:
                values[a.name] = self._structure_field(a, data[a.name])
            except Exception as exc:
                note = AttributeValidationNote(f"Structuring field {a.name!r}", a.name, a.type)
                errors.append(_noted(exc, note))
        errors += self._validate(values)
        if errors:
            msg = f"While structuring {self.cl.__name__}"
            raise ClassValidationError(msg, errors, self.cl)
        try:
            return self.cl(**{a.alias: values[a.name] for a in self.fields if a.name in values})
        except Exception as exc:
            msg = f"While structuring {self.cl.__name__}"
            raise ClassValidationError(msg, [exc], self.cl) from None

    def _structure_field(self, a: attrs.Attribute[Any], value: Any) -> Any:
        hook = self.hooks.get(a.name)
        if hook is not None:
            return hook(value, a.type)
        if a.type is None:
            return value
        return self.conv.structure(value, a.type)

    def _validate(self, values: dict[str, Any]) -> list[Exception]:
        """Run each structured field's converter and validator; their errors, field by field."""
        instance = object.__new__(self.cl)
        for a in self.fields:
            if a.name in values:
                continue
            with contextlib.suppress(Exception):
                object.__setattr__(instance, a.name, _default(a, instance))
        converted: dict[str, bool] = {}
        errors: list[Exception] = []
        for a in self.fields:
            if a.name not in values:
                continue
            try:
                if a.converter is not None:
                    values[a.name] = _convert(a, values[a.name], instance)
                object.__setattr__(instance, a.name, values[a.name])
                converted[a.name] = True
            except Exception as exc:
                errors.append(_noted(exc, _ValidatorNote(a.name)))
        if not attrs.validators.get_disabled():
            for a in self.fields:
                if a.validator is None or not converted.get(a.name):
                    continue
                try:
                    a.validator(instance, a, values[a.name])
                except AttributeError:
                    pass  # it reads a field that failed; the class itself will run it later
                except Exception as exc:
                    errors.append(_noted(exc, _ValidatorNote(a.name)))
        return errors


def _noted(exc: Exception, note: str) -> Exception:
    exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
    return exc


def _default(a: attrs.Attribute[Any], instance: Any) -> Any:
    default = a.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory(instance) if default.takes_self else default.factory()
    if default is attrs.NOTHING:
        raise AttributeError(a.name)
    return default


def _convert(a: attrs.Attribute[Any], value: Any, instance: Any) -> Any:
    converter = a.converter
    if isinstance(converter, attrs.Converter):
        args: list[Any] = [value]
        if converter.takes_self:
            args.append(instance)
        if converter.takes_field:
            args.append(a)
        return converter.converter(*args)  # type: ignore[misc]
    return converter(value)  # type: ignore[misc]


def _optional(hook: Callable[[Any, Any], Any], annotation: Any) -> Callable[[Any, Any], Any]:
    if annotation in (str | None, "str | None"):
        return lambda v, t: None if v is None else hook(v, t)
    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(float, _strict(float, "a number"))
    conv.register_structure_hook(bool, _strict(bool, "true or false"))
    conv.register_structure_hook(Secret, _secret)
    conv.register_structure_hook(Path, _path)
    conv.register_structure_hook(Duration, lambda v, _t: parse_duration(v))
    conv.register_structure_hook(Url, lambda v, _t: _url(v))
    conv.register_structure_hook(Listen, lambda v, _t: _listen(v))
    conv.register_structure_hook_factory(
        lambda t: get_origin(t) is Literal, lambda t: _literal_factory(t)
    )
    conv.register_structure_hook_factory(_is_sequence, _sequence_factory(conv))
    conv.register_structure_hook_factory(attrs.has, _attrs_factory(conv))
    conv.register_unstructure_hook(Secret, lambda s: str(s))
    return conv


_CONVERTER = _make_converter()


def structure(data: Any, cl: type[T]) -> T:
    """Structure ``data`` into ``cl`` with the project's converter (cattrs errors propagate)."""
    return _CONVERTER.structure(data, cl)


def structure_collect(data: Any, cl: type[T], path: str) -> tuple[T | None, list[str]]:
    """Structure ``data`` into ``cl``; on failure ``(None, problems)`` prefixed by ``path``."""
    if not isinstance(data, Mapping) and attrs.has(cl):
        return None, [f"{path}: expected a table" if path else "expected a table"]
    try:
        return _CONVERTER.structure(data, cl), []
    except Exception as exc:
        return None, render_errors(exc, path)


# ---------------------------------------------------------------------------------------------
# Rendering

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def join_path(path: str, key: str | int) -> str:
    """``path`` extended by a table key (``a.b``, quoted if unusual) or a list index (``a[2]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _KEY_RE.match(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def render_errors(exc: BaseException, path: str = "") -> list[str]:
    """Every failure inside ``exc`` as sorted ``path: message`` lines, never showing values."""
    return sorted(set(_walk(exc, path)))


def _walk(exc: BaseException, path: str) -> list[str]:
    out: list[str] = []
    if isinstance(exc, IterableValidationError | ClassValidationError):
        for sub in exc.exceptions:
            note = _note(sub)
            if isinstance(note, _ValidatorNote) and isinstance(exc, ClassValidationError):
                out.append(_field_error(sub, exc.cl, path, note.name))
            elif isinstance(note, AttributeValidationNote):
                out.extend(_walk(sub, join_path(path, note.name)))
            elif isinstance(note, IterableValidationNote):
                out.extend(_walk(sub, join_path(path, note.index)))
            elif isinstance(exc, ClassValidationError) and not isinstance(
                sub, ClassValidationError | IterableValidationError
            ):
                out.extend(_constructor_error(sub, exc.cl, path))
            else:
                out.extend(_walk(sub, path))
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"{join_path(path, str(k))}: unknown key" for k in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError):
        return [f"{path}: missing"]
    # attrs validators raise (message, attribute, expected, value): name the field, drop the value
    if isinstance(exc, ValueError | TypeError) and len(exc.args) == 4:
        attribute = exc.args[1]
        if isinstance(attribute, attrs.Attribute):
            return [f"{join_path(path, attribute.name)}: {_validator_message(exc)}"]
    return [f"{path}: {_message(exc)}"]


_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")
_LENGTH = re.compile(r"^Length of '\w+' must be (>=|<=) (\d+)")


def _constructor_error(exc: BaseException, cl: type, path: str) -> list[str]:
    """An error raised by the class itself (an attrs validator): name the field if we can."""
    if isinstance(exc, ForbiddenExtraKeysError | KeyError | Invalid) or (
        isinstance(exc, ValueError | TypeError) and len(exc.args) == 4
    ):
        return _walk(exc, path)
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    names = {a.name for a in attrs.fields(cl)} if attrs.has(cl) else set()
    field_name = next((m for m in _QUOTED.findall(text) if m in names), None)
    if field_name is None:
        return [f"{path}: {_message(exc)}"]
    return [_field_error(exc, cl, path, field_name)]


def _field_error(exc: BaseException, cl: type, path: str, field_name: str) -> str:
    """``path.field: message`` for an error of one field's own validator or converter.

    attrs' built-in validators get fixed wordings (never the value); a plugin's own message is
    shown without the quoted field name it starts with, except for a secret field, whose
    validator might quote the secret.
    """
    where = join_path(path, field_name)
    if isinstance(exc, Invalid):
        return f"{where}: {exc}"
    if isinstance(exc, ValueError | TypeError) and len(exc.args) == 4:
        return f"{where}: {_validator_message(exc)}"
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    message = "invalid value"
    if length := _LENGTH.match(text):
        bound = "at least" if length.group(1) == ">=" else "at most"
        message = f"must have {bound} {length.group(2)} item(s)"
    elif text and not _is_secret_field(cl, field_name):
        # A plugin validator's own words ("'origin' must be a domain, not a URL with a path");
        # the plugin guide asks validators never to put the value in the message.
        own = text.removeprefix(f"'{field_name}'").strip(" :")
        message = own[:200] or message
    return f"{where}: {message}"


def _is_secret_field(cl: type, name: str) -> bool:
    field = attrs.fields_dict(cl).get(name) if attrs.has(cl) else None
    return field is None or "Secret" in str(field.type)


def _note(exc: BaseException) -> object:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, _ValidatorNote | AttributeValidationNote | IterableValidationNote):
            return note
    return None


def _validator_message(exc: ValueError | TypeError) -> str:
    expected = exc.args[2]
    if isinstance(exc, TypeError) and isinstance(expected, type | tuple):
        return f"expected {_type_name(expected)}"
    if isinstance(exc, ValueError) and isinstance(expected, list | tuple | set | frozenset):
        return "must be one of " + ", ".join(str(o) for o in expected)
    return "invalid value"


def _message(exc: BaseException) -> str:
    if isinstance(exc, Invalid):
        return str(exc)
    if isinstance(exc, cattrs.errors.StructureHandlerNotFoundError):
        return "unsupported setting type (plugin bug)"
    if isinstance(exc, AttributeError) and "items" in str(exc):
        return "expected a table"
    if isinstance(exc, TypeError) and "not iterable" in str(exc):
        return "expected a list"
    return "invalid value"


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        t, getattr(t, "__name__", "another type")
    )


def is_path_annotation(annotation: Any) -> bool:
    """True if ``annotation`` is :class:`pathlib.Path` or an optional ``Path``."""
    if annotation in (Path, "Path", "Path | None", "pathlib.Path"):
        return True
    return Path in typing.get_args(annotation)
