"""The registry: which plugin provides which source and destination type, and the stage factories.

Built once from a plugin manager. Declarations are collected hook implementation by hook
implementation, so every type is known with its declaring plugin; names must be lower-case slugs
and unique (a clash lists every provider with distribution and version, and the type is left
out). Stage factories run once per configured component, through a hook caller restricted to the
declaring plugin (and, for transformers, the built-in JMESPath fallback).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import pluggy

from crossdock.errors import PluginError
from crossdock.plugins.discovery import PluginManagerResult, make_plugin_manager
from crossdock.secrets import mask
from crossdock.transform.jmes.functions import JmesFunction
from crossdock.transform.spec import MappingFile
from crossdock.types import (
    Deliverer,
    Destination,
    DestinationType,
    Ingestor,
    Source,
    SourceType,
    Transformer,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["TRANSFORM_FALLBACK", "Registry", "load_registry"]

Kind = Literal["source", "destination"]
TRANSFORM_FALLBACK = "crossdock.transform.default"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class Registry:
    """Installed source and destination types, their owners, and the stage factories.

    ``source_types`` and ``destination_types`` are dicts sorted by name. ``problems`` holds every
    plugin problem found while loading and declaring (``plugin <name> (<dist> <version>): ...``),
    a type whose ``functions`` shadow JMESPath's or Crossdock's (the type is left out) and a
    function name two types declare with different callables (both kept: each type's functions
    reach its own mappings only). ``conflicts`` maps ``(kind, name)`` of a type declared more
    than once to its providers.
    """

    def __init__(self, result: PluginManagerResult) -> None:
        self.result = result
        self.pm: pluggy.PluginManager = result.pm
        self.problems: list[str] = list(result.problems)
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self._owners: dict[tuple[str, str], str] = {}
        self._functions: dict[str, list[tuple[Any, str]]] = {}
        self._reported: set[str] = set()
        self.source_types: dict[str, SourceType] = self._collect(
            "source", "crossdock_source_types", SourceType
        )
        self.destination_types: dict[str, DestinationType] = self._collect(
            "destination", "crossdock_destination_types", DestinationType
        )
        self.shared_functions: tuple[JmesFunction, ...] = self._collect_shared()

    # -- declarations ---------------------------------------------------------------------------

    def _collect(self, kind: Kind, hook_name: str, record: type) -> dict[str, Any]:
        declared: dict[str, list[tuple[str, Any]]] = {}
        caller = getattr(self.pm.hook, hook_name)
        # get_hookimpls() is in call order reversed (last registered last); keep registration order
        for impl in caller.get_hookimpls():
            if impl.hookwrapper or impl.opts.get("wrapper"):
                continue
            plugin = impl.plugin_name
            try:
                answer = impl.function()
                items = list(answer or ())
            except Exception as exc:
                self._problem(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}")
                continue
            for item in items:
                name = self._check_record(kind, hook_name, plugin, item, record)
                if name is not None:
                    declared.setdefault(name, []).append((plugin, item))
        types: dict[str, Any] = {}
        for name in sorted(declared):
            providers = declared[name]
            if len(providers) > 1:
                described = [self.result.describe(p) for p, _ in providers]
                self.conflicts[(kind, name)] = described
                self.problems.append(
                    f'{kind} type "{name}" is declared by several plugins: ' + ", ".join(described)
                )
                continue
            plugin, item = providers[0]
            types[name] = item
            self._owners[(kind, name)] = plugin
        self._function_clashes(kind, types)
        return types

    def _collect_shared(self) -> tuple[JmesFunction, ...]:
        """The functions plugins offer to every mapping (``crossdock_jmespath_functions``):
        each checked like a type's; a name declared twice with different callables is left out
        and reported, as is a name a type declares with another callable."""
        declared: dict[str, list[tuple[JmesFunction, str]]] = {}
        caller = self.pm.hook.crossdock_jmespath_functions
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name
            try:
                items = list(impl.function() or ())
            except Exception as exc:
                self._problem(plugin, f"crossdock_jmespath_functions raised {exc!r}")
                continue
            bad = _function_problems(items)
            if bad:
                self._problem(plugin, "crossdock_jmespath_functions: " + "; ".join(bad))
                continue
            for func in items:
                declared.setdefault(func.name, []).append((func, self.result.describe(plugin)))
        shared: list[JmesFunction] = []
        for name, found in sorted(declared.items()):
            providers = ", ".join(p for _, p in found)
            if len({id(f.fn) for f, _ in found}) > 1:
                self.problems.append(
                    f"JMESPath function {name}() is shared with different callables by: "
                    f"{providers}; it is left out"
                )
                continue
            func = found[0][0]
            types = [p for f, p in self._functions.get(name, ()) if f.fn is not func.fn]
            if types:
                self.problems.append(
                    f"JMESPath function {name}() is shared by {providers} and declared with "
                    f"another callable by: {', '.join(types)} (the type's own wins there)"
                )
            shared.append(func)
        return tuple(shared)

    def _function_clashes(self, kind: Kind, types: Mapping[str, Any]) -> None:
        """One JMESPath function name declared by several types with different callables.

        Each type's functions are compiled into its own mappings only, so both types keep
        working; the clash is reported (like a type-name clash) because an operator reading a
        mapping cannot tell which function a name means.
        """
        seen = self._functions
        for name, item in types.items():
            provider = f"{self.result.describe(self._owners[(kind, name)])} ({kind} type {name!r})"
            for func in item.functions:
                seen.setdefault(func.name, []).append((func, provider))
        for fname, declared in seen.items():
            distinct = {id(f.fn) for f, _ in declared}
            if len(distinct) < 2 or fname in self._reported:
                continue
            self._reported.add(fname)
            self.problems.append(
                f"JMESPath function {fname}() is declared with different callables by: "
                + ", ".join(p for _, p in declared)
            )

    def _check_record(
        self, kind: Kind, hook_name: str, plugin: str, item: Any, record: type
    ) -> str | None:
        if not isinstance(item, record):
            self._problem(
                plugin, f"{hook_name} returned a {type(item).__name__}, not a {record.__name__}"
            )
            return None
        name = item.name
        bad: list[str] = []
        if not isinstance(name, str) or not _NAME_RE.match(name):
            bad.append(f"name {name!r} is not a lower-case slug ([a-z][a-z0-9-]*)")
        if not (isinstance(item.settings, type) and attrs.has(item.settings)):
            bad.append("settings is not an attrs class")
        mapping = item.mapping
        if (mapping is not None or kind == "destination") and not (
            _is_str_mapping(mapping) or isinstance(mapping, MappingFile)
        ):
            bad.append("mapping is not a MappingFile nor a table of str to str")
        if kind == "destination" and not _is_tables(item.tables):
            bad.append("tables is not a table of tables")
        if kind == "destination" and not _is_renamed(item.renamed):
            bad.append("renamed is not a table of old key to new key (or to {new key: template})")
        bad += _function_problems(item.functions)
        if bad:
            self._problem(plugin, f"{kind} type {name!r}: " + "; ".join(bad))
            return None
        return name

    def _problem(self, plugin: str, message: str) -> None:
        self.problems.append(f"plugin {self.result.describe(plugin)}: {message}")

    # -- queries --------------------------------------------------------------------------------

    def owner_of(self, kind: Kind, name: str) -> str:
        """The name of the plugin that declared type ``name`` (``KeyError`` if none)."""
        return self._owners[(kind, name)]

    def types_of(self, plugin: str) -> tuple[list[str], list[str]]:
        """``(source type names, destination type names)`` declared by ``plugin``."""
        sources = [n for (k, n), p in self._owners.items() if k == "source" and p == plugin]
        dests = [n for (k, n), p in self._owners.items() if k == "destination" and p == plugin]
        return sorted(sources), sorted(dests)

    # -- stage factories ------------------------------------------------------------------------

    def make_ingestor(self, source: Source) -> Ingestor:
        """Build the ingestor of ``source`` with its declaring plugin (or :class:`PluginError`)."""
        owner = self.owner_of("source", source.type)
        return self._make(
            "crossdock_make_ingestor", owner, (), {"source": source}, source.settings, source.id
        )

    def make_transformer(self, destination: Destination) -> Transformer:
        """Build the transformer of ``destination``: its plugin's, else the JMESPath fallback."""
        owner = self.owner_of("destination", destination.plugin)
        return self._make(
            "crossdock_make_transformer",
            owner,
            (TRANSFORM_FALLBACK,),
            {"destination": destination},
            destination.settings,
            destination.id,
        )

    def make_deliverer(self, destination: Destination, http: aiohttp.ClientSession) -> Deliverer:
        """Build the deliverer of ``destination`` with its declaring plugin."""
        owner = self.owner_of("destination", destination.plugin)
        return self._make(
            "crossdock_make_deliverer",
            owner,
            (),
            {"destination": destination, "http": http},
            destination.settings,
            destination.id,
        )

    def _make(
        self,
        hook_name: str,
        owner: str,
        also: Iterable[str],
        kwargs: dict[str, Any],
        settings: Any,
        component: str,
    ) -> Any:
        keep = {owner, *also}
        remove = [p for name, p in self.pm.list_name_plugin() if name not in keep]
        caller = self.pm.subset_hook_caller(hook_name, remove_plugins=remove)
        info = self.result.info(owner)
        distribution = info.provider if info is not None and info.distribution else None
        try:
            made = caller(**kwargs)
        except Exception as exc:
            secrets = _secrets(settings)
            message = mask(
                f"{hook_name} failed for {component!r}: {type(exc).__name__}: {exc}", secrets
            )
            raise PluginError(owner, message, distribution=distribution) from exc
        if made is None:
            message = f"{hook_name} returned None for {component!r}"
            raise PluginError(owner, message, distribution=distribution)
        return made


