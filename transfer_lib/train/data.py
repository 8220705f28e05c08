"""The input side of training: the data root, the two pipelines' loaders (train, and the test
and validation splits' evaluation loaders), their samplers.

Both pipelines order an epoch by (seed, epoch) and shard it by (rank, world_size), so a resumed
run sees the batches an uninterrupted one would (see the package docstring).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

import torch
from torch.utils.data import Sampler

from transfer_lib.data.base import WorkerLoader
from transfer_lib.train.config import TrainConfig
from transfer_lib.train.distributed import DistContext, barrier, broadcast_object
from transfer_lib.train.profiles import Profile
from transfer_lib.utils.errors import DataError, TransferError


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


def build_loaders(cfg: TrainConfig, prof: Profile, model_config, root: Path, ctx: DistContext,
                  train_set, test_set, val_set=None):
    """The per-image torch DataLoaders: (train loader, its sampler, its generator, test loader,
    val loader); the val loader is None without ``val_set``. Evaluation loaders never shuffle
    and draw no random numbers."""
    workers = prof.workers
    sampler = EpochShardSampler(len(train_set), ctx.rank, ctx.world_size, cfg.seed,
                                weights=sample_weights(train_set, prof))
    generator = torch.Generator()
    pin = ctx.device.type == "cuda"
    per_rank_batch = max(1, prof.batch_size // ctx.world_size) if ctx.distributed else prof.batch_size
    drop_last = len(sampler) >= per_rank_batch * 2  # BatchNorm needs more than one image
    train_loader = WorkerLoader(train_set, batch_size=per_rank_batch, sampler=sampler,
                                num_workers=workers, pin_memory=pin, drop_last=drop_last,
                                generator=generator, persistent_workers=workers > 0)

    def eval_loader(dataset):
        return WorkerLoader(dataset, batch_size=max(64, prof.batch_size), shuffle=False,
                            num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)

    test_loader = eval_loader(test_set)
    val_loader = eval_loader(val_set) if val_set is not None else None
    return train_loader, sampler, generator, test_loader, val_loader


def _check_cache_base(base: Path, source: str) -> None:
    """Refuse a cache folder (``--cache-dir`` or ``$TRANSFER_CACHE``, ``source``) that is a
    file or lies under one: the cache would fail with a path error naming neither."""
    for part in (base, *base.parents):
        if part.exists():
            if part.is_dir():
                return
            what = ("is a file, not a folder" if part == base else
                    f"lies under {part}, which is a file, not a folder")
            shown = f"{CACHE_ENV}={base}" if source == CACHE_ENV else f"--cache-dir {base}"
            fix = ("set it to a folder (made if missing), or unset it to cache beside the data"
                   if source == CACHE_ENV else "give a folder (made if missing)")
            raise TransferError(f"{shown} {what}: the fast pipeline caches the "
                                f"decoded images there; {fix}")


def cache_dir_for(cfg: TrainConfig, root: Path) -> Path:
    """Where the fast path caches ``root``: under ``cfg.cache_dir``, ``$TRANSFER_CACHE`` or
    ``root/../cache`` (``data/cache`` when that is read-only), a folder of its own per data root
    (build_cache replaces the caches of the same data set and split in its folder, so two
    synthetic sets must not share one)."""
    resolved = Path(root).resolve()
    base = cfg.cache_dir or os.environ.get(CACHE_ENV)
    if base:
        _check_cache_base(Path(base), "--cache-dir" if cfg.cache_dir else CACHE_ENV)
    else:
        base = resolved.parent / "cache" if os.access(resolved.parent, os.W_OK) else "data/cache"
    return Path(base) / f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def build_fast_loaders(cfg: TrainConfig, prof: Profile, model_config, root: Path,
                       ctx: DistContext, train_set, test_set, val_set=None):
    """The fast path's loaders: (train FastLoader, test FastLoader, val FastLoader); the
    evaluation loaders are None off rank 0 (it alone evaluates), the val one without ``val_set``.

    Rank 0 decodes the caches (once per source) while the others wait, then every rank maps
    them. The train loader shuffles by (seed, epoch) (``set_epoch``), gives rank ``r`` of ``w``
    its own shard with the same number of batches on every rank, and augments step ``t`` with a
    generator seeded by (seed, epoch, rank, t). On the CPU it augments in this thread
    (``workers=1``): FastLoader's worker threads would set the process-wide intra-op thread
    count to one under the training step, at a moment that varies from run to run.
    """
    from transfer_lib.data.fast import FastLoader, build_cache

    cache_dir = cache_dir_for(cfg, root)
    train_cache = test_cache = val_cache = None
    for turn in ("main", "others"):
        if ctx.is_main == (turn == "main"):
            train_cache = build_cache(train_set, cache_dir)
            if ctx.is_main:
                test_cache = build_cache(test_set, cache_dir)
                if val_set is not None:
                    val_cache = build_cache(val_set, cache_dir)
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

    def eval_loader(cache):
        if cache is None:
            return None
        return FastLoader(cache, max(64, prof.batch_size), shuffle=False, drop_last=False,
                          device=ctx.device,
                          augment=batch_augment_for(model_config, prof.augment, train=False),
                          seed=cfg.seed, workers=workers)

    return train_loader, eval_loader(test_cache), eval_loader(val_cache)
