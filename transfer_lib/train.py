"""The trainer: one function, :func:`train`, for the CLI, ``ablate`` and the book (chapter 7).

    >>> from transfer_lib.train import train, run_or_load
    >>> summary = train(profile="smoke", out="runs/smoke")           # kwargs of TrainConfig
    >>> summary = run_or_load("runs/cpu-transfer", profile="cpu")    # trains only if not done yet

A run directory holds ``config.json`` (everything the run was started with, resolved),
``metrics.jsonl`` (one line per epoch: loss, lr, train and test accuracy, mean class accuracy,
images/s), ``last.pt`` (model, optimiser, scaler, RNG states and epoch, written atomically after
every epoch), ``best.pt`` (the weights with the best test accuracy so far) and, once the run is
complete, ``summary.json``.

Exact resumption. The learning rate is a pure function of the (fractional) epoch
(:meth:`Profile.lr_at`), the shuffling of each epoch is drawn from a generator seeded by
(seed, epoch, rank), and ``last.pt`` holds the python, numpy, torch CPU and CUDA RNG states of
every rank. So a run killed at any moment and resumed with ``--resume`` restarts from the end of
the last finished epoch and, on a CPU, ends with bitwise the same weights as a run never
interrupted (``tests/test_train_resume.py`` checks it with SIGKILL).

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
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from transfer_lib.checkpoint import load_checkpoint, save_atomic
from transfer_lib.distributed import (
    DistContext,
    all_gather_object,
    any_rank,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from transfer_lib.errors import CheckpointError, DataError, TransferError
from transfer_lib.profiles import Profile, get_profile

DATASETS: tuple[str, ...] = ("rafdb", "ferplus", "affectnet7", "affectnet8")
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: torch.compile modes; the two that capture CUDA graphs need static shapes (drop_last batches).
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune",
                                  "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES: tuple[str, ...] = ("reduce-overhead", "max-autotune")
#: A test hook, e.g. ``TRANSFER_TEST_HOOK=kill_in_epoch:2`` (SIGKILL this process after the
#: first step of epoch 2) or ``nan_at_step:7`` (make the loss NaN at global step 7).
TEST_HOOK_ENV = "TRANSFER_TEST_HOOK"

#: Profile fields a TrainConfig may override (None: take the profile's).
PROFILE_OVERRIDES: tuple[str, ...] = (
    "variant", "size", "epochs", "batch_size", "optimiser", "lr", "momentum", "weight_decay",
    "input_size", "schedule", "milestones", "gamma", "warmup_epochs", "label_smoothing", "augment",
    "balance", "grad_clip", "eval_every", "workers", "randaugment", "erasing", "proj_init",
)


@dataclass
class TrainConfig:
    """Everything a training run needs. Unset (None) recipe fields come from ``profile``."""

    profile: str | Profile = "cpu"  # a name in PROFILES, or a Profile of your own
    data: str | None = None  # data set root; None: the profile's synthetic set under data/
    dataset: str = "rafdb"
    out: str | None = None  # run directory; None: runs/{profile}-{variant}-seed{seed}
    # recipe overrides (None: the profile's value)
    variant: str | None = None
    size: str | None = None
    input_size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimiser: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    milestones: tuple[int, ...] | None = None
    gamma: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    augment: str | None = None
    randaugment: str | None = None  # paddle | torchvision (with augment="paper")
    erasing: str | None = None  # authors | config | off (with augment="paper")
    proj_init: str | None = None  # paddle | torch: the projection's initialisation
    balance: str | None = None
    grad_clip: float | None = None
    eval_every: int | None = None
    workers: int | None = None
    # model settings beyond the variant (TransFERConfig fields)
    msad_mode: str | None = None
    map_regulariser: str | None = None
    model_overrides: dict = field(default_factory=dict)
    # initialisations (the paper's): face.evoLVe IR-50 and timm ViT-Small files
    ir50: str | None = None
    vit: str | None = None
    from_scratch: bool = False  # let the paper profile train without them (refused otherwise)
    # run control
    seed: int = 0
    resume: bool = False
    new_recipe: bool = False  # resume under a changed recipe (config.json keeps the old one)
    max_steps: int | None = None  # at most this many batches per epoch (tests, quick checks)
    device: str | None = None  # None: cuda if available, else cpu
    amp: bool | None = None  # None: on for CUDA, off on CPU
    amp_dtype: str | None = None  # bf16 | fp16 (adds a GradScaler); None: pick_amp_dtype(device)
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    compile_mode: str | None = None  # one of COMPILE_MODES; None: "default"
    sync_every: int | None = None  # read loss/accuracy on the host every k steps; None: 25 CUDA, 1 CPU
    fast: bool | None = None  # the uint8 cache + batched augmentation; None: on for CUDA if present
    cache_dir: str | None = None  # the fast path's cache; None: $TRANSFER_CACHE or <data>/../cache
    progress: bool = True

    def profile_obj(self) -> Profile:
        """The profile with this config's overrides applied."""
        base = get_profile(self.profile)
        return base.replace(**{k: getattr(self, k) for k in PROFILE_OVERRIDES})

    def run_dir(self) -> Path:
        p = self.profile_obj()
        return Path(self.out or f"runs/{p.name}-{p.variant}-seed{self.seed}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        from transfer_lib.models.config import MAP_REGULARISERS, MSAD_MODES, SIZES, VARIANTS
        from transfer_lib.profiles import PROFILE_NAMES

        def check(name, value, allowed):
            if value is not None and value not in allowed:
                raise TransferError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")

        if not isinstance(self.profile, Profile):
            check("profile", self.profile, PROFILE_NAMES)
        check("dataset", self.dataset, DATASETS)
        check("variant", self.variant, VARIANTS)
        check("size", self.size, SIZES)
        check("msad_mode", self.msad_mode, MSAD_MODES)
        check("map_regulariser", self.map_regulariser, MAP_REGULARISERS)
        check("amp_dtype", self.amp_dtype, tuple(AMP_DTYPES))
        check("compile_mode", self.compile_mode, COMPILE_MODES)
        for name in ("epochs", "batch_size", "eval_every", "max_steps", "sync_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TransferError(f"{name}={v} must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise TransferError(f"workers={self.workers} must be 0 (load in this process) or more")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise TransferError(f"lr={self.lr} must be a positive, finite number (e.g. 1e-3)")
        for name in ("weight_decay", "momentum", "gamma", "warmup_epochs", "label_smoothing",
                     "grad_clip"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise TransferError(f"{name}={v} must be a finite number, 0 or more")
        try:
            prof = self.profile_obj()
        except ValueError as err:
            raise TransferError(str(err)) from None
        missing = missing_initialisations(self, prof)
        if missing:
            raise TransferError(
                "the paper profile fine-tunes the authors' initialisations, and its SGD at 1e-4 "
                "does not learn from random weights; missing: "
                + "; ".join(f"{flag} FILE ({where})" for flag, where in missing)
                + ". Pass " + " and ".join(flag for flag, _ in missing) + " (TrainConfig "
                + ", ".join(f"{flag[2:]}=" for flag, _ in missing) + "), or --from-scratch "
                "(from_scratch=True) to train from random weights anyway.")


#: Where the paper's initialisations come from (the messages of missing_initialisations).
INITIALISATION_SOURCES: dict[str, str] = {
    "--ir50": "face.evoLVe's IR-50 trained on MS-Celeb-1M, backbone_ir50_ms1m_epoch120.pth, "
              "from the model zoo of github.com/ZhaoJ9014/face.evoLVe",
    "--vit": "timm's ViT-Small, vit_small_p16_224-15ec54c9.pth, from the v0.1-weights release "
             "of github.com/huggingface/pytorch-image-models",
}


def missing_initialisations(cfg: TrainConfig, prof: Profile) -> list[tuple[str, str]]:
    """The (flag, source) of each paper initialisation a ``paper``-profile run lacks: ``--ir50``
    always, ``--vit`` for a variant with a transformer (all but ``ir50``). Empty for other
    profiles and with ``from_scratch``."""
    if prof.name != "paper" or cfg.from_scratch:
        return []
    wanted = [("--ir50", cfg.ir50)] + ([("--vit", cfg.vit)] if prof.variant != "ir50" else [])
    return [(flag, INITIALISATION_SOURCES[flag]) for flag, path in wanted if path is None]


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
class EpochShardSampler(Sampler):
    """Shuffled indices for ``rank`` of ``world_size``, a pure function of (seed, epoch).

    Every rank draws the same permutation (padded to a multiple of ``world_size``) and takes every
    ``world_size``-th index, so ranks see disjoint shards of equal length. With ``weights`` (one
    per sample) the epoch is ``n`` draws with replacement in proportion to them (class-balanced
    sampling: weight 1 / class count), again a pure function of (seed, epoch).
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 weights: torch.Tensor | None = None) -> None:
        self.n, self.rank, self.world_size, self.seed = n, rank, world_size, seed
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        else:
            perm = torch.randperm(self.n, generator=g).tolist()
        total = len(self) * self.world_size
        perm += perm[: total - self.n]
        return iter(perm[self.rank::self.world_size])

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)


#: RandomResizedCrop's ranges of the ``light`` augmentation (per-image and batched alike).
LIGHT_CROP_SCALE: tuple[float, float] = (0.7, 1.0)
LIGHT_CROP_RATIO: tuple[float, float] = (0.9, 1.1)
PIPELINES: tuple[str, ...] = ("fast", "per-image")
CACHE_ENV = "TRANSFER_CACHE"


def _light_train_transform(config):
    """Crop and flip only: what a from-scratch model on the synthetic set learns from fastest."""
    from torchvision import transforms as T

    s = config.input_size
    return T.Compose([
        T.RandomResizedCrop(s, scale=LIGHT_CROP_SCALE, ratio=LIGHT_CROP_RATIO),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(config.mean, config.std),
    ])


def train_transform_for(config, augment: str, randaugment: str = "paddle", erasing: str = "authors"):
    """The per-image train transform of ``augment`` (``randaugment`` and ``erasing``: see
    :func:`transfer_lib.data.transforms.train_transform`; ``light`` ignores them)."""
    from transfer_lib.data import transforms

    if augment == "paper":
        return transforms.train_transform(config, randaugment, erasing)
    light = getattr(transforms, "light_train_transform", None)
    return light(config) if light is not None else _light_train_transform(config)


@functools.cache
def _batch_augment_classes():
    """(BatchAugment, LightBatchAugment), imported on first use (torchvision is slow to import
    and the CLI imports this module to build its parser)."""
    from transfer_lib.data.fast import BatchAugment, resized_crops, sample_crops

    class LightBatchAugment(BatchAugment):
        """The ``light`` train augmentation on a uint8 batch: :func:`_light_train_transform`
        (RandomResizedCrop at :data:`LIGHT_CROP_SCALE` / :data:`LIGHT_CROP_RATIO`, horizontal
        flip, normalise), each image within one grey level of the per-image transform for the
        same crop and flip. Parameters come from ``generator`` (drawn on the CPU), so a batch is
        reproducible on any device; ``last_params`` holds ``crops`` and ``flips``."""

        def __init__(self, config, scale=LIGHT_CROP_SCALE, ratio=LIGHT_CROP_RATIO):
            super().__init__(config, train=True)
            self.scale, self.ratio = tuple(scale), tuple(ratio)

        def __repr__(self) -> str:
            return f"LightBatchAugment(size={self.size}, scale={self.scale}, ratio={self.ratio})"

        def _train(self, images: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
            n, _, h, w = images.shape
            crops = sample_crops(n, h, w, scale=self.scale, ratio=self.ratio, generator=g)
            flips = torch.rand(n, generator=g) < 0.5
            self.last_params = dict(crops=crops, flips=flips)
            x = resized_crops(images, crops, flips, self.size).round_()  # params on the CPU
            return self.normalise(x)  # whole grey levels, as the uint8 PIL crop gives

    return BatchAugment, LightBatchAugment


def __getattr__(name: str):
    if name == "LightBatchAugment":
        return _batch_augment_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batch_augment_for(config, augment: str, train: bool = True, randaugment: str = "paddle",
                      erasing: str = "authors"):
    """The fast path's counterpart of :func:`train_transform_for` (``train=False``: of the eval
    transform): ``BatchAugment`` for ``"paper"``, ``LightBatchAugment`` for ``"light"``."""
    batch_augment, light = _batch_augment_classes()
    if not train:
        return batch_augment(config, train=False)
    if augment == "paper":
        return batch_augment(config, train=True, randaugment=randaugment, erasing=erasing)
    return light(config)


def resolve_data_root(cfg: TrainConfig, prof: Profile, ctx: DistContext) -> Path:
    """``cfg.data``, checked; or the profile's synthetic set, generated on first use by rank 0."""
    if cfg.data is not None:
        root = Path(cfg.data)
        if not root.exists():
            from transfer_lib.data.synth import interrupted_note

            raise DataError(
                f"data set folder not found: {root}. Expected the root of {cfg.dataset} in its "
                f"distributed layout (for RAF-DB: {root}/basic/EmoLabel/list_patition_label.txt "
                f"and {root}/basic/Image/aligned/); leave --data out to use the synthetic set."
                + interrupted_note(root)
            )
        return root
    if cfg.dataset != "rafdb":
        raise DataError(f"the synthetic set is in RAF-DB's layout: with --dataset {cfg.dataset} "
                        f"give --data DIR")
    from transfer_lib.data.synth import ensure_synthetic

    root = None
    if ctx.is_main:
        root = str(ensure_synthetic(prof.synthetic_root, train=prof.synthetic_train,
                                    test=prof.synthetic_test))
    return Path(broadcast_object(ctx, root))


def sample_weights(train_set, prof: Profile) -> torch.Tensor | None:
    """Per-image sampling weights for ``prof.balance == "sampler"``: 1 / (its class's count), so
    every class is drawn equally often in expectation; None for ``"none"``."""
    if prof.balance == "none":
        return None
    targets = torch.as_tensor(list(train_set.targets), dtype=torch.long)
    counts = torch.bincount(targets).double()
    return (1.0 / counts)[targets]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX): bf16 autocast pays only
    there; elsewhere it is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build_loaders(cfg: TrainConfig, prof: Profile, model_config, root: Path, ctx: DistContext,
                  train_set, test_set):
    """The per-image torch DataLoaders: (train loader, its sampler, its generator, test loader)."""
    workers = prof.workers
    sampler = EpochShardSampler(len(train_set), ctx.rank, ctx.world_size, cfg.seed,
                                weights=sample_weights(train_set, prof))
    generator = torch.Generator()
    pin = ctx.device.type == "cuda"
    per_rank_batch = max(1, prof.batch_size // ctx.world_size) if ctx.distributed else prof.batch_size
    drop_last = len(sampler) >= per_rank_batch * 2  # BatchNorm needs more than one image
    train_loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler,
                              num_workers=workers, pin_memory=pin, drop_last=drop_last,
                              generator=generator, persistent_workers=workers > 0)
    test_loader = DataLoader(test_set, batch_size=max(64, prof.batch_size), shuffle=False,
                             num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)
    return train_loader, sampler, generator, test_loader


def cache_dir_for(cfg: TrainConfig, root: Path) -> Path:
    """Where the fast path caches ``root``: under ``cfg.cache_dir``, ``$TRANSFER_CACHE`` or
    ``root/../cache`` (``data/cache`` when that is read-only), a folder of its own per data root
    (build_cache replaces the caches of the same data set and split in its folder, so two
    synthetic sets must not share one)."""
    resolved = Path(root).resolve()
    base = cfg.cache_dir or os.environ.get(CACHE_ENV)
    if not base:
        base = resolved.parent / "cache" if os.access(resolved.parent, os.W_OK) else "data/cache"
    return Path(base) / f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def build_fast_loaders(cfg: TrainConfig, prof: Profile, model_config, root: Path,
                       ctx: DistContext, train_set, test_set):
    """The fast path's loaders: (train FastLoader, test FastLoader or None off rank 0).

    Rank 0 decodes the caches (once per source) while the others wait, then every rank maps
    them. The train loader shuffles by (seed, epoch) (``set_epoch``), gives rank ``r`` of ``w``
    its own shard with the same number of batches on every rank, and augments step ``t`` with a
    generator seeded by (seed, epoch, rank, t). On the CPU it augments in this thread
    (``workers=1``): FastLoader's worker threads would set the process-wide intra-op thread
    count to one under the training step, at a moment that varies from run to run.
    """
    from transfer_lib.data.fast import FastLoader, build_cache

    cache_dir = cache_dir_for(cfg, root)
    train_cache = test_cache = None
    for turn in ("main", "others"):
        if ctx.is_main == (turn == "main"):
            train_cache = build_cache(train_set, cache_dir)
            if ctx.is_main:
                test_cache = build_cache(test_set, cache_dir)
        barrier(ctx)
    per_rank_batch = max(1, prof.batch_size // ctx.world_size) if ctx.distributed else prof.batch_size
    per_rank = math.ceil(len(train_cache) / ctx.world_size)
    drop_last = per_rank >= per_rank_batch * 2  # BatchNorm needs more than one image
    workers = 1 if ctx.device.type == "cpu" else None
    augment = batch_augment_for(model_config, prof.augment, randaugment=prof.randaugment,
                                erasing=prof.erasing)
    train_loader = FastLoader(train_cache, per_rank_batch, shuffle=True, drop_last=drop_last,
                              device=ctx.device, augment=augment,
                              seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size,
                              workers=workers, sample_weights=sample_weights(train_set, prof))
    test_loader = None
    if test_cache is not None:
        test_loader = FastLoader(test_cache, max(64, prof.batch_size), shuffle=False,
                                 drop_last=False, device=ctx.device,
                                 augment=batch_augment_for(model_config, prof.augment, train=False),
                                 seed=cfg.seed, workers=workers)
    return train_loader, test_loader


# ---------------------------------------------------------------------------------------------
# RNG states (plain types and tensors only, so checkpoints load with weights_only=True)
# ---------------------------------------------------------------------------------------------
def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Model and optimiser
# ---------------------------------------------------------------------------------------------
def build_training_model(cfg: TrainConfig, prof: Profile, class_names: list[str]):
    """The model of ``prof.variant`` at ``prof.size`` for these classes, with the paper's
    initialisations loaded when ``cfg.ir50`` / ``cfg.vit`` are given."""
    from transfer_lib.models import make_config, model_from_config

    overrides = dict(cfg.model_overrides)
    if prof.input_size and "input_size" not in overrides:
        overrides["input_size"] = prof.input_size
    if cfg.msad_mode:
        overrides["msad_mode"] = cfg.msad_mode
    if cfg.map_regulariser:
        overrides["map_regulariser"] = cfg.map_regulariser
    overrides.setdefault("proj_init", prof.proj_init)
    try:
        mc = make_config(prof.variant, prof.size, num_classes=len(class_names),
                         class_names=tuple(class_names), **overrides)
    except (TypeError, ValueError) as err:
        raise TransferError(f"model settings rejected: {err}") from None
    model = model_from_config(mc)
    for path, what in ((cfg.ir50, "ir50"), (cfg.vit, "vit")):
        if path is None:
            continue
        if not Path(path).is_file():
            raise CheckpointError(f"--{what} file not found: {path}")
        from transfer_lib import pretrained  # lazily: written by another module

        if what == "ir50":
            pretrained.load_ir50_stem(model.stem, path)
        else:
            if not hasattr(model, "transformer"):
                raise TransferError(f"--vit needs a variant with a transformer, not {prof.variant}")
            pretrained.load_vit_small(model.transformer, path)
    return model, mc


def build_optimiser(model: torch.nn.Module, prof: Profile) -> torch.optim.Optimizer:
    """SGD (the paper: momentum, weight decay on every parameter) or AdamW (no decay on norms,
    biases, position embedding and cls token). On CUDA the fused implementation (one kernel for
    every parameter's update, and no host sync under a GradScaler); on a CPU torch's default."""
    fused = _fused_kwargs(model)
    if prof.optimiser == "sgd":
        return torch.optim.SGD(model.parameters(), lr=prof.lr, momentum=prof.momentum,
                               weight_decay=prof.weight_decay, **fused)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": prof.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=prof.lr, **fused)


def _fused_kwargs(model: torch.nn.Module) -> dict:
    """``{"fused": True}`` when every parameter is on CUDA and this torch fuses SGD and AdamW."""
    import inspect

    on_cuda = all(p.is_cuda for p in model.parameters())
    has_fused = all("fused" in inspect.signature(cls).parameters
                    for cls in (torch.optim.SGD, torch.optim.AdamW))
    return {"fused": True} if on_cuda and has_fused else {}


def pick_amp_dtype(device: str | torch.device) -> str:
    """The autocast dtype for ``device``: ``"bf16"`` on a CPU and on GPUs that compute bf16
    natively (compute capability 8.0 and up: A100, H100, L4, RTX 30xx, with a CUDA build that
    supports it), ``"fp16"`` elsewhere (T4, V100), which then trains with a GradScaler whose
    state goes into every checkpoint. (``torch.cuda.is_bf16_supported()`` says True on a T4 too,
    counting slow emulation, so emulation is excluded and the capability decides.)"""
    device = torch.device(device)
    if device.type != "cuda":
        return "bf16"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "fp16"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the keyword counts native support only
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp16"


# ---------------------------------------------------------------------------------------------
# The training step
# ---------------------------------------------------------------------------------------------
def make_forward_loss(net, label_smoothing: float = 0.0, device_type: str = "cpu",
                      amp_dtype: torch.dtype | None = None):
    """The part of a training step that ``torch.compile`` takes as one graph.

    Returns ``forward_loss(images (B, 3, S, S), labels (B,)) -> (loss (), correct ())``: the
    mean cross-entropy of ``net``'s logits (in fp32, with ``label_smoothing``) and the number of
    right answers, under autocast in ``amp_dtype`` when given. It has no graph break for any
    variant (tests/test_train_compile.py), so :func:`compile_step` can ask for ``fullgraph``.
    """
    def forward_loss(images: torch.Tensor, labels: torch.Tensor):
        with torch.autocast(device_type, dtype=amp_dtype or torch.bfloat16,
                            enabled=amp_dtype is not None):
            logits = net(images)  # (B, classes)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        correct = (logits.detach().argmax(1) == labels).sum()  # () int64, stays on the device
        return loss, correct

    return forward_loss


def compile_step(fn, mode: str | None = "default", fullgraph: bool = True):
    """``torch.compile(fn)`` in ``mode`` (one of COMPILE_MODES). ``fullgraph``: fail on a graph
    break instead of silently splitting the step (off under DDP, whose optimiser splits it)."""
    if mode not in (None, *COMPILE_MODES):
        raise TransferError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    return torch.compile(fn, fullgraph=fullgraph, mode=None if mode in (None, "default") else mode)


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


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def _test_hook() -> tuple[str, int] | None:
    spec = os.environ.get(TEST_HOOK_ENV)
    if not spec:
        return None
    name, _, value = spec.partition(":")
    return name, int(value)


def _read_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):  # overwritten by something else: finish the run again
        print(f"warning: {path} holds a {type(summary).__name__}, not a run summary; the run is "
              f"finished again from its last.pt", file=sys.stderr)
        return None
    return summary if summary.get("complete") else None


def _as_config(config: TrainConfig | dict | None, kwargs: dict) -> TrainConfig:
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig(**config)
    if kwargs:
        unknown = set(kwargs) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
        config = dataclasses.replace(config, **kwargs)
    return config


def train(config: TrainConfig | dict | None = None, **kwargs) -> dict:
    """Train as ``config`` (or TrainConfig keyword arguments) says; return the summary dict.

    Raises TransferError (DataError, CheckpointError) for problems the user can fix, and when the
    loss stops being finite (the last good checkpoint is kept).
    """
    cfg = _as_config(config, kwargs)
    cfg.validate()
    ctx = init_distributed(cfg.device)
    if cfg.amp_dtype is None:  # recorded resolved in config.json
        cfg = dataclasses.replace(cfg, amp_dtype=pick_amp_dtype(ctx.device))
    try:
        from transfer_lib.rundir import RunLock

        if not ctx.is_main:  # rank 0 holds the run directory's lock for every rank
            return _train(cfg, ctx)
        with RunLock(cfg.run_dir()):
            return _train(cfg, ctx)
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


#: TrainConfig fields that change how a run is executed but not what it computes.
_EXECUTION_FIELDS = ("out", "resume", "new_recipe", "from_scratch", "cache_dir", "progress", "device", "amp", "amp_dtype", "channels_last",
                     "compile", "compile_mode", "sync_every", "fast", "workers", "profile")


def _recipe_differences(run_dir: Path, cfg: TrainConfig) -> list[str]:
    """What differs between the recipe saved in ``run_dir/config.json`` and ``cfg``'s."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return []  # an older or foreign run directory: nothing to compare against
    if not isinstance(saved, dict):
        return []
    wanted_train = _plain(cfg.to_dict())
    wanted_profile = _plain(cfg.profile_obj().to_dict())
    diffs = []
    for key, value in wanted_train.items():
        if key in _EXECUTION_FIELDS or key in PROFILE_OVERRIDES or key not in saved.get("train", {}):
            continue
        if saved["train"][key] != value:
            diffs.append(f"{key}: saved {saved['train'][key]!r}, asked {value!r}")
    for key, value in wanted_profile.items():
        if key in ("name", "description", "workers") or key not in saved.get("profile", {}):
            continue
        if saved["profile"][key] != value:
            diffs.append(f"{key}: saved {saved['profile'][key]!r}, asked {value!r}")
    return diffs


def _recipe_history(run_dir: Path, changed: list[str], start_epoch: int) -> list[dict]:
    """``config.json``'s ``history``: the recipes this run had before its current one (each the
    whole earlier ``config.json`` plus ``until_epoch``, when the next took over, and ``changed``),
    oldest first. A resume under the same recipe keeps it as it was."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(saved, dict):
        return []
    history = list(saved.get("history") or [])
    if changed:
        history.append({**{k: v for k, v in saved.items() if k != "history"},
                        "until_epoch": start_epoch, "changed": changed})
    return history


