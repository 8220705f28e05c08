"""Callbacks the trainer's tests drive it with (``train(..., callbacks=[...])``), and the wrapper
script of the tests that run it in another process (SIGKILL in the middle of an epoch, two ranks
under torchrun): ``python -m transfer_lib train ARGS`` with a callback added."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from transfer_lib.train import Callback


class NanAfterStep(Callback):
    """The weights turn NaN after global step ``n``, so the loss of step ``n + 1`` is NaN: a
    diverged run, as the trainer's finite-loss check sees one."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_step_end(self, run, step) -> None:
        if step.global_step == self.n:
            with torch.no_grad():
                next(step.model.parameters()).fill_(float("nan"))


#: The wrapper: the train command's own parser and ``run``, with ``CALLBACKS`` from ``body``.
SCRIPT = '''\
"""python -m transfer_lib train ARGS, with callbacks: written by a test."""
import argparse
import sys

from transfer_lib.train import Callback
from transfer_lib.cli.train import add_arguments, run

{body}

parser = argparse.ArgumentParser()
add_arguments(parser)
sys.exit(run(parser.parse_args(sys.argv[1:]), callbacks=CALLBACKS))
'''

KILL_IN_EPOCH = '''\
import os
import signal


class KillInEpoch(Callback):
    """SIGKILL this process after the first step of epoch {epoch}: a crash mid-epoch."""

    def on_step_end(self, run, step):
        if step.epoch == {epoch} and step.step == 1:
            os.kill(os.getpid(), signal.SIGKILL)


CALLBACKS = [KillInEpoch()]
'''

DUMP_WEIGHTS = '''\
from pathlib import Path

import torch


class DumpWeights(Callback):
    """Every rank saves its model's weights at the end, as rank<N>.pt under {folder!r}."""

    def on_train_end(self, run, model):
        torch.save(model.state_dict(), Path({folder!r}) / f"rank{{run.ctx.rank}}.pt")


CALLBACKS = [DumpWeights()]
'''


def wrapper(folder: Path, body: str) -> list[str]:
    """Write the wrapper with ``body`` (which defines ``CALLBACKS``) into ``folder``; returns
    the command that runs it, to which the train command's options are added."""
    script = folder / "train_with_callbacks.py"
    script.write_text(SCRIPT.format(body=body))
    return [sys.executable, str(script)]


def kill_in_epoch(folder: Path, epoch: int) -> list[str]:
    return wrapper(folder, KILL_IN_EPOCH.format(epoch=epoch))


def dump_weights(folder: Path, into: Path) -> list[str]:
    return wrapper(folder, DUMP_WEIGHTS.format(folder=str(into)))
