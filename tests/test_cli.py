"""Every command is registered, has --help with examples, and rejects bad arguments clearly."""

import subprocess
import sys

import pytest

from transfer_lib.cli import COMMANDS, build_parser, main


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as err:
        main([command, "--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m transfer_lib " + command in out
    if command != "bench":
        assert "python -m transfer_lib " + command in out.split("usage:", 1)[1].split("\n", 1)[1]


@pytest.mark.parametrize("target", ["data", "train"])
def test_bench_targets_have_help(target, capsys):
    with pytest.raises(SystemExit) as err:
        main(["bench", target, "--help"])
    assert err.value.code == 0
    assert f"python -m transfer_lib bench {target}" in capsys.readouterr().out


def test_unknown_command_names_the_choices(capsys):
    with pytest.raises(SystemExit) as err:
        main(["trian"])
    assert err.value.code == 2
    err_text = capsys.readouterr().err
    assert "invalid choice: 'trian'" in err_text and "train" in err_text


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "transfer_lib", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    assert all(name in out.stdout for name in COMMANDS)
