"""The training loop, in phases: settle the run's settings, check its directory, build the data
and the model, restore a resumed run, then per epoch train, evaluate and checkpoint.

Each evaluated epoch scores the validation split (``val``: the data set's own validation list,
or carved from train; see :data:`transfer_lib.data.SPLITS`), which chooses ``best.pt``, and the
test split, which is reported (``test_accuracy``) but chooses nothing.

:func:`run_training` is the whole run; each phase is a function short enough to read at once. The
order of the phases is part of the contract: seeding, model construction and the loaders draw
random numbers in this order, and an interrupted run resumed from ``last.pt`` must end with the
weights of one never interrupted.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_lib.models.local_cnn import regularisers
from transfer_lib.train import run_files
from transfer_lib.train.callbacks import StepInfo, call
from transfer_lib.train.config import AMP_DTYPES, CUDA_GRAPH_MODES, TrainConfig
from transfer_lib.train.data import (
    build_fast_loaders,
    build_loaders,
    resolve_data_root,
    train_transform_for,
)
from transfer_lib.train.distributed import (
    DistContext,
    all_gather_object,
    any_rank,
    barrier,
    broadcast_object,
)
from transfer_lib.train.model import (
    build_optimiser,
    build_training_model,
    compile_step,
    cpu_has_native_bf16,
    make_forward_loss,
    update,
)
from transfer_lib.train.profiles import Profile
from transfer_lib.train.rng import rng_state, seed_everything, set_rng_state
from transfer_lib.train.rundir import remove_stale_temporaries
from transfer_lib.utils.errors import CheckpointError, DataError, TransferError
from transfer_lib.weights.checkpoint import save_atomic


class _NoBar:
    """Stands in for a tqdm bar when progress is off or tqdm is not installed."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # an optional nicety: train without it
            return _NoBar()
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
    return _NoBar()


def _check_finite(ctx: DistContext, loss_sum: float, epoch: int, step: int, lr: float,
                  last_path: Path) -> None:
    """Stop with a clear error when the summed loss (read on the host) is NaN or inf on any rank."""
    bad = not math.isfinite(loss_sum)
    if not any_rank(ctx, bad):
        return
    kept = (f"the last good checkpoint is {last_path} (end of epoch {epoch})" if last_path.exists()
            else "no checkpoint was written (it failed in the first epoch)")
    raise TransferError(
        f"the loss is not finite (NaN or inf) in epoch {epoch + 1}, by step {step}, at lr {lr:.3g}; "
        f"training stopped and {kept}. Lower --lr, or try --amp-dtype bf16 / --no-amp, then "
        f"--resume or start a new --out."
    )


# ---------------------------------------------------------------------------------------------
# Phase 1: settings
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What every phase of one run reads: the config, the resolved recipe and the execution
    settings (device, mixed precision, pipeline), the run directory's paths and the callbacks
    (:mod:`transfer_lib.train.callbacks`, which receive this object as ``run``)."""

    cfg: TrainConfig
    prof: Profile
    ctx: DistContext
    run_dir: Path
    use_amp: bool
    amp_dtype: torch.dtype | None  # None when autocast is off
    channels_last: bool
    fast: bool
    callbacks: tuple = ()

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def on_cuda(self) -> bool:
        return self.ctx.device.type == "cuda"

    @property
    def pipeline(self) -> str:
        return "fast" if self.fast else "per-image"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"


def settle(cfg: TrainConfig, ctx: DistContext, callbacks: tuple = ()) -> Run:
    """The run's execution settings: autocast (on CUDA; on a CPU only where the profile asks and
    bf16 is native), the input pipeline, channels_last, and CUDA's autotuning flags."""
    prof = cfg.profile_obj()
    on_cuda, on_cpu = ctx.device.type == "cuda", ctx.device.type == "cpu"
    use_amp = (on_cuda or (on_cpu and prof.cpu_amp and cpu_has_native_bf16())) \
        if cfg.amp is None else cfg.amp
    fast = (on_cuda or (on_cpu and prof.cpu_fast)) if cfg.fast is None else bool(cfg.fast)
    if on_cpu:  # the pinned thread count where the kernels are pinned (transfer_lib.utils.kernels)
        from transfer_lib.utils.kernels import apply_threads

        apply_threads()
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # autotuned convolutions (fixed input size)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
    return Run(cfg=cfg, prof=prof, ctx=ctx, run_dir=cfg.run_dir(), use_amp=use_amp,
               amp_dtype=AMP_DTYPES[cfg.amp_dtype] if use_amp else None,
               channels_last=on_cuda if cfg.channels_last is None else cfg.channels_last,
               fast=fast, callbacks=tuple(callbacks))