def _load_last(last_path: Path, best_path: Path, device: torch.device) -> dict:
    """``last.pt`` for a resume; a damaged one is refused with what can still be done."""
    best = (f"{best_path} (the best weights, without optimiser state) can be evaluated with "
            f"`eval --checkpoint {best_path}` but not resumed from" if best_path.is_file()
            else f"there is no {best_path.name} to fall back on")
    return load_checkpoint(last_path, map_location=device, hint=(
        f"Cannot resume: {last_path} is truncated or damaged (a full disk, or a copy cut short). "
        f"Restore an earlier copy of it (a backup, Drive's version history) and --resume again, "
        f"or start a new --out; {best}."))


def _train(cfg: TrainConfig, ctx: DistContext) -> dict:
    prof = cfg.profile_obj()
    run_dir = cfg.run_dir()
    device = ctx.device
    on_cuda = device.type == "cuda"
    on_cpu = device.type == "cpu"
    use_amp = (on_cuda or (on_cpu and prof.cpu_amp and cpu_has_native_bf16())) \
        if cfg.amp is None else cfg.amp
    fast = (on_cuda or (on_cpu and prof.cpu_fast)) if cfg.fast is None else bool(cfg.fast)
    pipeline = "fast" if fast else "per-image"
    amp_dtype = AMP_DTYPES[cfg.amp_dtype]
    channels_last = on_cuda if cfg.channels_last is None else cfg.channels_last
    hook = _test_hook()
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # autotuned convolutions (fixed input size)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True

    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if ctx.is_main:
        if last_path.exists() and not cfg.resume:
            raise TransferError(
                f"{run_dir} already holds a run ({last_path} exists). Pass --resume to continue "
                f"it, or choose another --out."
            )
        if cfg.resume and not last_path.exists() and (run_dir / "config.json").exists():
            pass  # killed before the first checkpoint: start over in the same folder
    changed: list[str] = []
    if ctx.is_main and cfg.resume and last_path.exists():
        changed = _recipe_differences(run_dir, cfg)
        if changed and not cfg.new_recipe:
            raise TransferError(
                f"{run_dir} was trained with another recipe ({'; '.join(changed)}). --resume "
                f"continues a run as it began: repeat its options (its config.json lists them), "
                f"pass --new-recipe (new_recipe=True) to go on under the new recipe (config.json "
                f"then keeps the old one under 'history'), or choose another --out.")
    barrier(ctx)

    # data
    from transfer_lib.data import build_dataset
    from transfer_lib.data.transforms import eval_transform

    root = resolve_data_root(cfg, prof, ctx)
    seed_everything(cfg.seed)  # same initial weights on every rank
    probe = build_dataset(cfg.dataset, root, "train")
    class_names = list(probe.classes)
    model, mc = build_training_model(cfg, prof, class_names)
    train_set = build_dataset(cfg.dataset, root, "train",
                              transform=None if fast else train_transform_for(
                                  mc, prof.augment, prof.randaugment, prof.erasing))
    test_set = build_dataset(cfg.dataset, root, "test", transform=None if fast else eval_transform(mc))
    if len(train_set) == 0 or len(test_set) == 0:
        raise DataError(f"{root}: {len(train_set)} training and {len(test_set)} test images found")
    sampler = loader_gen = None
    if fast:
        train_loader, test_loader = build_fast_loaders(cfg, prof, mc, root, ctx, train_set, test_set)
        train_augment = repr(train_loader.augment)
    else:
        train_loader, sampler, loader_gen, test_loader = build_loaders(
            cfg, prof, mc, root, ctx, train_set, test_set)
        train_augment = repr(train_set.transform)
    steps_per_epoch = len(train_loader) if cfg.max_steps is None else min(len(train_loader), cfg.max_steps)

    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimiser = build_optimiser(model, prof)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and cfg.amp_dtype == "fp16")

    start_epoch, global_step, best_acc, wall_before = 0, 0, -1.0, 0.0
    if cfg.resume and last_path.exists():
        ckpt = _load_last(last_path, best_path, device)
        if _saved_model_config(ckpt.get("config")) != mc.to_dict():
            raise CheckpointError(f"{last_path} was trained as another model; resume with the "
                                  f"same --variant/--size/model options, or choose another --out")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        before = ckpt.get("pipeline", "per-image")
        if before != pipeline and ctx.is_main:
            print(f"warning: {last_path} was trained with the {before} input pipeline and resumes "
                  f"with the {pipeline} one (--{'no-' if before == 'per-image' else ''}fast keeps "
                  f"it): the batches differ from an uninterrupted run", file=sys.stderr)
        best_acc, wall_before = float(ckpt["best_accuracy"]), float(ckpt["wall_seconds"])
        rngs = ckpt["rng"]
        set_rng_state(rngs[ctx.rank] if ctx.rank < len(rngs) else rngs[0])
        if ctx.rank >= len(rngs):  # resumed on more processes than it was saved from
            seed_everything(cfg.seed * 7919 + ctx.rank + 1000 * start_epoch)
    else:
        # per-rank streams for augmentation and MAD/MSAD drops (the weights are already equal)
        seed_everything(cfg.seed * 7919 + ctx.rank)

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        history = _recipe_history(run_dir, changed, start_epoch) if cfg.resume else []
        (run_dir / "config.json").write_text(json.dumps(
            {"train": cfg.to_dict(), "profile": prof.to_dict(), "model": mc.to_dict(),
             "data_root": str(root), "world_size": ctx.world_size, "device": str(device),
             "pipeline": pipeline, "train_augment": train_augment,
             "cache": str(train_loader.cache.path) if fast else None,
             **({"history": history} if history else {})},
            indent=1, default=str))
        # drop metric lines of epochs that will be run again
        metrics_path = run_dir / "metrics.jsonl"
        kept = []
        if metrics_path.exists():
            for line in metrics_path.read_text().splitlines():
                try:
                    if json.loads(line)["epoch"] <= start_epoch:
                        kept.append(line)
                except (ValueError, KeyError):
                    continue
        metrics_path.write_text("".join(k + "\n" for k in kept))

    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if on_cuda else None)
    forward_loss = make_forward_loss(net, prof.label_smoothing, device.type,
                                     amp_dtype if use_amp else None)
    compile_mode = cfg.compile_mode or "default"
    if cfg.compile:
        forward_loss = compile_step(forward_loss, compile_mode, fullgraph=not ctx.distributed)
    cuda_graphs = cfg.compile and on_cuda and compile_mode in CUDA_GRAPH_MODES
    # the host reads the loss every sync_every steps (a sync); in between the GPU runs ahead
    sync_every = cfg.sync_every or (25 if on_cuda else 1)
    postfix_every = sync_every if sync_every > 1 else 10

    started = time.perf_counter()
    last_metrics: dict | None = None
    epoch_log: dict = {}
    for epoch in range(start_epoch, prof.epochs):
        if fast:
            train_loader.set_epoch(epoch)  # order by (seed, epoch); augmentation by step too
        else:
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 131 + ctx.rank)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        lr = prof.lr_at(epoch)
        t0 = time.perf_counter()
        data_wait = 0.0
        running_loss = 0.0
        bar = _progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{prof.epochs}",
                            ctx.is_main and cfg.progress)
        batches = iter(itertools.islice(train_loader, steps_per_epoch))
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
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if cuda_graphs:  # a new iteration: the graphs' previous outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            loss, n_correct = forward_loss(images, labels)
            if hook == ("nan_at_step", global_step):
                loss = loss * float("nan")
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if prof.grad_clip > 0:  # the gradient's global norm, unscaled first under fp16
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(model.parameters(), prof.grad_clip)
            scaler.step(optimiser)
            scaler.update()
            global_step += 1
            loss_sum += loss.detach() * labels.shape[0]  # on the device: no sync
            correct += n_correct
            seen += labels.shape[0]
            last = i + 1 == steps_per_epoch
            if (i + 1) % sync_every == 0 or last:
                running_loss = float(loss_sum)  # the step's only host sync, every k steps
                _check_finite(ctx, running_loss, epoch, global_step, lr, last_path)
            if ctx.is_main and cfg.progress and ((i + 1) % postfix_every == 0 or last):
                rate = seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{running_loss / max(seen, 1):.3f}", img_s=f"{rate:.0f}",
                                lr=f"{lr:.2e}")
            bar.update(1)
            if hook == ("kill_in_epoch", epoch + 1) and i == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # a crash in the middle of an epoch
        bar.close()
        del batches  # ends the loader's producer thread / worker iteration
        if ctx.distributed:  # BatchNorm statistics are per rank: take rank 0's everywhere
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)
        if on_cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        _check_finite(ctx, float(loss_sum), epoch, global_step, lr, last_path)
        totals = torch.stack([loss_sum.float(), correct.float(),
                              torch.tensor(float(seen), device=device)])
        if ctx.distributed:
            torch.distributed.all_reduce(totals)
        n_seen = max(float(totals[2]), 1.0)
        epoch_log = {
            "epoch": epoch + 1, "loss": float(totals[0]) / n_seen, "lr": lr,
            "train_accuracy": float(totals[1]) / n_seen,
            "images_per_second": n_seen / max(train_seconds, 1e-9),
            "train_seconds": train_seconds, "data_wait_seconds": data_wait,
            "pipeline": pipeline,
        }

        is_last = epoch + 1 == prof.epochs
        if ctx.is_main and ((epoch + 1) % prof.eval_every == 0 or is_last):
            from transfer_lib.evaluate import evaluate

            last_metrics = evaluate(model, test_loader, device=device,
                                    amp_dtype=amp_dtype if use_amp else None,
                                    channels_last=channels_last)
            epoch_log.update(test_accuracy=last_metrics["accuracy"],
                             mean_class_accuracy=last_metrics["mean_class_accuracy"])
        improved = ctx.is_main and last_metrics is not None and \
            epoch_log.get("test_accuracy", -1.0) > best_acc
        if improved:
            best_acc = epoch_log["test_accuracy"]

        rngs = all_gather_object(ctx, rng_state())
        if ctx.is_main:
            wall = wall_before + time.perf_counter() - started
            state = {
                "model": model.state_dict(), "config": mc.to_dict(), "epoch": epoch + 1,
                "global_step": global_step, "optimizer": optimiser.state_dict(),
                "scaler": scaler.state_dict(), "rng": rngs, "best_accuracy": best_acc,
                "wall_seconds": wall, "train_config": _plain(cfg.to_dict()),
                "profile": _plain(prof.to_dict()), "pipeline": pipeline,
            }
            if improved:
                save_atomic({"model": state["model"], "config": state["config"],
                             "epoch": epoch + 1, "accuracy": best_acc}, best_path)
            save_atomic(state, last_path)
            epoch_log["wall_seconds"] = wall
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(epoch_log) + "\n")
            if cfg.progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in epoch_log.items()
                                  if isinstance(v, float) and k != "wall_seconds")
                print(f"epoch {epoch + 1}/{prof.epochs}: {shown}", flush=True)
        barrier(ctx)

    summary = None
    if ctx.is_main:
        summary = _write_summary(cfg, prof, mc, ctx, run_dir, model, test_loader, last_metrics,
                                 best_acc, wall_before + time.perf_counter() - started,
                                 amp_dtype if use_amp else None, channels_last, epoch_log,
                                 pipeline)
    if ctx.distributed and os.environ.get("TRANSFER_TEST_DUMP_WEIGHTS"):
        save_atomic(model.state_dict(),
                    Path(os.environ["TRANSFER_TEST_DUMP_WEIGHTS"]) / f"rank{ctx.rank}.pt")
    summary = broadcast_object(ctx, summary)
    return summary


