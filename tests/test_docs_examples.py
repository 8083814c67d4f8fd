"""Every code example in docs/plugin-guide.md runs.

Blocks whose first line is ``# <path>`` (``# pyproject.toml``, ``# src/crossdock_acme/x.py``,
``# tests/test_acme.py``) are files of one example plugin: they are written into a directory,
the plugin is imported and declares its type, and its tests (the conformance suite) pass in
that directory as in an author's own repository. Other python blocks are executed, other toml
blocks parsed. A block meant as a fragment says so with ``<!-- fragment -->`` on the line
before it; there are few.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from attrs import frozen
from packaging.requirements import Requirement

from crossdock.plugins.discovery import core_version
from crossdock.testing.harness import DestinationHarness, destination_types

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugin-guide.md"
FRAGMENT = "<!-- fragment -->"
MAX_FRAGMENTS = 3
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_PATH = re.compile(r"^# ((?:[\w.-]+/)*[\w.-]+\.(?:py|toml|typed))\s*$")


@frozen
class Block:
    """One fenced code block of a document."""

    lang: str
    code: str
    line: int
    fragment: bool

    @property
    def path(self) -> str | None:
        """The example file this block is (``# <path>`` as its first line), if any."""
        match = _PATH.match(self.code.split("\n", 1)[0])
        return match[1] if match else None

    @property
    def where(self) -> str:
        """``docs/plugin-guide.md:<line>`` for messages and test ids."""
        return f"{GUIDE.relative_to(ROOT)}:{self.line}"


def blocks(path: Path = GUIDE) -> list[Block]:
    """The fenced blocks of ``path``, each with its line and fragment mark."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match[1], match[2], line, before == FRAGMENT))
    return found


RUNNABLE = [b for b in blocks() if not b.fragment and b.lang in ("python", "toml")]
FILES = {b.path: b for b in RUNNABLE if b.path is not None}
LOOSE = [b for b in RUNNABLE if b.path is None]


def _write_plugin(root: Path) -> Path:
    for rel, block in FILES.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    return root


def _package() -> str:
    pyproject = tomllib.loads(FILES["pyproject.toml"].code)
    [value] = pyproject["project"]["entry-points"]["crossdock"].values()
    return value


def test_the_guide_has_runnable_examples_and_few_fragments() -> None:
    assert {"pyproject.toml", "tests/test_acme.py"} <= set(FILES)
    assert sum(b.fragment for b in blocks()) <= MAX_FRAGMENTS


def test_pyproject_example_is_complete() -> None:
    """Build backend, entry point, package data, a core range admitting this core, test extra."""
    pyproject = tomllib.loads(FILES["pyproject.toml"].code)
    assert pyproject["build-system"]["build-backend"]
    assert pyproject["build-system"]["requires"]
    project = pyproject["project"]
    [core] = [Requirement(r) for r in project["dependencies"] if r.startswith("crossdock")]
    assert core.name == "crossdock"
    assert core.specifier.contains(core_version(), prereleases=True)
    major, minor = (int(p) for p in core_version().split(".")[:2])
    assert not core.specifier.contains(f"{major}.{minor + 1}.0"), "no upper bound"
    assert "crossdock[testing]" in project["optional-dependencies"]["test"]
    package = _package()
    # The wheel's package is the folder that holds mapping.toml in the example.
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert packages == [f"src/{package}"]
    assert f"src/{package}/mapping.toml" in FILES


def test_other_examples_run() -> None:
    """Python blocks that are not example files run; toml blocks parse."""
    for block in LOOSE:
        if block.lang == "toml":
            tomllib.loads(block.code)
        else:
            exec(compile(block.code, block.where, "exec"), {"__name__": "docs_example"})


def test_example_plugin_imports_and_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    root = _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))
    package = _package()
    try:
        module = importlib.import_module(package)
        [dtype] = destination_types(module)
        harness = DestinationHarness(module, {"api_key": "k-123456", "base_url": "http://x"})
        payload = harness.transform(
            {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}
        )
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
            del sys.modules[name]
    assert dtype.name == "acme"
    assert payload == {"type": "track", "name": "Signed Up", "user": "u1", "id": "m1"}


@pytest.mark.slow
def test_example_plugin_passes_the_conformance_suite_standalone(tmp_path: Path) -> None:
    """In its own directory and config, as an author runs it: no asyncio_mode, no conftest."""
    root = _write_plugin(tmp_path / "crossdock-acme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CROSSDOCK_"))}
    env["PYTHONPATH"] = str(root / "src")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(root), "-W", "error::pytest.PytestWarning"]  # fmt: skip
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert " passed" in output
    for word in ("failed", "skipped", "error", "warning"):
        assert word not in output.lower(), output