# ---------------------------------------------------------------------------------------------
# Phase 2: the run directory
# ---------------------------------------------------------------------------------------------
def check_run_dir(run: Run) -> tuple[list[str], tuple[dict, str] | None]:
    """Rank 0 removes the temporaries a killed run left in the run directory, then refuses to
    overwrite a run, to resume where there is nothing to resume, or to resume under another
    recipe without --new-recipe. The recipe a resume is checked against is the one in
    ``config.json`` or, where that is gone or damaged, the one ``last.pt`` records. Returns the
    recipe changes a --new-recipe resume goes on under (recorded in config.json) and the saved
    recipe they were found against."""
    cfg, run_dir, last_path = run.cfg, run.run_dir, run.last_path
    changed: list[str] = []
    saved = None
    if run.ctx.is_main:
        remove_stale_temporaries(run_dir)
        if last_path.exists() and not cfg.resume:
            raise TransferError(
                f"{run_dir} already holds a run ({last_path} exists). Pass --resume to continue "
                f"it, or choose another --out.")
        config_path = run_dir / "config.json"
        if not last_path.exists():
            run_files.check_no_foreign_run_files(run_dir)
        if cfg.resume and not last_path.exists():
            if not config_path.exists():
                raise TransferError(
                    f"nothing to resume in {run_dir}: no last.pt; drop --resume to start a "
                    f"fresh run")
            # killed before the first checkpoint: nothing was learnt, so start over
            print(f"{run_dir} holds {config_path.name} but no last.pt (the run stopped before "
                  f"its first checkpoint): starting it over from epoch 1", file=sys.stderr)
        if cfg.resume and last_path.exists():
            saved = run_files.saved_recipe(run_dir)
            changed = run_files._recipe_differences(run_dir, cfg, saved) if saved else []
            if saved is None:
                print(f"warning: {run_dir} has no readable config.json and {last_path.name} "
                      f"records no recipe (written by an older version): the recipe of this "
                      f"resume cannot be checked against the run's", file=sys.stderr)
            if changed and not cfg.new_recipe:
                where = ("its config.json lists them" if saved[1] == "config.json" else
                         f"its config.json is missing or damaged; {last_path.name} records them")
                raise TransferError(
                    f"{run_dir} was trained with another recipe ({'; '.join(changed)}). --resume "
                    f"continues a run as it began: repeat its options ({where}), pass "
                    f"--new-recipe (new_recipe=True) to go on under the new recipe (config.json "
                    f"then keeps the old one under 'history'), or choose another --out.")
            if saved is not None and saved[1] == "config.json" and not cfg.new_recipe:
                run_files.check_last_is_the_runs(run_dir, last_path, cfg)
    barrier(run.ctx)
    return changed, saved


# ---------------------------------------------------------------------------------------------
# Phase 3: data and model
# ---------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """The model, its config and the loaders of one run."""

    model: torch.nn.Module
    mc: object  # TransFERConfig
    root: Path
    train_loader: object
    test_loader: object
    val_loader: object  # the validation split's, which chooses best.pt (None off rank 0, fast)
    val_source: str | None  # how the data set's val split was obtained (its ``val_source``)
    split_sizes: dict  # images of each split
    sampler: object  # the per-image pipeline's EpochShardSampler (None on the fast path)
    loader_gen: torch.Generator | None  # its DataLoader's generator
    train_augment: str
    steps_per_epoch: int