def _saved_model_config(saved) -> dict | None:
    """A checkpoint's model config completed with the fields added since (``from_dict``'s
    defaults for old files), comparable with ``to_dict()``; None if it cannot be read."""
    from transfer_lib.models.config import TransFERConfig

    try:
        return TransFERConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError):
        return None


def _plain(d: dict) -> dict:
    """JSON-able, weights_only-loadable copy (tuples become lists)."""
    return json.loads(json.dumps(d, default=str))


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


#: How best.pt is chosen, said wherever a run's result is shown.
BEST_SELECTED_ON = ("test split: best.pt is the evaluated epoch with the highest test accuracy "
                    "(RAF-DB has no validation split; the authors chose theirs the same way, their "
                    "file name says epoch 33 of 40), so best_accuracy is optimistic; "
                    "final_accuracy is the last epoch's (last.pt)")


def _best_epoch(run_dir: Path, epochs: int, final: dict) -> dict:
    """The ``metrics.jsonl`` line of the epoch best.pt holds (the first with the highest test
    accuracy, as the trainer keeps it), or the final metrics when no line has a test accuracy."""
    try:
        text = (run_dir / "metrics.jsonl").read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError):
        lines = []
    scored = [m for m in lines if "test_accuracy" in m]
    if not scored:
        return {"epoch": epochs, "mean_class_accuracy": final.get("mean_class_accuracy")}
    return max(scored, key=lambda m: (m["test_accuracy"], -m.get("epoch", 0)))


