"""Packaging metadata of the core and every plugin, and the pins in constraints.txt."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))]
PLUGINS = [p for p in PYPROJECTS if p.parent != ROOT]


def _tools():
    spec = importlib.util.spec_from_file_location("constraints_tool", ROOT / "tools/constraints.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _requirements(path: Path) -> dict[str, Requirement]:
    found = {}
    for text in _project(path)["dependencies"]:
        requirement = Requirement(text)
        found[requirement.name.lower()] = requirement
    return found


def test_plugins_exist() -> None:
    assert len(PLUGINS) >= 6


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: p.parent.name)
def test_metadata_classifiers_licence_urls(path: Path) -> None:
    project = _project(path)
    classifiers = project.get("classifiers", [])
    assert classifiers, "no classifiers"
    unknown = [c for c in classifiers if c not in KNOWN_CLASSIFIERS]
    assert unknown == []
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    licence = path.parent / "LICENSE"
    assert licence.read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    assert all(url.startswith("https://") for url in project["urls"].values())


def test_licence_is_the_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.strip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 11000


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.parent.name)
def test_plugins_require_an_upper_bounded_core_and_ship_py_typed(path: Path) -> None:
    core = _requirements(path)["crossdock"]
    core_version = Version(_project(ROOT / "pyproject.toml")["version"])
    assert core_version in core.specifier
    assert any(spec.operator == "<" for spec in core.specifier), core
    assert Version(f"{core_version.major}.{core_version.minor + 1}") not in core.specifier
    [package] = (path.parent / "src").glob("crossdock_*")
    assert (package / "py.typed").is_file()


def test_core_ships_py_typed() -> None:
    assert (ROOT / "core/crossdock/py.typed").is_file()


@pytest.mark.parametrize(
    ("name", "first_untested"),
    [("attrs", "27"), ("cattrs", "27"), ("jmespath", "1.2")],
)
def test_core_bounds_what_it_relies_on_the_internals_of(name: str, first_untested: str) -> None:
    specifier: SpecifierSet = _requirements(ROOT / "pyproject.toml")[name].specifier
    assert Version(first_untested) not in specifier
    assert Version(_tools().read_constraints()[name]) in specifier


def test_constraints_cover_every_installed_dependency_at_its_version() -> None:
    tools = _tools()
    pins = tools.read_constraints()
    installed = tools.pinned()
    missing = sorted(set(installed) - set(pins))
    assert missing == [], "run `make constraints`"
    stale = {n: (pins[n], v) for n, v in installed.items() if pins[n] != v}
    assert stale == {}, "constraints.txt differs from the venv: run `make constraints`"
    assert not set(pins) & tools.project_names()  # the project's own installs are editable


def test_every_pin_satisfies_every_declared_range() -> None:
    pins = _tools().read_constraints()
    for path in PYPROJECTS:
        for requirement in _requirements(path).values():
            name = canonicalize_name(requirement.name)
            if name in pins:
                assert Version(pins[name]) in requirement.specifier, (path, requirement)


def test_ci_and_the_container_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in makefile
    assert "constraints:" in makefile
    assert "deps-check:" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -c constraints.txt" in dockerfile
    assert "constraints.txt" in dockerfile.split("COPY", 2)[1]


def test_read_constraints_ignores_comments(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("# header\nFoo_Bar==1.0  # why\n\nbaz==2\n")
    assert _tools().read_constraints(path) == {"foo-bar": "1.0", "baz": "2"}