def build_parts(run: Run) -> Parts:
    """The data root, the model (seeded by ``cfg.seed`` alone: equal weights on every rank), the
    data sets and the pipeline's loaders, in that order."""
    from transfer_lib.data import build_dataset
    from transfer_lib.data.transforms import eval_transform

    cfg, prof, ctx, fast = run.cfg, run.prof, run.ctx, run.fast
    root = resolve_data_root(cfg, prof, ctx)
    seed_everything(cfg.seed)  # same initial weights on every rank
    probe = build_dataset(cfg.dataset, root, "train")
    model, mc = build_training_model(cfg, prof, list(probe.classes))
    train_set = build_dataset(cfg.dataset, root, "train",
                              transform=None if fast else train_transform_for(
                                  mc, prof.augment, prof.randaugment, prof.erasing))
    test_set = build_dataset(cfg.dataset, root, "test",
                             transform=None if fast else eval_transform(mc))
    val_set = build_dataset(cfg.dataset, root, "val",
                            transform=None if fast else eval_transform(mc))
    if len(train_set) == 0 or len(test_set) == 0 or len(val_set) == 0:
        raise DataError(f"{root}: {len(train_set)} training, {len(val_set)} validation and "
                        f"{len(test_set)} test images found")
    sampler = loader_gen = None
    if fast:
        train_loader, test_loader, val_loader = build_fast_loaders(
            cfg, prof, mc, root, ctx, train_set, test_set, val_set)
        train_augment = repr(train_loader.augment)
    else:
        train_loader, sampler, loader_gen, test_loader, val_loader = build_loaders(
            cfg, prof, mc, root, ctx, train_set, test_set, val_set)
        train_augment = repr(train_set.transform)
    steps = len(train_loader) if cfg.max_steps is None else min(len(train_loader), cfg.max_steps)
    model = model.to(run.device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Parts(model=model, mc=mc, root=root, train_loader=train_loader,
                 test_loader=test_loader, val_loader=val_loader,
                 val_source=getattr(val_set, "val_source", None),
                 split_sizes={"train": len(train_set), "val": len(val_set),
                              "test": len(test_set)},
                 sampler=sampler, loader_gen=loader_gen,
                 train_augment=train_augment, steps_per_epoch=steps)


# ---------------------------------------------------------------------------------------------
# Phase 4: a fresh start or a resume
# ---------------------------------------------------------------------------------------------
@dataclass
class Progress:
    """Where the run stands: the next epoch, the step count, the best validation accuracy so far
    (best.pt's; ``last.pt`` keeps it as ``best_accuracy``) and the wall seconds of earlier
    sessions (a resumed run adds to them)."""

    start_epoch: int = 0
    global_step: int = 0
    best_acc: float = -1.0
    wall_before: float = 0.0


def restore(run: Run, parts: Parts, optimiser, scaler) -> Progress:
    """A resumed run's model, optimiser, scaler and RNG states from ``last.pt``; a fresh run's
    per-rank random streams (augmentation and MAD/MSAD draws)."""
    cfg, ctx = run.cfg, run.ctx
    if not (cfg.resume and run.last_path.exists()):
        seed_everything(cfg.seed * 7919 + ctx.rank)  # the weights are already equal
        return Progress()
    ckpt = run_files._load_last(run.last_path, run.best_path, run.device)
    run_files.check_resume_state(ckpt, run.last_path)
    if run_files._saved_model_config(ckpt.get("config")) != parts.mc.to_dict():
        raise CheckpointError(f"{run.last_path} was trained as another model; resume with the "
                              f"same --variant/--size/model options, or choose another --out")
    parts.model.load_state_dict(ckpt["model"])
    optimiser.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    progress = Progress(start_epoch=int(ckpt["epoch"]), global_step=int(ckpt["global_step"]),
                        best_acc=float(ckpt["best_accuracy"]),
                        wall_before=float(ckpt["wall_seconds"]))
    if ckpt.get("best_selected_on") != run_files.BEST_SELECTED_ON:
        # written before best.pt was chosen on the validation split: its best_accuracy is a
        # test accuracy, which no validation accuracy may be compared with
        progress.best_acc = -1.0
        if ctx.is_main:
            print(f"warning: {run.last_path} was written before best.pt was chosen on the "
                  f"validation split: the next evaluated epoch replaces {run.best_path.name} "
                  f"and the choice goes on by validation accuracy", file=sys.stderr)
    before = ckpt.get("pipeline", "per-image")
    if before != run.pipeline and ctx.is_main:
        print(f"warning: {run.last_path} was trained with the {before} input pipeline and "
              f"resumes with the {run.pipeline} one (--{'no-' if before == 'per-image' else ''}"
              f"fast keeps it): the batches differ from an uninterrupted run", file=sys.stderr)
    rngs = ckpt["rng"]
    set_rng_state(rngs[ctx.rank] if ctx.rank < len(rngs) else rngs[0])
    if ctx.rank >= len(rngs):  # resumed on more processes than it was saved from
        seed_everything(cfg.seed * 7919 + ctx.rank + 1000 * progress.start_epoch)
    return progress


def record_start(run: Run, parts: Parts, changed: list[str], start_epoch: int,
                 saved: tuple[dict, str] | None = None) -> None:
    """Rank 0 writes ``config.json`` and trims ``metrics.jsonl`` to the epochs kept."""
    if not run.ctx.is_main:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    history = run_files._recipe_history(run.run_dir, changed, start_epoch, saved) \
        if run.cfg.resume else []
    run_files.write_config(run.run_dir, {
        "train": run.cfg.to_dict(), "profile": run.prof.to_dict(), "model": parts.mc.to_dict(),
        "data_root": str(parts.root), "val_source": parts.val_source,
        "split_sizes": parts.split_sizes, "world_size": run.ctx.world_size,
        "device": str(run.device), "pipeline": run.pipeline,
        "train_augment": parts.train_augment,
        "cache": str(parts.train_loader.cache.path) if run.fast else None,
        "provenance": run_files.provenance(),
        **({"history": history} if history else {})})
    run_files.keep_metrics_until(run.run_dir, start_epoch)


# ---------------------------------------------------------------------------------------------
# Phase 5: the step
# ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    """The compiled (or eager) forward + loss, and how often the host reads the loss."""

    forward_loss: object
    cuda_graphs: bool
    sync_every: int
    postfix_every: int


def make_step(run: Run, model: torch.nn.Module) -> Step:
    """Forward, loss and accuracy as one function (DDP-wrapped under torchrun), compiled when
    asked. The host reads the loss every ``sync_every`` steps; in between the GPU runs ahead."""
    cfg, ctx = run.cfg, run.ctx
    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[run.device.index] if run.on_cuda else None)
    forward_loss = make_forward_loss(net, run.prof.label_smoothing, run.device.type,
                                     run.amp_dtype)
    compile_mode = cfg.compile_mode or "default"
    if cfg.compile:
        forward_loss = compile_step(forward_loss, compile_mode, fullgraph=not ctx.distributed)
    sync_every = cfg.sync_every or (25 if run.on_cuda else 1)
    return Step(forward_loss=forward_loss,
                cuda_graphs=cfg.compile and run.on_cuda and compile_mode in CUDA_GRAPH_MODES,
                sync_every=sync_every, postfix_every=sync_every if sync_every > 1 else 10)