def _is_str_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _function_problems(functions: Any) -> list[str]:
    """A type's ``functions``: :class:`~crossdock.JmesFunction` records, none shadowing a
    JMESPath built-in or one of Crossdock's own functions, no name twice."""
    from crossdock.transform.jmes.functions import BUILTIN_NAMES, EXTRA_NAMES, JmesFunction

    if isinstance(functions, str | Mapping) or not isinstance(functions, Iterable):
        return ["functions is not a list of crossdock.JmesFunction"]
    problems: list[str] = []
    names: set[str] = set()
    for func in functions:
        if not isinstance(func, JmesFunction):
            problems.append(f"functions holds a {type(func).__name__}, not a JmesFunction")
        elif func.name in BUILTIN_NAMES:
            problems.append(f"function {func.name}() shadows a JMESPath built-in")
        elif func.name in EXTRA_NAMES:
            problems.append(f"function {func.name}() shadows a Crossdock function")
        elif func.name in names:
            problems.append(f"function {func.name}() is declared twice")
        names.add(getattr(func, "name", ""))
    return problems


def _is_renamed(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(old, str) and (isinstance(new, str) or _is_str_mapping(new))
        for old, new in value.items()
    )


def _is_tables(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in value.items()
    )


def _secrets(settings: Any) -> list[Any]:
    from crossdock.secrets import find_secrets

    return list(find_secrets(settings))


def load_registry(
    *,
    entrypoints: bool = True,
    extra_plugins: Iterable[Any] = (),
    blocked: Iterable[str] = (),
) -> Registry:
    """Discover plugins (:func:`~crossdock.plugins.discovery.make_plugin_manager`), build the
    registry."""
    return Registry(
        make_plugin_manager(entrypoints=entrypoints, blocked=blocked, extra_plugins=extra_plugins)
    )
