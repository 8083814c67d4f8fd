"""Plugin discovery: the plugin manager, built-ins, the ``crossdock`` entry-point group.

:func:`make_plugin_manager` builds a fresh manager every time (no module-level manager): hook
specs, then the built-in modules, then each entry point, one by one. A plugin that fails to
import or to register, or that implements a hook that does not exist, becomes a named
*problem* (shown by ``crossdock plugins`` and ``crossdock check``), never a crash.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import pluggy
from attrs import define, field

from crossdock.plugins import hookspecs

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "PluginInfo",
    "PluginManagerResult",
    "core_version",
    "installed_plugins",
    "make_plugin_manager",
]

BUILTIN_PLUGINS: tuple[str, ...] = (
    "crossdock.ingest.sources.segment",
    "crossdock.ingest.sources.segment_webhook",
    "crossdock.ingest.sources.webhook",
    "crossdock.deliver.destinations.webhook",
    "crossdock.deliver.destinations.file",
    "crossdock.deliver.destinations.segment",
    "crossdock.transform.default",
)
"""Modules registered as plugins before any entry point (in this order)."""

ENTRY_POINT_GROUP = "crossdock"
DISABLE_ENV = "CROSSDOCK_DISABLE_PLUGINS"
"""Comma-separated plugin names not to load (entry-point names or built-in module names)."""


def core_version() -> str:
    """The installed version of the ``crossdock`` distribution."""
    try:
        return importlib.metadata.version("crossdock")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@define
class PluginInfo:
    """What we know about one plugin: where it came from and whether it loaded.

    ``status`` is ``"ok"``, ``"blocked"`` or ``"failed: <reason>"``. ``entry_point`` is
    ``name = value`` for entry-point plugins, ``None`` for built-ins and explicit ones.
    """

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None = None
    builtin: bool = False
    status: str = "ok"

    @property
    def provider(self) -> str:
        """``distribution version`` (or the plugin name when it has no distribution)."""
        if self.distribution:
            return f"{self.distribution} {self.version or '?'}"
        return self.name

    @property
    def ok(self) -> bool:
        """True if the plugin is registered and working."""
        return self.status == "ok"


@define
class PluginManagerResult:
    """A plugin manager with the plugins' provenance and every problem found while loading.

    Unpacks as ``pm, problems = make_plugin_manager(...)``.
    """

    pm: pluggy.PluginManager
    problems: list[str] = field(factory=list)
    plugins: dict[str, PluginInfo] = field(factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.pm
        yield self.problems

    def info(self, plugin_name: str) -> PluginInfo | None:
        """Provenance of the plugin registered as ``plugin_name``."""
        return self.plugins.get(plugin_name)

    def describe(self, plugin_name: str) -> str:
        """``name (distribution version)`` for messages."""
        info = self.plugins.get(plugin_name)
        if info is None or not info.distribution:
            return plugin_name
        return f"{plugin_name} ({info.provider})"


def make_plugin_manager(
    *,
    entrypoints: bool = True,
    blocked: Iterable[str] = (),
    extra_plugins: Iterable[Any] = (),
) -> PluginManagerResult:
    """Build a plugin manager: hookspecs, built-ins, entry points (unless ``entrypoints=False``),
    then ``extra_plugins`` (modules, objects, dotted names or ``(name, object)`` pairs).

    ``blocked`` names (plus those in ``$CROSSDOCK_DISABLE_PLUGINS``) are never registered.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    result = PluginManagerResult(pm)
    env_blocked = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
    for name in [*blocked, *env_blocked]:
        pm.set_blocked(name)

    version = core_version()
    for module_name in BUILTIN_PLUGINS:
        info = PluginInfo(module_name, "crossdock", version, builtin=True)
        result.plugins[module_name] = info
        if pm.is_blocked(module_name):
            info.status = "blocked"
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            _fail(result, info, f"cannot import {module_name}: {_reason(exc)}")
            continue
        _register(result, info, module)

    if entrypoints:
        _load_entry_points(result)

    for extra in extra_plugins:
        _register_extra(result, extra)

    _check_unknown_hooks(result)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # pragma: no cover (caught above)
        result.problems.append(f"plugin {exc.plugin}: {exc}")
    return result