# ---------------------------------------------------------------------------------------------
# Phase 6: one epoch of training
# ---------------------------------------------------------------------------------------------
def train_epoch(run: Run, parts: Parts, step: Step, optimiser, scaler, progress: Progress,
                epoch: int) -> dict:
    """Train one epoch; return its metrics line (loss, lr, train accuracy, speed)."""
    cfg, prof, ctx, device = run.cfg, run.prof, run.ctx, run.device
    model, steps_per_epoch = parts.model, parts.steps_per_epoch
    if run.fast:
        parts.train_loader.set_epoch(epoch)  # order by (seed, epoch); augmentation by step too
    else:
        parts.sampler.set_epoch(epoch)
        parts.loader_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 131 + ctx.rank)
    model.train()
    if epoch < prof.regularise_from_epoch:  # MAD / map regulariser / MSAD not yet dropping
        for m in regularisers(model):
            m.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    lr = prof.lr_at(epoch)
    t0 = time.perf_counter()
    data_wait = 0.0
    running_loss = 0.0
    bar = _progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{prof.epochs}",
                        ctx.is_main and cfg.progress)
    batches = iter(itertools.islice(parts.train_loader, steps_per_epoch))
    for i in range(steps_per_epoch):
        t_wait = time.perf_counter()
        try:
            images, labels = next(batches)
        except StopIteration:
            break
        data_wait += time.perf_counter() - t_wait
        lr = prof.lr_at(epoch + i / steps_per_epoch)
        for group in optimiser.param_groups:
            group["lr"] = lr
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if step.cuda_graphs:  # a new iteration: the graphs' previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        loss, n_correct = step.forward_loss(images, labels)
        update(optimiser, loss, scaler, prof.grad_clip, model.parameters())
        progress.global_step += 1
        loss_sum += loss.detach() * labels.shape[0]  # on the device: no sync
        correct += n_correct
        seen += labels.shape[0]
        last = i + 1 == steps_per_epoch
        synced = (i + 1) % step.sync_every == 0 or last
        if synced:
            running_loss = float(loss_sum)  # the step's only host sync, every k steps
            _check_finite(ctx, running_loss, epoch, progress.global_step, lr, run.last_path)
        if ctx.is_main and cfg.progress and ((i + 1) % step.postfix_every == 0 or last):
            rate = seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{running_loss / max(seen, 1):.3f}", img_s=f"{rate:.0f}",
                            lr=f"{lr:.2e}")
        bar.update(1)
        if run.callbacks:
            call(run.callbacks, "on_step_end", run, StepInfo(
                epoch=epoch + 1, step=i + 1, steps_per_epoch=steps_per_epoch,
                global_step=progress.global_step, lr=lr,
                loss=running_loss / max(seen, 1) if synced else None, model=model))
    bar.close()
    del batches  # ends the loader's producer thread / worker iteration
    if ctx.distributed:  # BatchNorm statistics are per rank: take rank 0's everywhere
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)
    if run.on_cuda:
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t0
    _check_finite(ctx, float(loss_sum), epoch, progress.global_step, lr, run.last_path)
    totals = torch.stack([loss_sum.float(), correct.float(),
                          torch.tensor(float(seen), device=device)])
    if ctx.distributed:
        torch.distributed.all_reduce(totals)
    n_seen = max(float(totals[2]), 1.0)
    return {
        "epoch": epoch + 1, "loss": float(totals[0]) / n_seen, "lr": lr,
        "train_accuracy": float(totals[1]) / n_seen,
        "images_per_second": n_seen / max(train_seconds, 1e-9),
        "train_seconds": train_seconds, "data_wait_seconds": data_wait,
        "pipeline": run.pipeline,
    }


