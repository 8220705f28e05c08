"""Every numeric option of every command, tried with bad numbers: the cases come from the parsers.

``build_parser()`` is walked down to each command's (and sub-command's) parser; every option that
takes a number (a :mod:`transfer_lib.cli.types` type, ``int`` / ``float``, or a name that says
number) is given -1, 0, nan, inf and 10**12. Each value must either be refused while the
arguments are parsed (exit 2, one ``error: --OPTION VALUE: expected ...`` line naming the
range) or be accepted, and then ``main`` must end in exit 0 or exit 2 with one ``error:`` line,
never a traceback. An option added tomorrow is swept without touching this file.

Running each command for real would take minutes, so ``main`` runs with every command's ``run``
replaced by a stub that calls only the command's own argument checks (:data:`CHECKS`: the
``TrainConfig`` a train run validates, synth's parameters, ...); those need no data or model.
The whole module takes a few seconds.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from transfer_lib.cli import COMMANDS, UsageError, build_parser, main
from transfer_lib.cli import types as cli_types

BAD_VALUES = ("-1", "0", "nan", "inf", str(10**12))

#: Option names that say "a number" although nothing in their type does.
NUMBER_WORDS = re.compile(
    r"size|epoch|seed|worker|thread|step|lr|rate|decay|smooth|clip|every|milestone|occlusion|"
    r"identit|images|held|depth|gray|grey|top|tflops|cap|second|atol|rtol|opset|warmup|count|"
    r"num|max|min|ratio|frac|share|prob|limit|timeout|^train$|^test$|^val$")


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of each parser that takes no further sub-command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from leaves(child, (*path, name))


def is_numeric(action: argparse.Action) -> bool:
    if isinstance(action, argparse._SubParsersAction) or action.nargs == 0:
        return False
    if isinstance(action.type, cli_types.NUMERIC_TYPES) or action.type in (int, float):
        return True
    return bool(action.option_strings and not action.choices
                and NUMBER_WORDS.search(action.dest))


def base_argv(parser: argparse.ArgumentParser, missing: str) -> list[str]:
    """The least ``parser`` accepts: each required positional or option (or one of a required
    group) with its first choice or a path that does not exist (the stubs never read it)."""
    def value(action):
        return str(next(iter(action.choices))) if action.choices else missing

    argv: list[str] = []
    for group in parser._mutually_exclusive_groups:
        if group.required:
            action = group._group_actions[0]
            argv += [action.option_strings[0], value(action)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or not action.required:
            continue
        if action.option_strings:
            argv += [action.option_strings[0], value(action)]
        else:
            argv.append(value(action))
    return argv


PARSER = build_parser()
LEAVES = dict(leaves(PARSER))
CASES = [(path, action.option_strings[0], value)
         for path, parser in LEAVES.items()
         for action in parser._actions if action.option_strings and is_numeric(action)
         for value in BAD_VALUES]
CHOICES = [(path, action.option_strings[0])
           for path, parser in LEAVES.items()
           for action in parser._actions
           if action.option_strings and action.choices and action.nargs != 0]


def _train_checks(args):
    from transfer_lib.cli.train import config_from_args

    config_from_args(args).validate()


def _synth_checks(args):
    from transfer_lib.data import synth

    synth._params(args.train, args.test, args.seed, args.occlusion, args.balance, args.workers,
                  args.val, args.task, args.part_occlusion)


def _pretrain_checks(args):
    import dataclasses

    from transfer_lib.weights.pretrain import PretrainConfig

    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    PretrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def _ablate_checks(args):
    from transfer_lib.book.ablate import parse_rows, seed_plan

    seed_plan(parse_rows(args.rows), args.seeds)


def _attention_checks(args):
    from transfer_lib.book.attention import top_count

    top_count(100, args.top)


def _export_checks(args):
    from transfer_lib import export

    if hasattr(export, "check_opset"):
        export.check_opset(args.opset)


#: The commands' own argument checks that need no data, model or download (cheap).
CHECKS = {
    ("train",): _train_checks,
    ("synth",): _synth_checks,
    ("pretrain",): _pretrain_checks,
    ("ablate",): _ablate_checks,
    ("attention",): _attention_checks,
    ("export",): _export_checks,
}


@pytest.fixture
def stubbed(monkeypatch):
    """Every command's ``run`` replaced by its cheap checks (:data:`CHECKS`)."""
    def stub(args):
        path = tuple(p for p in (args.command, getattr(args, "target", None),
                                 getattr(args, "action", None)) if p)
        check = CHECKS.get(path, lambda args: None)
        check(args)
        return 0

    for module_name, _ in COMMANDS.values():
        monkeypatch.setattr(importlib.import_module(module_name), "run", stub)
    return stub


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_the_sweep_finds_the_options():
    """A sanity check of the walk: the options the hostile-user trial probed are all swept."""
    swept = {(path, opt) for path, opt, _ in CASES}
    for case in [(("train",), "--batch-size"), (("train",), "--seed"), (("train",), "--lr"),
                 (("train",), "--label-smoothing"), (("train",), "--workers"),
                 (("train",), "--milestones"), (("bench", "data"), "--seconds"),
                 (("bench", "train"), "--steps"), (("export",), "--opset"),
                 (("eval",), "--render-workers"), (("pretrain",), "--workers"),
                 (("ablate",), "--seeds"), (("summary",), "--batch-size"),
                 (("synth",), "--occlusion"), (("synth",), "--part-occlusion"),
                 (("train",), "--regularise-from-epoch")]:
        assert case in swept, case
    assert (("bench", "data"), "--dataset") in CHOICES
    assert (("synth",), "--task") in CHOICES
    assert {path[0] for path in LEAVES} == set(COMMANDS)