def _write_summary(cfg, prof, mc, ctx, run_dir, model, test_loader, metrics, best_acc, wall,
                   amp_dtype, channels_last, epoch_log, pipeline="per-image") -> dict:
    from transfer_lib.evaluate import evaluate

    if metrics is None:  # resumed after the last epoch's checkpoint: evaluate again
        metrics = evaluate(model, test_loader, device=ctx.device, amp_dtype=amp_dtype,
                           channels_last=channels_last)
    device = ctx.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    best = _best_epoch(run_dir, prof.epochs, metrics)
    summary = {
        "complete": True,
        "best_accuracy": max(best_acc, metrics["accuracy"]),
        "best_epoch": best.get("epoch"),
        "best_mean_class_accuracy": best.get("mean_class_accuracy"),
        "best_selected_on": BEST_SELECTED_ON,
        "final_accuracy": metrics["accuracy"],
        "final_epoch": prof.epochs,
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "confusion_matrix": metrics["confusion_matrix"],
        "class_names": metrics["class_names"],
        "epochs": prof.epochs,
        "wall_seconds": wall,
        "images_per_second": epoch_log.get("images_per_second"),
        "pipeline": pipeline,
        "device": f"{device} ({name})" + (f" x{ctx.world_size}" if ctx.distributed else ""),
        "world_size": ctx.world_size,
        "profile": prof.name,
        "variant": mc.variant,
        "size": prof.size,
        "msad_mode": mc.msad_mode,
        "map_regulariser": mc.map_regulariser,
        "seed": cfg.seed,
        "dataset": cfg.dataset,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "run_dir": str(run_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