# ---------------------------------------------------------------------------------------------
# Phase 7: evaluate and checkpoint
# ---------------------------------------------------------------------------------------------
def evaluate_epoch(run: Run, parts: Parts, epoch_log: dict) -> dict | None:
    """Rank 0 evaluates every ``eval_every`` epochs and after the last; adds the test accuracy
    and mean class accuracy (``test_accuracy``, ``mean_class_accuracy``) and the validation
    split's (``val_accuracy``, ``val_mean_class_accuracy``) to ``epoch_log``. Returns the test
    metrics, or None when not evaluated."""
    epoch = epoch_log["epoch"]
    if not run.ctx.is_main or not (epoch % run.prof.eval_every == 0 or epoch == run.prof.epochs):
        return None
    from transfer_lib.evaluate import evaluate

    def score(loader) -> dict:
        return evaluate(parts.model, loader, device=run.device, amp_dtype=run.amp_dtype,
                        channels_last=run.channels_last)

    metrics = score(parts.test_loader)
    val = score(parts.val_loader)
    epoch_log.update(test_accuracy=metrics["accuracy"],
                     mean_class_accuracy=metrics["mean_class_accuracy"],
                     val_accuracy=val["accuracy"],
                     val_mean_class_accuracy=val["mean_class_accuracy"])
    return metrics


def _save(run: Run, obj: dict, path: Path) -> None:
    """``save_atomic``; an OSError (a full disk: ENOSPC, EDQUOT) goes through unwrapped, so that
    the CLI prints it as one ``error:`` line, with the file's name added where Python gave none.
    The file it would have replaced is intact and its temporary is gone (save_atomic)."""
    try:
        save_atomic(obj, path)
    except OSError as err:
        if err.filename is None:  # a full disk shows at flush or fsync, where no file is named
            err.filename = str(path)
        raise


