"""What every ``crossdock`` command shares: exit codes and loading the config with its plugins."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

from crossdock.errors import ConfigError

if TYPE_CHECKING:
    from crossdock.config.load import Config
    from crossdock.plugins.registry import Registry

__all__ = ["CONFIG_ENV", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "default_config", "load"]

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
    from crossdock.config.load import load_config
    from crossdock.plugins.registry import load_registry

    out = out or sys.stderr
    registry = load_registry()
    path = config_path or default_config()
    try:
        config = load_config(path, registry)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=out)
        for problem in exc.problems:
            print(f"  {problem}", file=out)
        for problem in registry.problems:
            print(f"  {problem}", file=out)
        return None
    return config, registry
