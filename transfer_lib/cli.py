"""The command line: ``python -m transfer_lib COMMAND ...``.

Each command lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from transfer_lib.errors import TransferError

# command -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("transfer_lib.summary", "build a model, print its summary and run a forward pass"),
    "synth": ("transfer_lib.data.synth_cli", "write the synthetic expression data set in RAF-DB's layout"),
    "pretrain": ("transfer_lib.pretrain", "train the tiny stem to recognise synthetic identities (IR-50 analogue)"),
    "train": ("transfer_lib.train_cli", "train a model (profiles smoke, cpu, paper)"),
    "eval": ("transfer_lib.evaluate_cli", "evaluate a checkpoint or the authors' released weights"),
    "ablate": ("transfer_lib.ablate", "run the paper's ablation rows over seeds and tabulate"),
    "bench": ("transfer_lib.bench", "benchmark the data pipeline or training speed"),
    "predict": ("transfer_lib.predict", "detect faces in photos and print expression probabilities"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m transfer_lib",
        description="TransFER facial expression recognition: data, training, evaluation, tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except TransferError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
