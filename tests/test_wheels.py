"""The distributions as operators get them: wheels of the core and of every plugin, installed
(not editable) into a fresh virtual environment, are found and work.

Slow (it builds wheels and installs their dependencies from the package registry), so marked
``slow``; it still runs in CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
EXAMPLES = sorted(ROOT.glob("examples/*.toml"))
ORDER = ROOT / "examples" / "events" / "order_completed.json"
HARDAL_PURCHASE = ROOT / "examples" / "events" / "hardal_purchase.json"


def _run(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheels")
    dist = tmp / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT, *PLUGINS)
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", venv)
    wheels = sorted(dist.glob("*.whl"))
    # the core with its nats extra (examples/compose.toml uses the NATS queue), from the same
    # pins as CI and the container
    core = next(w for w in wheels if w.name.startswith("crossdock-"))
    others = [w for w in wheels if w != core]
    pip = (venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt")
    _run(*pip, f"crossdock[nats] @ {core.as_uri()}", *others)
    return venv


def test_every_plugin_wheel_is_found_with_its_version(fresh_venv: Path) -> None:
    rows = orjson.loads(_run(fresh_venv / "bin" / "crossdock", "plugins", "--json"))
    by_distribution = {row["distribution"]: row for row in rows}
    for plugin in PLUGINS:
        project = _project(plugin)
        row = by_distribution.get(project["name"])
        assert row is not None, f"{project['name']} not listed: {rows}"
        assert row["version"] == project["version"]
        assert row["status"] == "ok", row
        assert row["source_types"] or row["destination_types"]
    # installed as files in the venv, not as links back to this checkout
    code = "import crossdock, sys; print(crossdock.__file__)"
    location = _run(fresh_venv / "bin" / "python", "-c", code)
    assert location.startswith(str(fresh_venv)), location


def test_the_testing_kit_ships_in_the_core_wheel(fresh_venv: Path) -> None:
    code = (
        "from crossdock.testing.events import golden_events; "
        "from crossdock.testing.fakes import FakeVendor; print(len(golden_events()))"
    )
    assert int(_run(fresh_venv / "bin" / "python", "-c", code)) >= 40


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_and_dry_run_every_destination(fresh_venv: Path, example: Path) -> None:
    text = example.read_text()
    env = {**os.environ, "PATH": f"{fresh_venv / 'bin'}:{os.environ['PATH']}"}
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)):
        value = f"example-{name.lower().replace('_', '-')}"
        env[name] = f"https://{value}.invalid/" if name.endswith("URL") else value
    crossdock = fresh_venv / "bin" / "crossdock"
    if not all(
        _plugin_installed(fresh_venv, plugin) for plugin in re.findall(r'plugin = "(\w+)"', text)
    ):
        pytest.skip(f"{example.name} needs a plugin that is not in plugins/")
    _run(crossdock, "check", "-c", example, env=env)
    config = tomllib.loads(text)
    # what the example's first source receives: a Hardal body for a hardal source, else Spec
    hardal = any(s.get("type") == "hardal" for s in config.get("sources", [])[:1])
    event = HARDAL_PURCHASE if hardal else ORDER
    for destination in config.get("destinations", []):
        args = ("test", destination["id"], "-c", example, "--event", event, "--allow-dropped")
        out = _run(crossdock, *args, env=env)
        assert "dry run" in out or "not sent" in out, out
        if destination.get("plugin") == "insider" and not hardal:  # one purchase per product
            assert out.startswith("POST https://unification.useinsider.com/api/user/v1/upsert\n")
            assert "X-REQUEST-TOKEN: ***" in out
            assert out.count('"event_name": "purchase"') == 2


_TYPES: dict[Path, set[str]] = {}


def _plugin_installed(venv: Path, name: str) -> bool:
    if venv not in _TYPES:
        rows = orjson.loads(_run(venv / "bin" / "crossdock", "plugins", "--json"))
        _TYPES[venv] = {t for row in rows for t in row["destination_types"]}
    return name in _TYPES[venv]
