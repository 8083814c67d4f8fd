"""What every ``crossdock`` command shares: exit codes and loading the config with its plugins."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

from crossdock.errors import ConfigError

if TYPE_CHECKING:
    from crossdock.config.load import Config
    from crossdock.plugins.registry import Registry

__all__ = [
    "CONFIG_ENV",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "default_config",
    "load",
    "load_or_problems",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
CONFIG_ENV = "CROSSDOCK_CONFIG"


def default_config() -> str:
    """``$CROSSDOCK_CONFIG`` or ``crossdock.toml`` in the current directory."""
    return os.environ.get(CONFIG_ENV) or "crossdock.toml"


def load(config_path: str | None, *, out: TextIO | None = None) -> tuple[Config, Registry] | None:
    """Load plugins and the config; print every problem to ``out`` (stderr) and return ``None``
    if the config is invalid."""
    loaded = load_or_problems(config_path)
    if isinstance(loaded, tuple):
        return loaded
    print(loaded[0], file=out or sys.stderr)
    for problem in loaded[1:]:
        print(f"  {problem}", file=out or sys.stderr)
    return None


def load_or_problems(config_path: str | None) -> tuple[Config, Registry] | list[str]:
    """Load plugins and the config, or say why not: a heading line then every problem (config
    problems, masked, then the plugins')."""
    from crossdock.config.load import load_config
    from crossdock.plugins.registry import load_registry

    registry = load_registry()
    path = config_path or default_config()
    try:
        config = load_config(path, registry)
    except ConfigError as exc:
        return [f"{path}: {len(exc.problems)} problem(s):", *exc.problems, *registry.problems]
    return config, registry