@pytest.mark.parametrize("path, option", sorted({(p, o) for p, o, _ in CASES}))
def test_every_numeric_option_has_a_checked_type(path, option):
    """Plain int / float (or no type) would let -1, nan or 10**12 through to the work."""
    action = LEAVES[path]._option_string_actions[option]
    assert isinstance(action.type, cli_types.NUMERIC_TYPES), (
        f"{' '.join(path)} {option}: give it a type from transfer_lib.cli.types")


@pytest.mark.parametrize("path, option, value", CASES)
def test_bad_numbers_exit_2_or_are_fine(path, option, value, stubbed, tmp_path, capsys):
    argv = [*path, *base_argv(LEAVES[path], str(tmp_path / "missing")), option, value]
    try:
        PARSER.parse_args(argv)
        refused = None
    except UsageError as err:
        refused = str(err)
    try:
        code = main(argv)
    except SystemExit as err:  # argparse's own refusals (a choice, a missing argument)
        code = err.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if refused is not None:  # by the option's type: one line naming it, its value and range
        assert code == 2
        assert err == f"error: {refused}\n", err
        assert refused.startswith(f"{option} ") and ": expected " in refused, refused
    elif code == 2:  # by the command's own checks
        assert _one_error_line(err).startswith("error: "), err
    else:
        assert "Traceback" not in err


@pytest.mark.parametrize("path, option", CHOICES)
def test_unknown_choices_exit_2(path, option, tmp_path, capsys):
    argv = [*path, *base_argv(LEAVES[path], str(tmp_path / "missing")), option, "no-such-thing"]
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"argument {option}: invalid choice: 'no-such-thing'" in line