def save_epoch(run: Run, parts: Parts, optimiser, scaler, progress: Progress, epoch_log: dict,
               improved: bool, wall: float) -> None:
    """Every rank's RNG states gathered; rank 0 writes ``best.pt`` (when the validation accuracy
    improved: it records that and the epoch's test figures) and ``last.pt`` atomically, then
    appends the epoch's metrics line."""
    rngs = all_gather_object(run.ctx, rng_state())
    if not run.ctx.is_main:
        return
    epoch = epoch_log["epoch"]
    state = {
        "model": parts.model.state_dict(), "config": parts.mc.to_dict(), "epoch": epoch,
        "global_step": progress.global_step, "optimizer": optimiser.state_dict(),
        "scaler": scaler.state_dict(), "rng": rngs, "best_accuracy": progress.best_acc,
        "best_selected_on": run_files.BEST_SELECTED_ON, "wall_seconds": wall, "train_config": run_files._plain(run.cfg.to_dict()),
        "profile": run_files._plain(run.prof.to_dict()), "pipeline": run.pipeline,
    }
    # best.pt first: a failure between the two (a full disk) leaves last.pt at the epoch
    # before, and the resume redoes this epoch, writing the same best.pt again
    if improved:
        _save(run, {"model": state["model"], "config": state["config"], "epoch": epoch,
                    "accuracy": epoch_log["test_accuracy"],
                    "mean_class_accuracy": epoch_log["mean_class_accuracy"],
                    "val_accuracy": epoch_log["val_accuracy"],
                    "val_mean_class_accuracy": epoch_log["val_mean_class_accuracy"],
                    "selected_on": run_files.BEST_SELECTED_ON,
                    "val_source": parts.val_source}, run.best_path)
    _save(run, state, run.last_path)
    epoch_log["wall_seconds"] = wall
    run_files.append_metrics(run.run_dir, epoch_log)
    if run.cfg.progress:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in epoch_log.items()
                          if isinstance(v, float) and k != "wall_seconds")
        print(f"epoch {epoch}/{run.prof.epochs}: {shown}", flush=True)


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def run_training(cfg: TrainConfig, ctx: DistContext, callbacks: tuple = ()) -> dict:
    """One run from its config to its summary (``train`` holds the lock and the process group);
    ``callbacks`` as :func:`~transfer_lib.train.train` takes them."""
    run = settle(cfg, ctx, callbacks)
    changed, saved = check_run_dir(run)
    parts = build_parts(run)
    optimiser = build_optimiser(parts.model, run.prof)
    scaler = torch.amp.GradScaler(run.device.type,
                                  enabled=run.use_amp and cfg.amp_dtype == "fp16")
    progress = restore(run, parts, optimiser, scaler)
    record_start(run, parts, changed, progress.start_epoch, saved)
    step = make_step(run, parts.model)

    started = time.perf_counter()
    last_metrics: dict | None = None
    epoch_log: dict = {}
    for epoch in range(progress.start_epoch, run.prof.epochs):
        epoch_log = train_epoch(run, parts, step, optimiser, scaler, progress, epoch)
        metrics = evaluate_epoch(run, parts, epoch_log)
        last_metrics = metrics if metrics is not None else last_metrics
        improved = ctx.is_main and metrics is not None and \
            epoch_log["val_accuracy"] > progress.best_acc  # chosen on val, never on test
        if improved:
            progress.best_acc = epoch_log["val_accuracy"]
        save_epoch(run, parts, optimiser, scaler, progress, epoch_log, improved,
                   progress.wall_before + time.perf_counter() - started)
        barrier(ctx)

    summary = None
    if ctx.is_main:
        summary = run_files._write_summary(
            cfg, run.prof, parts.mc, ctx, run.run_dir, parts.model, parts.test_loader,
            last_metrics, progress.best_acc, progress.wall_before + time.perf_counter() - started,
            run.amp_dtype, run.channels_last, epoch_log, run.pipeline,
            val_source=parts.val_source, split_sizes=parts.split_sizes)
    call(run.callbacks, "on_train_end", run, parts.model)
    return broadcast_object(ctx, summary)


__all__ = ["run_training", "settle", "check_run_dir", "build_parts", "restore", "record_start",
           "make_step", "train_epoch", "evaluate_epoch", "save_epoch", "Run", "Parts", "Progress",
           "Step"]
