"""``crossdock completion bash|zsh|fish``: scripts generated from the parser by shtab."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from crossdock.cli.main import COMPLETION_SHELLS, main

COMMANDS = ("run", "check", "plugins", "test", "dlq", "backfill", "init", "completion")


def _script(shell: str, capsys) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("shell", COMPLETION_SHELLS)
def test_every_shell_gets_a_script_naming_every_command(shell: str, capsys) -> None:
    script = _script(shell, capsys)
    for command in COMMANDS:
        assert command in script
    assert "--worker-index" not in script  # internal option stays hidden


def test_unknown_shell_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["completion", "csh"])
    assert info.value.code == 2


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completes_commands_options_and_shells(tmp_path, capsys) -> None:
    path = tmp_path / "crossdock.bash"
    path.write_text(_script("bash", capsys))
    probe = f"""
source {path}
complete_words() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
  _shtab_crossdock crossdock "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  echo "${{COMPREPLY[*]}}"
}}
complete_words crossdock ""
complete_words crossdock run --w
complete_words crossdock completion ""
complete_words crossdock check --
"""
    out = subprocess.run(
        ["bash", "--norc", "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert out[0].split() == list(COMMANDS)
    assert out[1] == "--workers"
    assert out[2].split() == ["bash", "zsh", "fish"]
    assert {"--config", "--json"} <= set(out[3].split())


@pytest.mark.parametrize("shell", [s for s in ("zsh", "fish") if shutil.which(s)])
def test_other_shells_parse_their_script(shell: str, tmp_path, capsys) -> None:
    path = tmp_path / f"crossdock.{shell}"
    path.write_text(_script(shell, capsys))
    flag = "-n" if shell == "zsh" else "--no-execute"
    subprocess.run([shell, flag, str(path)], check=True, timeout=30)


def test_file_arguments_complete_file_names(capsys) -> None:
    assert "_shtab_compgen_files" in _script("bash", capsys)
    assert "_files" in _script("zsh", capsys)
