"""JMESPath functions: the built-ins, Crossdock's extras, and the functions plugins declare.

A function is described by a :class:`JmesFunction` record (public as ``crossdock.JmesFunction``):
a plain Python callable plus its parameter types. Parameter types use JMESPath's names (``any``,
``string``, ``number``, ``boolean``, ``array``, ``object``, ``null``, ``expref``,
``array-string``, ``array-number``); alternatives are joined with ``|`` (``"string|number"``); a
trailing ``?`` marks an optional parameter (only at the end); ``variadic=True`` repeats the last
parameter. Calls are checked exactly like JMESPath checks its own functions (``ArityError``,
``JMESPathTypeError``).

A plugin declares its functions with its type; they are compiled into that type's mappings
only (never into a process-wide registry, so two plugins cannot overwrite each other)::

    import crossdock

    def vendor_id(value):
        return None if value is None else f"v-{value}"

    FUNCTIONS = [crossdock.JmesFunction.create("vendor_id", vendor_id, ["any"])]
    MAPPING = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)
    TYPE = crossdock.DestinationType(..., mapping=MAPPING, functions=FUNCTIONS)

or per mapping with ``compile_mapping(..., functions=FUNCTIONS)``. The registry reports a
function that shadows a built-in or one of Crossdock's extras, and one name declared by two
types with different callables. :func:`register_function` (process-wide) is deprecated.
Crossdock's own extras (``iso_time``, ``lookup``, ...) follow one rule that plugin functions
should follow too: they never raise on data; a value they cannot convert gives ``null``.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen
from jmespath import exceptions
from jmespath import functions as jfunctions

__all__ = [
    "BUILTIN_NAMES",
    "EXTRA_NAMES",
    "CrossdockFunctions",
    "JmesFunction",
    "function_table",
    "make_function",
    "register_function",
    "registered_functions",
]

BUILTIN_NAMES = frozenset(jfunctions.Functions.FUNCTION_TABLE)
_TYPE_NAMES = frozenset(
    {"any", "string", "number", "boolean", "array", "object", "null", "expref"}
    | {"array-string", "array-number"}
)


@frozen
class JmesFunction:
    """A function callable from JMESPath: ``fn(*args)`` and its parameter type lists.

    ``params`` holds one tuple of allowed JMESPath type names per parameter (empty: any type);
    the last ``optional`` parameters may be left out; with ``variadic`` the last parameter repeats.
    """

    name: str
    fn: Callable[..., Any]
    params: tuple[tuple[str, ...], ...]
    optional: int = 0
    variadic: bool = False

    @classmethod
    def create(
        cls,
        name: str,
        fn: Callable[..., Any],
        params: Sequence[str] | None = None,
        *,
        variadic: bool = False,
    ) -> JmesFunction:
        """The function ``name`` calling ``fn``; ``params`` is one type spec per parameter
        (``"any"``, ``"string|number"``, ``"any?"``), derived from ``fn``'s signature when
        omitted (see :func:`make_function`). Raises ``ValueError`` for a bad name or spec."""
        return make_function(name, fn, params, variadic=variadic)

    @property
    def untyped(self) -> bool:
        """True when no parameter has a type restriction (calls need only an arity check)."""
        return not any(self.params)

    def arity_ok(self, count: int) -> bool:
        """Whether ``count`` arguments fit the signature."""
        required = len(self.params) - self.optional
        if self.variadic:
            return count >= required
        return required <= count <= len(self.params)


def make_function(
    name: str,
    fn: Callable[..., Any],
    params: Sequence[str] | None = None,
    *,
    variadic: bool = False,
) -> JmesFunction:
    """Describe ``fn`` as the JMESPath function ``name``.

    ``params`` is one type spec per parameter (``"any"``, ``"string|number"``, ``"any?"``); when
    omitted it is derived from ``fn``'s Python signature (defaults make parameters optional,
    ``*args`` makes the function variadic, every type is ``any``).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"invalid JMESPath function name {name!r}")
    if params is None:
        specs: list[str] = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.VAR_POSITIONAL:
                specs.append("any")
                variadic = True
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                specs.append("any" if p.default is p.empty else "any?")
        params = specs
    types: list[tuple[str, ...]] = []
    optional = 0
    for i, spec in enumerate(params):
        is_optional = spec.endswith("?")
        if is_optional:
            optional += 1
        elif optional:
            raise ValueError(f"{name}(): parameter {i + 1} follows an optional parameter")
        alternatives = tuple(spec.rstrip("?").split("|"))
        for alt in alternatives:
            if alt not in _TYPE_NAMES:
                raise ValueError(f"{name}(): unknown JMESPath type {alt!r}")
        types.append(() if "any" in alternatives else alternatives)
    if variadic and optional:
        raise ValueError(f"{name}(): a variadic function cannot have optional parameters")
    return JmesFunction(name, fn, tuple(types), optional, variadic)