@pytest.mark.parametrize("text", ["10**9", "1e3", "", " ", "0x10", "1.5"])
def test_integers_are_plain_decimals(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer, 1 or more and at most 65536"):
        cli_types.BATCH_SIZE(text)


def test_lists_and_counts():
    assert cli_types.MILESTONES(" 15 , 30") == "15,30"
    assert cli_types.MILESTONES("") == ""
    for bad in ("30,15", "15,15", "0,5", "5,,6", "a"):
        with pytest.raises(argparse.ArgumentTypeError, match="increasing order"):
            cli_types.MILESTONES(bad)
    counts = cli_types.Counts(cli_types.positive_int(1000))
    assert counts("3") == 3 and counts("3, local=5") == "3,local=5"
    for bad in ("0", "3,4", "local=5,local=6", "=5", "x=1001"):
        with pytest.raises(argparse.ArgumentTypeError):
            counts(bad)


def test_valid_values_are_kept(stubbed):
    """Good values parse to what the commands read before the types existed."""
    args = PARSER.parse_args(["train", "--batch-size", "64", "--lr", "1e-3", "--seed", str(2**32 - 1),
                              "--milestones", "15,30", "--label-smoothing", "0.1",
                              "--workers", "0", "--warmup-epochs", "0.5"])
    assert (args.batch_size, args.lr, args.seed, args.milestones, args.label_smoothing,
            args.workers, args.warmup_epochs) == (64, 1e-3, 2**32 - 1, "15,30", 0.1, 0, 0.5)
    defaults = PARSER.parse_args(["train"])
    assert defaults.seed == 0 and defaults.batch_size is None and defaults.milestones is None
    assert main(["train", "--profile", "smoke", "--milestones", "2,4"]) == 0


def test_real_run_with_zeros(tmp_path, capsys):
    """The few zeros the types accept, run for real where that is quick: synth."""
    assert main(["synth", "--out", str(tmp_path / "s"), "--train", "0", "--test", "0",
                 "--val", "0"]) == 2
    assert "at least one image" in _one_error_line(capsys.readouterr().err)
    assert main(["synth", "--out", str(tmp_path / "s"), "--train", "2", "--test", "1",
                 "--val", "0", "--occlusion", "0", "--seed", "0", "--workers", "1"]) == 0


def test_top_level_help_imports_no_command_module():
    """``--help`` and a mistyped command answer without importing torch or any command."""
    code = ("import sys\nfrom transfer_lib.cli import main\n"
            "for argv in (['--help'], [], ['trian']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('transfer_lib.')"
            " and m not in ('transfer_lib.cli', 'transfer_lib.cli.types', 'transfer_lib.utils',"
            " 'transfer_lib.utils.errors', 'transfer_lib.utils.kernels')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert all(name in out.stdout for name in COMMANDS)


def test_parser_of_one_command_lists_all():
    parser = build_parser(["summary"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert isinstance(parser.parse_args(["summary"])._module, types.ModuleType)


@pytest.mark.parametrize("task", ["additive", "relational", "occlusion-shift"])
@pytest.mark.parametrize("option", ["--occlusion", "--part-occlusion"])
@pytest.mark.parametrize("value", [*BAD_VALUES, "-0", "1e-300", "1"])
def test_synth_shares_with_each_task(task, option, value, stubbed, tmp_path, capsys):
    """Every share with every task: accepted, or refused in one line naming the option (the
    occlusion-shift task refuses any occluder: --occlusion above 0)."""
    code = main(["synth", "--out", str(tmp_path / "s"), "--task", task, option, value])
    err = capsys.readouterr().err
    if code == 0:
        assert err == ""
        return
    assert code == 2 and f" {option} " in _one_error_line(err), err
    if task == "occlusion-shift" and option == "--occlusion" and value in ("1e-300", "1"):
        assert err.startswith(f"error: --task occlusion-shift --occlusion {float(value)}: "), err
    else:
        assert err.startswith(f"error: {option} {value}: expected "), err


def test_negative_zero_is_zero():
    """``-0`` passes a [0, 1] range; it reaches records (config.json, synthetic.json) as 0.0."""
    for text in ("-0", "-0.0", " -0e5"):
        value = cli_types.PROBABILITY(text)
        assert value == 0.0 and str(value) == "0.0"
    assert str(cli_types.EPOCHS_FLOAT("-0")) == "0.0" and cli_types.SEED("-0") == 0
