"""A third-party author's path: ``crossdock init --plugin NAME`` writes a distribution that
passes its own tests at once, in its own repository (its own pytest config, no
``asyncio_mode``), and the conformance suite it uses needs nothing from the author's config."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest

from crossdock.cli.init import MAX_NAME, plugin_files, plugin_tokens, write_plugin
from crossdock.cli.main import main
from crossdock.plugins.discovery import core_version
from crossdock.testing.contract import destination_contract_tests

VENV_BIN = Path(sys.executable).parent
LONGEST = "abcdefghij-klmnopqr-stuv"
assert len(LONGEST) == MAX_NAME


def _generate(tmp_path: Path, name: str = "acme") -> Path:
    target = tmp_path / f"crossdock-{name}"
    assert main(["init", "--plugin", name, "--dir", str(target)]) == 0
    return target


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CROSSDOCK_"))}
    env["PYTHONPATH"] = str(pythonpath)
    return env


# -- the conformance suite runs in any asyncio mode ----------------------------------------------


def test_contract_marks_its_coroutine_tests_with_a_function_loop() -> None:
    import crossdock.deliver.destinations.webhook as webhook

    suite = destination_contract_tests(webhook, settings={"url": "{fake_url}/hook"})
    tests = {n: f for n, f in vars(suite).items() if n.startswith("test_")}
    coroutines = {n for n, f in tests.items() if inspect.iscoroutinefunction(f)}
    assert coroutines, "the suite has async checks"
    for name, func in tests.items():
        marks = [m for m in getattr(func, "pytestmark", []) if m.name == "asyncio"]
        if name in coroutines:
            assert [m.kwargs for m in marks] == [{"loop_scope": "function"}], name
        else:
            assert not marks, f"{name} is sync: an asyncio mark would make pytest-asyncio warn"


# -- what the template writes -------------------------------------------------------------------


def test_template_files_and_tokens() -> None:
    files = plugin_files("acme-cloud", "0.2.0")
    assert sorted(files) == [
        "README.md",
        "pyproject.toml",
        "src/crossdock_acme_cloud/__init__.py",
        "src/crossdock_acme_cloud/deliverer.py",
        "src/crossdock_acme_cloud/mapping.toml",
        "src/crossdock_acme_cloud/py.typed",
        "src/crossdock_acme_cloud/settings.py",
        "src/crossdock_acme_cloud/testing.py",
        "tests/test_acme_cloud.py",
    ]
    for path, text in files.items():
        assert "{{" not in text, path
        assert "}}" not in text, path
    assert "class AcmeCloudDeliverer:" in files["src/crossdock_acme_cloud/deliverer.py"]
    assert "class FakeAcmeCloud(FakeVendor):" in files["src/crossdock_acme_cloud/testing.py"]
    assert plugin_tokens("acme-cloud", "0.2.0")["env"] == "ACME_CLOUD"


def test_pyproject_is_a_complete_distribution() -> None:
    project = tomllib.loads(plugin_files("acme", "0.2.0")["pyproject.toml"])
    assert project["build-system"]["build-backend"] == "hatchling.build"
    meta = project["project"]
    assert meta["name"] == "crossdock-acme"
    assert meta["dependencies"] == ["crossdock>=0.2,<0.3"]
    assert meta["optional-dependencies"]["test"] == ["crossdock[testing]"]
    assert meta["entry-points"]["crossdock"] == {"acme": "crossdock_acme"}
    assert "crossdock-plugin" in meta["keywords"]
    # hatchling ships every file under the package: mapping.toml and py.typed included.
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/crossdock_acme"
    ]
    assert "asyncio_mode" not in project["tool"]["pytest"]["ini_options"]


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.2.0", ">=0.2,<0.3"), ("0.3.1.dev4", ">=0.3,<0.4"), ("1.4.0", ">=1.4,<2"),
     ("0+unknown", ">=0.2,<0.3")],
)  # fmt: skip
def test_core_requirement_follows_the_running_version(version: str, expected: str) -> None:
    meta = tomllib.loads(plugin_files("acme", version)["pyproject.toml"])["project"]
    assert meta["dependencies"] == [f"crossdock{expected}"]


def test_requirement_admits_this_core() -> None:
    from packaging.specifiers import SpecifierSet

    spec = plugin_tokens("acme", core_version())["crossdock_range"]
    assert core_version() in SpecifierSet(spec)


def test_force_keeps_the_authors_other_files(tmp_path: Path) -> None:
    target = tmp_path / "p"
    write_plugin("acme", target, "0.2.0")
    (target / "NOTES.md").write_text("mine")
    (target / "README.md").write_text("changed")
    with pytest.raises(FileExistsError):
        write_plugin("acme", target, "0.2.0")
    write_plugin("acme", target, "0.2.0", force=True)
    assert (target / "NOTES.md").read_text() == "mine"
    assert (target / "README.md").read_text().startswith("# crossdock-acme")


@pytest.mark.parametrize("name", ["acme", LONGEST])
def test_generated_tree_is_ruff_clean(tmp_path: Path, name: str) -> None:
    ruff = shutil.which("ruff", path=str(VENV_BIN)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (crossdock[dev])")
    target = _generate(tmp_path, name)
    env = _env(target / "src")
    # The plugin's own ruff config (its pyproject.toml), not the repository's.
    for args in (
        [ruff, "check", "--no-cache", "."],
        [ruff, "format", "--check", "--no-cache", "."],
    ):
        proc = _run(args, target, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the generated plugin in its own repository ---------------------------------------------------


@pytest.mark.slow
def test_generated_plugin_passes_its_own_tests(tmp_path: Path) -> None:
    target = _generate(tmp_path)
    # Its own rootdir and config (no asyncio_mode); warnings of pytest and pytest-asyncio
    # (a mark on a sync test, an unset loop scope) are errors.
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(target), "-W", "error::pytest.PytestWarning"]  # fmt: skip
    env = _env(target / "src")
    collected = _run([*args, "--collect-only"], target, env).stdout
    assert "tests/test_acme.py::TestAcmeContract::test_5xx_is_retried" in collected
    assert "tests/test_acme.py::test_golden_request" in collected
    proc = _run(args, target, env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert " passed" in output
    for word in ("failed", "skipped", "error", "warning"):
        assert word not in output.lower(), output


@pytest.mark.slow
def test_generated_plugin_installs_and_is_discovered(tmp_path: Path) -> None:
    """Built by its own backend (hatchling, from the package registry) and installed: the wheel
    holds mapping.toml and py.typed, and ``crossdock plugins`` finds it through its entry point."""
    target = _generate(tmp_path)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    proc = _run([*pip, str(target)], tmp_path, _env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    package = site / "crossdock_acme"
    assert (package / "mapping.toml").is_file()
    assert (package / "py.typed").is_file()
    crossdock = [sys.executable, "-m", "crossdock.cli.main", "plugins", "--json"]
    proc = _run(crossdock, tmp_path, _env(site))
    rows = {row["name"]: row for row in orjson.loads(proc.stdout)}
    assert rows["acme"]["status"] == "ok", rows["acme"]
    assert rows["acme"]["distribution"] == "crossdock-acme"
    assert rows["acme"]["version"] == "0.1.0"
    assert rows["acme"]["destination_types"] == ["acme"]