# ---------------------------------------------------------------------------------------------
# Crossdock's extra functions (never raise on data)


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None


def iso_time(value: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` (UTC) from an ISO 8601 string or epoch seconds; else null."""
    dt = _to_datetime(value)
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def rfc3339(value: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds) from an ISO string or epoch seconds."""
    dt = _to_datetime(value)
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: Any) -> int | None:
    """Whole seconds since the Unix epoch from an ISO string or a number; else null."""
    dt = _to_datetime(value)
    return None if dt is None else math.floor(dt.timestamp())


def epoch_ms(value: Any) -> int | None:
    """Milliseconds since the Unix epoch from an ISO string or epoch seconds; else null."""
    dt = _to_datetime(value)
    if dt is None:
        return None
    return math.floor(dt.timestamp()) * 1000 + dt.microsecond // 1000


def lower(value: Any) -> str | None:
    """Lower-cased string; null for anything that is not a string."""
    return value.lower() if isinstance(value, str) else None


def upper(value: Any) -> str | None:
    """Upper-cased string; null for anything that is not a string."""
    return value.upper() if isinstance(value, str) else None


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else jfunctions.Functions._func_to_string(None, value)


def string_join(separator: Any, values: Any) -> str | None:
    """Join an array's non-null items (non-strings as JSON text); null if not an array."""
    if not isinstance(values, list):
        return None
    sep = separator if isinstance(separator, str) else _json_text(separator)
    return sep.join(_json_text(v) for v in values if v is not None)


def to_float(value: Any) -> float | None:
    """A float from a number or numeric string; null when impossible (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
        return result if math.isfinite(result) else None
    return None


def to_int(value: Any) -> int | None:
    """An int (truncated) from a number or numeric string; null when impossible."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = to_float(value)
    return None if number is None or not math.isfinite(number) else int(number)


def number(value: Any, default: Any = None) -> Any:
    """``value`` as a number (ints stay ints, numeric strings parsed), else ``default``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            result = to_float(value)
            return default if result is None else result
    return default


def default(value: Any, fallback: Any) -> Any:
    """``value`` unless it is null, then ``fallback``."""
    return fallback if value is None else value


def array(value: Any) -> list[Any]:
    """An array as is; null as ``[]``; anything else wrapped in a one-item array."""
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


_PHONE_JUNK = re.compile(r"[\s().\-/]")


def e164(value: Any) -> str | None:
    """A phone number in E.164 form (``+`` and 8-15 digits; ``00`` prefix accepted), else null."""
    if not isinstance(value, str):
        return None
    text = _PHONE_JUNK.sub("", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if re.fullmatch(r"\+[1-9][0-9]{7,14}", text):
        return text
    return None


_EXTRAS: tuple[JmesFunction, ...] = (
    make_function("iso_time", iso_time, ["any"]),
    make_function("rfc3339", rfc3339, ["any"]),
    make_function("epoch", epoch, ["any"]),
    make_function("epoch_ms", epoch_ms, ["any"]),
    make_function("lower", lower, ["any"]),
    make_function("upper", upper, ["any"]),
    make_function("string_join", string_join, ["any", "any"]),
    make_function("to_int", to_int, ["any"]),
    make_function("to_float", to_float, ["any"]),
    make_function("number", number, ["any", "any?"]),
    make_function("default", default, ["any", "any"]),
    make_function("array", array, ["any"]),
    make_function("e164", e164, ["any"]),
)

_REGISTRY: dict[str, JmesFunction] = {f.name: f for f in _EXTRAS}

EXTRA_NAMES = frozenset({f.name for f in _EXTRAS} | {"lookup"})
"""Crossdock's own functions: a plugin function must not use these names (nor JMESPath's)."""


def register_function(
    name: str,
    fn: Callable[..., Any],
    params: Sequence[str] | None = None,
    *,
    variadic: bool = False,
    replace: bool = False,
) -> JmesFunction:
    """Deprecated (removed in 0.3): make ``name`` callable from every mapping compiled
    afterwards, process-wide. Public as ``crossdock.register_function``.

    Declare the function with its type instead: ``crossdock.DestinationType(...,
    functions=[crossdock.JmesFunction.create(name, fn, params)])`` (or ``SourceType``); it is
    then compiled into that type's mappings only. See :func:`make_function` for ``params``.
    JMESPath's built-in names and ``lookup`` cannot be replaced; an already registered name
    needs ``replace=True``.
    """
    warnings.warn(
        "crossdock.register_function() is deprecated and will be removed in crossdock 0.3: "
        "declare the function with its type, DestinationType(..., functions=["
        "crossdock.JmesFunction.create(name, fn, params)]) (or SourceType)",
        DeprecationWarning,
        stacklevel=2,
    )
    func = make_function(name, fn, params, variadic=variadic)
    if name in BUILTIN_NAMES or name == "lookup":
        raise ValueError(f"{name}() is a built-in JMESPath function and cannot be replaced")
    if name in _REGISTRY and not replace:
        raise ValueError(f"JMESPath function {name}() is already registered")
    _REGISTRY[name] = func
    return func


def function_table(
    functions: Mapping[str, JmesFunction | Callable[..., Any]] | Sequence[JmesFunction] | None,
) -> dict[str, JmesFunction]:
    """``functions`` (a sequence of :class:`JmesFunction`, or name → function or callable) as
    name → :class:`JmesFunction`."""
    if not functions:
        return {}
    if isinstance(functions, Mapping):
        return {
            name: fn if isinstance(fn, JmesFunction) else make_function(name, fn)
            for name, fn in functions.items()
        }
    table: dict[str, JmesFunction] = {}
    for fn in functions:
        if not isinstance(fn, JmesFunction):
            raise TypeError(f"expected a JmesFunction, got {type(fn).__name__}")
        table[fn.name] = fn
    return table


def registered_functions() -> dict[str, JmesFunction]:
    """A copy of the process-wide registry (Crossdock's extras plus plugin functions)."""
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------
# The Functions object shared by compiled code and the interpreter fallback


class CrossdockFunctions(jfunctions.Functions):
    """JMESPath's built-ins, Crossdock's extras, per-mapping ``extra`` functions (a type's
    declared functions) and ``lookup`` tables.

    Built once per compiled mapping; the same instance serves compiled code (``call_function``)
    and the interpreter fallback (``jmespath.Options(custom_functions=...)``).
    """

    def __init__(
        self,
        *,
        tables: Mapping[str, Mapping[str, Any]] | None = None,
        extra: Mapping[str, JmesFunction | Callable[..., Any]]
        | Sequence[JmesFunction]
        | None = None,
    ) -> None:
        self.tables: dict[str, Mapping[str, Any]] = dict(tables or {})
        custom = dict(_REGISTRY)
        custom["lookup"] = make_function("lookup", self._lookup, ["string", "any", "any?"])
        for name, fn in function_table(extra).items():
            if name in BUILTIN_NAMES or name == "lookup":
                raise ValueError(f"{name}() is a built-in JMESPath function and cannot be replaced")
            custom[name] = fn
        self.custom: dict[str, JmesFunction] = custom

    def _lookup(self, table: str, key: Any, fallback: Any = None) -> Any:
        rows = self.tables.get(table)
        if rows is None or key is None or isinstance(key, list | dict):
            return fallback
        found = rows.get(key)
        if found is None and not isinstance(key, str):
            found = rows.get(_json_text(key))
        return fallback if found is None else found

    def lookup_function(self, name: str) -> JmesFunction | None:
        """The custom (non built-in) function called ``name``, if any."""
        return self.custom.get(name)

    def call_function(self, function_name: str, resolved_args: list[Any]) -> Any:
        """Check and call ``function_name`` exactly like JMESPath's interpreter does."""
        func = self.custom.get(function_name)
        if func is None:
            return super().call_function(function_name, resolved_args)
        count = len(resolved_args)
        if not func.arity_ok(count):
            expected = len(func.params) - func.optional
            if func.variadic:
                raise exceptions.VariadictArityError(expected, count, function_name)
            raise exceptions.ArityError(
                expected if count < expected else len(func.params), count, function_name
            )
        for i, arg in enumerate(resolved_args):
            types = func.params[min(i, len(func.params) - 1)]
            if types:
                self._type_check_single(arg, list(types), function_name)
        return func.fn(*resolved_args)
