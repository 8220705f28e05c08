"""Benchmarks that print their figures.

Examples:
  python -m transfer_lib bench data                 # per-image DataLoader vs the fast path
  python -m transfer_lib bench train --out benchmarks/results/train.json
"""

from __future__ import annotations

import argparse
import importlib

TARGETS = {
    "data": "transfer_lib.bench.data",
    "train": "transfer_lib.bench.train",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.data import DATASETS

    # the options transfer_lib/bench/data.py declares with plain int / float, checked here
    checked = {"data": {"batch_size": dict(type=T.BATCH_SIZE), "seconds": dict(type=T.SECONDS),
                        "workers": dict(type=T.WORKERS), "dataset": dict(choices=DATASETS)}}
    sub = parser.add_subparsers(dest="target", metavar="TARGET")
    sub.required = True
    for name, module_name in TARGETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0],
                           description=(module.__doc__ or name).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        for dest, how in checked.get(name, {}).items():
            T.retype(p, dest, **how)
        p.set_defaults(_bench_module=module)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_module.run(args) or 0)
