"""The trainer: one function, :func:`train`, for the CLI, ``ablate`` and the book (chapter 7).

    >>> from transfer_lib.train import train, run_or_load
    >>> summary = train(profile="smoke", out="runs/smoke")           # kwargs of TrainConfig
    >>> summary = run_or_load("runs/cpu-transfer", profile="cpu")    # trains only if not done yet
    >>> summary = train(profile="smoke", out="runs/s2", callbacks=[MyCallback()])  # see below

A run directory holds ``config.json`` (everything the run was started with, resolved),
``metrics.jsonl`` (one line per epoch: loss, lr, train accuracy, test accuracy and mean class
accuracy, validation accuracy and mean class accuracy, images/s), ``last.pt`` (model, optimiser,
scaler, RNG states and epoch, written atomically after every epoch), ``best.pt`` (the weights
with the best *validation* accuracy so far) and, once the run is complete, ``summary.json``.

Which split chooses what. The validation split (``val``: the data set's own validation list, as
FERPlus's PublicTest and the synthetic set's ``val_`` images, or else carved from train, 10 % of
each class with seed 0, as for RAF-DB; ``val_source`` in ``config.json`` and ``summary.json``
says which) chooses ``best.pt``; the test split is only reported. ``summary.json`` has
``best_selected_on: "validation"``, ``best_epoch``, ``best_val_accuracy`` and best.pt's test
figures (``best_accuracy`` = ``best_test_accuracy``, ``best_mean_class_accuracy``), while
``final_accuracy`` and ``mean_class_accuracy`` are the last epoch's test figures. Runs written
before the validation split chose best.pt on test; their summaries say so and still load.

Exact resumption. The learning rate is a pure function of the (fractional) epoch
(:meth:`Profile.lr_at`), the shuffling of each epoch is drawn from a generator seeded by
(seed, epoch, rank), and ``last.pt`` holds the python, numpy, torch CPU and CUDA RNG states of
every rank. So a run killed at any moment and resumed with ``--resume`` restarts from the end of
the last finished epoch and, on a CPU, ends with bitwise the same weights as a run never
interrupted (``tests/test_train_resume.py`` checks it with SIGKILL).

What a resume checks. ``--resume`` (``resume=True``) continues the run only as it began: a
changed recipe is refused, listing the changes (``new_recipe=True`` goes on), against the
recipe in ``config.json`` or, where that file is gone or damaged, the one ``last.pt`` records
(``train_config``, ``profile``). A folder with neither ``last.pt`` nor ``config.json`` is
refused (nothing to resume); one with ``config.json`` but no ``last.pt`` (stopped before the
first checkpoint) starts over, saying so. Every file is written atomically (``last.pt`` and
``best.pt`` by :func:`~transfer_lib.weights.checkpoint.save_atomic`, ``config.json``,
``summary.json`` and the trimmed ``metrics.jsonl`` by :mod:`transfer_lib.utils.atomic`;
``metrics.jsonl`` lines are appended), so a crash or a full disk (an ``OSError`` ENOSPC, let
through to the caller: the CLI prints it in one line) leaves the previous ``last.pt`` intact;
the temporaries a killed run left are removed when the next run starts in the folder
(:func:`transfer_lib.train.rundir.remove_stale_temporaries`).

Callbacks. ``train(..., callbacks=[...])`` calls your objects' ``on_step_end(run, step)``
after every optimiser step and ``on_train_end(run, model)`` at the end
(:mod:`~transfer_lib.train.callbacks`: :class:`Callback`, :class:`StepInfo`); they are not part
of the recipe. The tests use them to kill a run in the middle of an epoch, to make the loss
NaN, and to read every rank's weights under ``torchrun``.

Two input pipelines (``TrainConfig.fast``; on by default on CUDA, ``--fast`` / ``--no-fast``):

* ``per-image``: a torch ``DataLoader`` decoding each JPEG and running the per-image transforms
  (:func:`train_transform_for`) in ``workers`` processes;
* ``fast``: :func:`~transfer_lib.data.fast.build_cache` decodes the data set once into a uint8
  memmap (under ``cache_dir``, default ``<data root>/../cache/<root name>-<hash>``, or
  ``$TRANSFER_CACHE``), :class:`~transfer_lib.data.fast.FastLoader` gathers whole batches (on
  CUDA pinned, copied ``non_blocking``) and the batch is augmented on the training device:
  :class:`~transfer_lib.data.fast.BatchAugment` for ``augment="paper"``,
  :class:`LightBatchAugment` (crop + flip) for ``"light"``; evaluation runs through the cache
  too (``BatchAugment(train=False)``). The order of an epoch depends on (seed, epoch), each
  rank's shard on (rank, world_size) with the same number of batches on every rank, and the
  augmentation of a step on (seed, epoch, rank, step): resumption stays exact.

``config.json``, every ``metrics.jsonl`` line and ``summary.json`` record the ``pipeline`` that
ran; the metrics lines also hold images/s and the seconds spent waiting for data.

Speed on a GPU: autocast in bf16 where the GPU has bf16 tensor cores and in fp16 with a
GradScaler elsewhere (a T4; :func:`pick_amp_dtype`, ``--amp-dtype`` overrides), channels_last,
a fused optimiser, and optional ``torch.compile`` of the forward pass, loss and accuracy as one
graph (:func:`make_forward_loss`, ``fullgraph=True``; ``--compile-mode reduce-overhead`` adds
CUDA graphs); attention runs through ``scaled_dot_product_attention`` (flash kernels). The loss
and accuracy add up on the device and are read on the host every ``sync_every`` steps (25 on
CUDA, every step on a CPU), so the GPU never waits for Python in between. On a CPU the same code
runs in fp32. Under ``torchrun`` the model is wrapped in
DistributedDataParallel; only rank 0 evaluates and writes files.

The package, by role:

* :mod:`~transfer_lib.train.config`: :class:`TrainConfig` (a profile plus overrides) and its checks;
* :mod:`~transfer_lib.train.data`: the data root, both pipelines' loaders and samplers;
* :mod:`~transfer_lib.train.model`: the model and its initialisations, optimiser, mixed precision,
  the compiled step;
* :mod:`~transfer_lib.train.rng`: the random-number states a checkpoint carries;
* :mod:`~transfer_lib.train.run_files`: what the run directory holds and how a resume reads it;
* :mod:`~transfer_lib.train.callbacks`: :class:`Callback` and :class:`StepInfo`;
* :mod:`~transfer_lib.train.loop`: the run in phases (settings, run directory, parts, restore,
  then per epoch: train, evaluate, checkpoint);
* this module: :func:`train` and :func:`run_or_load`, and the names above re-exported.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from transfer_lib.train.callbacks import Callback, StepInfo, as_callbacks
from transfer_lib.train.config import (
    AMP_DTYPES,
    COMPILE_MODES,
    CUDA_GRAPH_MODES,
    INITIALISATION_SOURCES,
    PROFILE_OVERRIDES,
    TrainConfig,
    _as_config,
    missing_initialisations,
)
from transfer_lib.train.data import (
    CACHE_ENV,
    LIGHT_CROP_RATIO,
    LIGHT_CROP_SCALE,
    PIPELINES,
    EpochShardSampler,
    batch_augment_for,
    build_fast_loaders,
    build_loaders,
    cache_dir_for,
    resolve_data_root,
    sample_weights,
    train_transform_for,
)
from transfer_lib.train.distributed import cleanup, init_distributed
from transfer_lib.train.loop import _check_finite, _NoBar, _progress_bar, run_training
from transfer_lib.train.model import (
    _fused_kwargs,
    build_optimiser,
    build_training_model,
    compile_step,
    cpu_has_native_bf16,
    make_forward_loss,
    pick_amp_dtype,
)
from transfer_lib.train.rng import rng_state, seed_everything, set_rng_state
from transfer_lib.train.run_files import (
    _EXECUTION_FIELDS,
    BEST_SELECTED_ON,
    BEST_SELECTED_ON_TEST,
    BEST_SELECTION,
    _best_epoch,
    _read_summary,
    _recipe_differences,
    _saved_model_config,
)
from transfer_lib.utils.errors import CheckpointError, DataError, TransferError

_train = run_training  # the name tests and older code patch


def __getattr__(name: str):
    if name == "LightBatchAugment":
        from transfer_lib.train.data import _batch_augment_classes

        return _batch_augment_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(config: TrainConfig | dict | None = None, *, callbacks: Iterable | None = None,
          **kwargs) -> dict:
    """Train as ``config`` (or TrainConfig keyword arguments) says; return the summary dict.

    ``callbacks``: objects with ``on_step_end(run, step)`` and/or ``on_train_end(run, model)``
    (:mod:`transfer_lib.train.callbacks`), called on every rank.

    Raises TransferError (DataError, CheckpointError) for problems the user can fix, and when the
    loss stops being finite (the last good checkpoint is kept); an OSError of the disk (full:
    ENOSPC) as it came, the previous ``last.pt`` intact.
    """
    hooks = as_callbacks(callbacks)
    cfg = _as_config(config, kwargs)
    cfg.validate()
    ctx = init_distributed(cfg.device)
    if cfg.amp_dtype is None:  # recorded resolved in config.json
        cfg = dataclasses.replace(cfg, amp_dtype=pick_amp_dtype(ctx.device))
    try:
        from transfer_lib.train.rundir import RunLock

        # (without callbacks, _train is called as it always was: tests replace it by (cfg, ctx))
        args = (cfg, ctx, hooks) if hooks else (cfg, ctx)
        if not ctx.is_main:  # rank 0 holds the run directory's lock for every rank
            return _train(*args)
        with RunLock(cfg.run_dir()):
            return _train(*args)
    finally:
        cleanup(ctx)


def run_or_load(run_dir: str | os.PathLike, config: TrainConfig | dict | None = None,
                **kwargs) -> dict:
    """The summary of the complete run in ``run_dir``; train it first (resuming if it was
    interrupted) when it is not complete. The book calls this, so a rebuild never retrains."""
    run_dir = Path(run_dir)
    cfg = _as_config(config, kwargs)
    summary = _read_summary(run_dir)
    if summary is not None:
        stale = _recipe_differences(run_dir, cfg)
        if stale:
            raise TransferError(
                f"{run_dir} holds a complete run of another recipe ({'; '.join(stale)}). "
                f"Delete that folder to train the new recipe, or pass another run directory."
            )
        if not (run_dir / "best.pt").is_file():
            raise TransferError(
                f"{run_dir} holds a complete run (summary.json) but its best.pt is missing: "
                f"restore it from a copy, use {run_dir / 'last.pt'} (the final weights) instead, "
                f"or delete {run_dir} to train the run again."
            )
        return summary
    cfg = dataclasses.replace(cfg, out=str(run_dir), resume=(run_dir / "last.pt").is_file())
    return train(cfg)


__all__ = [
    "AMP_DTYPES", "BEST_SELECTED_ON", "BEST_SELECTED_ON_TEST", "BEST_SELECTION",
    "Callback", "StepInfo",
    "INITIALISATION_SOURCES", "missing_initialisations",
    "_best_epoch", "_saved_model_config", "CACHE_ENV", "COMPILE_MODES", "CUDA_GRAPH_MODES", "LIGHT_CROP_RATIO",
    "LIGHT_CROP_SCALE", "PIPELINES", "PROFILE_OVERRIDES", "CheckpointError",
    "DataError", "EpochShardSampler", "TrainConfig", "TransferError", "_EXECUTION_FIELDS",
    "_NoBar", "_check_finite", "_fused_kwargs", "_progress_bar", "_train", "batch_augment_for", "build_fast_loaders",
    "build_loaders", "build_optimiser", "build_training_model", "cache_dir_for", "compile_step",
    "cpu_has_native_bf16", "make_forward_loss", "pick_amp_dtype", "resolve_data_root",
    "rng_state", "run_or_load", "sample_weights", "seed_everything", "set_rng_state", "train",
    "train_transform_for",
]