def _load_entry_points(result: PluginManagerResult) -> None:
    pm = result.pm
    seen: dict[str, PluginInfo] = {}
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        dist_version = dist.version if dist is not None else None
        found.append((ep.name, dist_name or "", dist_version or "", ep))
    # sorted, so that loading order (and which of two clashing names wins) is reproducible
    for _, dist_name, dist_version, ep in sorted(found, key=lambda f: f[:3]):
        dist_name, dist_version = dist_name or None, dist_version or None
        info = PluginInfo(ep.name, dist_name, dist_version, entry_point=f"{ep.name} = {ep.value}")
        previous = seen.get(ep.name) or result.plugins.get(ep.name)
        if previous is not None:
            if (previous.distribution, previous.version) == (dist_name, dist_version):
                continue  # the same distribution found twice on sys.path
            result.problems.append(
                f"plugin {ep.name}: entry point name provided by several distributions: "
                f"{previous.provider}, {info.provider}; only the first is loaded"
            )
            continue
        seen[ep.name] = info
        result.plugins[ep.name] = info
        if pm.is_blocked(ep.name):
            info.status = "blocked"
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            _fail(result, info, f"entry point {ep.value} failed to load: {_reason(exc)}")
            continue
        _register(result, info, plugin)


def _register_extra(result: PluginManagerResult, extra: Any) -> None:
    name: str | None = None
    plugin = extra
    if isinstance(extra, tuple):
        name, plugin = extra
    if isinstance(plugin, str):
        name = name or plugin
        info = PluginInfo(name, None, None)
        result.plugins[name] = info
        try:
            plugin = importlib.import_module(plugin)
        except Exception as exc:
            _fail(result, info, f"cannot import {name}: {_reason(exc)}")
            return
    if name is None:
        name = (
            plugin.__name__
            if isinstance(plugin, ModuleType)
            else getattr(plugin, "__name__", None) or result.pm.get_canonical_name(plugin)
        )
    info = result.plugins.get(name) or PluginInfo(name, None, None)
    result.plugins[name] = info
    if result.pm.is_blocked(name):
        info.status = "blocked"
        return
    _register(result, info, plugin)


def _register(result: PluginManagerResult, info: PluginInfo, plugin: Any) -> None:
    try:
        registered = result.pm.register(plugin, name=info.name)
    except Exception as exc:
        _fail(result, info, f"cannot register: {_reason(exc)}")
        return
    if registered is None:
        info.status = "blocked"
        return
    for caller in result.pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and impl.opts.get("specname"):
                problem = (
                    f"plugin {info.name}: hook implementation {impl.function.__name__} uses "
                    "specname; crossdock hook implementations must be named after their hook"
                )
                result.problems.append(problem)


def _check_unknown_hooks(result: PluginManagerResult) -> None:
    """Hook implementations without a spec are misspelled hooks: the plugin is unregistered."""
    pm = result.pm
    broken: dict[str, list[str]] = {}
    for hook_name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.opts.get("optionalhook"):
                broken.setdefault(impl.plugin_name, []).append(hook_name)
    for plugin_name, hooks in broken.items():
        info = result.plugins.setdefault(plugin_name, PluginInfo(plugin_name, None, None))
        names = ", ".join(sorted(hooks))
        plugin = pm.get_plugin(plugin_name)
        if plugin is not None:
            pm.unregister(plugin)
        _fail(result, info, f"unknown hook {names} (misspelled?); plugin not loaded")


def _fail(result: PluginManagerResult, info: PluginInfo, reason: str) -> None:
    info.status = f"failed: {reason}"
    where = f"{info.name} ({info.provider})" if info.distribution else info.name
    result.problems.append(f"plugin {where}: {reason}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def installed_plugins(registry: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    """One row per plugin for ``crossdock plugins``: name, distribution, version, entry point,
    source types, destination types, hooks implemented, status.

    ``registry`` is a :class:`crossdock.plugins.registry.Registry`; without one it is loaded with
    ``kwargs`` (``entrypoints``, ``blocked``, ``extra_plugins``).
    """
    if registry is None:
        from crossdock.plugins.registry import load_registry

        registry = load_registry(**kwargs)
    result: PluginManagerResult = registry.result
    rows = []
    for name, info in result.plugins.items():
        plugin = result.pm.get_plugin(name)
        hooks: list[str] = []
        if plugin is not None:
            hooks = sorted(c.name for c in result.pm.get_hookcallers(plugin) or ())
        sources, destinations = registry.types_of(name)
        rows.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "entry_point": info.entry_point,
                "builtin": info.builtin,
                "source_types": sources,
                "destination_types": destinations,
                "hooks": hooks,
                "status": info.status,
            }
        )
    return rows
