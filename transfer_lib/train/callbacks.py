"""Callbacks: your own code at fixed points of a run, without editing the loop.

    >>> from transfer_lib.train import Callback, train
    >>> class PrintLoss(Callback):
    ...     def on_step_end(self, run, step):
    ...         if step.loss is not None and step.step % 10 == 0:
    ...             print(step.epoch, step.step, step.loss)
    >>> summary = train(profile="smoke", out="runs/smoke", callbacks=[PrintLoss()])

A callback is any object with one or both of these methods (subclassing :class:`Callback`, whose
methods do nothing, is optional):

* ``on_step_end(run, step)``: after every optimiser step, once the step's loss was checked
  (:class:`StepInfo`);
* ``on_train_end(run, model)``: after the last epoch, once rank 0 wrote ``summary.json``;
  ``model`` is the trained module itself (never its DistributedDataParallel wrapper).

``run`` is the run's :class:`~transfer_lib.train.loop.Run`: ``run.cfg`` (the TrainConfig),
``run.prof`` (the resolved recipe), ``run.run_dir``, ``run.device`` and ``run.ctx`` (``rank``,
``world_size``, ``is_main``). Under ``torchrun`` callbacks are called on every rank. They are
called in the order given; an exception raised by one stops the run (the last checkpoint is
kept) and reaches the caller of :func:`~transfer_lib.train.train`. A callback that changes the
model or reads more than ``StepInfo`` holds may break the exact resumption the trainer
guarantees; one that only observes does not. Callbacks are not part of the recipe: they are
not recorded in ``config.json``, and a ``--resume`` needs none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepInfo:
    """Where a run stands after one optimiser step."""

    epoch: int  # 1-based, as metrics.jsonl counts epochs
    step: int  # 1-based, within the epoch
    steps_per_epoch: int
    global_step: int  # optimiser steps of the whole run, this one included
    lr: float  # the learning rate of this step
    loss: float | None  # the epoch's mean loss so far, where read on the host this step (every
    # ``sync_every`` steps: each step on a CPU, every 25th on CUDA), else None
    model: torch.nn.Module  # the module being trained (not its DDP wrapper)


class Callback:
    """A do-nothing base for callbacks: override the methods you need."""

    def on_step_end(self, run, step: StepInfo) -> None:
        pass

    def on_train_end(self, run, model: torch.nn.Module) -> None:
        pass


def as_callbacks(callbacks: Iterable | None) -> tuple:
    """``callbacks`` as a tuple; refuses an object with neither method (a class instead of an
    instance, a misspelt method) at once rather than silently never calling it."""
    if callbacks is None:
        return ()
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes)):
        callbacks = (callbacks,)
    found = tuple(callbacks)
    for cb in found:
        if isinstance(cb, type) or not any(callable(getattr(cb, name, None))
                                           for name in ("on_step_end", "on_train_end")):
            raise TypeError(f"callbacks: {cb!r} has neither on_step_end(run, step) nor "
                            f"on_train_end(run, model)"
                            + (" (a class: pass an instance)" if isinstance(cb, type) else ""))
    return found


def call(callbacks: tuple, method: str, *args) -> None:
    """``method(*args)`` of each callback that has it, in order."""
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


__all__ = ["Callback", "StepInfo", "as_callbacks", "call"]
