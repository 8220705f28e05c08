"""Face-recognition pretraining of the stem on synthetic identities (chapter 3).

The offline analogue of face.evoLVe's IR-50 trained on MS-Celeb-1M: the stem (tiny by default)
learns to tell *people* apart, each shown under every expression, pose, lighting and occluder,
and is written in face.evoLVe's key layout so that ``train --ir50 FILE`` loads it with
:func:`transfer_lib.weights.convert.load_ir50_stem`, exactly like the real file.

Examples:
  python -m transfer_lib pretrain --out data/pretrained/ir50-tiny-identity   # a few minutes
  python -m transfer_lib train --profile cpu --ir50 data/pretrained/ir50-tiny-identity/ir50-tiny-identity.pth

The data: ``identities`` synthetic people (:func:`transfer_lib.data.synth.identity_face`), each
with ``images`` training images and ``held_out`` further, unseen images of the same people for
the identification accuracy. The label is the person; the expression (all seven classes, at a
random intensity) is a nuisance. The people are drawn from seeds no expression data set uses
(:data:`~transfer_lib.data.synth.IDENTITY_SPAWN_CODE`). Images are rendered straight into memory
at the model's input size by ``workers`` processes; the same parameters give the same bytes.

The network: the stem's three stages plus a fourth (``top_depth`` units of ``top_width``
channels), then face.evoLVe's ``output_layer`` made small (BatchNorm, global average pooling, a
linear embedding of ``embed_dim`` with BatchNorm), then a CosFace head (cosine logits with an
additive margin, as face-recognition training uses) or a plain linear head. AdamW with a linear
warmup and a cosine decay, crop + flip augmentation, ImageNet normalisation from the model
config, the same as fine-tuning here.

Why a stage 4 that is thrown away: TransFER keeps IR-50's stages 1-3 and drops stage 4 and the
output layer, where a face-recognition network becomes most invariant to expression (it is
trained to give the same answer for every expression of a person). Trained without a stage 4,
the tiny stem's last stage is that top. Measured with ``train --profile cpu --variant ir50
--epochs 4`` (seed 0, one run each, the cpu profile of commit 35cfe10, 2-core AVX2 CPU shared
with other jobs): from scratch 74.7 % accuracy / 50.9 % mean class accuracy; from this recipe
76.0 % / 55.0 %; from the same recipe without stage 4 71.0 % / 47.2 %; without stage 4, with 300
people x 5 images and half the images grey 61.6 % / 37.3 %. One seed: a hint, not a result.

The file: a plain state dict of the network (``input_layer.*``, ``body.{i}.res_layer.*``,
``body.{i}.shortcut_layer.*``, stage 4 included) and ``output_layer.*``; ``load_ir50_stem``
fills the stem from it and leaves out, and reports, stage 4 and ``output_layer``, as it does for
the real file. The identity head is not saved: face.evoLVe keeps its head apart from the
backbone too. Beside it, a JSON record of the parameters, the identification accuracy, the wall
time and the torch version; it is also the cache marker of :func:`ensure_pretrained`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transfer_lib.data import synth
from transfer_lib.models.config import SIZES, make_config
from transfer_lib.models.stem import IR50Stem
from transfer_lib.train.model import update
from transfer_lib.train.profiles import project_root
from transfer_lib.utils.errors import TransferError
from transfer_lib.utils.pool import chunk_size, map_chunks
from transfer_lib.weights.checkpoint import save_atomic

#: Bump when the recipe's meaning changes: :func:`ensure_pretrained` then trains again.
PRETRAIN_VERSION = 1
DEFAULT_ROOT = "data/pretrained/ir50-tiny-identity"
HEADS: tuple[str, ...] = ("cosface", "linear")
#: Held-out image ``j`` of a person is image ``HELD_OUT_OFFSET + j``: the held-out images do not
#: change when the number of training images does.
HELD_OUT_OFFSET = 2**20
#: RandomResizedCrop ranges of the crop + flip augmentation (the cpu profile's ``light`` ones).
CROP_SCALE: tuple[float, float] = (0.7, 1.0)
CROP_RATIO: tuple[float, float] = (0.9, 1.1)


@dataclass(frozen=True)
class PretrainConfig:
    """The whole pretraining recipe. Every field is part of the cache key."""

    size: str = "tiny"
    identities: int = 150
    images: int = 8  # training images per person
    held_out: int = 2  # unseen images per person, for the identification accuracy
    seed: int = 0
    occlusion: float = synth.DEFAULT_OCCLUSION
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.01
    grayscale: float = 0.0  # share of training images turned grey
    # stage 4, trained here and left out by load_ir50_stem, as IR-50's stage 4 is by TransFER
    top_width: int = 128
    top_depth: int = 2
    head: str = "cosface"  # cosface | linear
    margin: float = 0.2  # CosFace's additive cosine margin
    scale: float = 16.0  # CosFace's logit scale
    embed_dim: int = 128

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise TransferError(f"size={self.size!r} is not one of {', '.join(SIZES)}")
        if self.head not in HEADS:
            raise TransferError(f"head={self.head!r} is not one of {', '.join(HEADS)}")
        if self.identities < 2 or self.images < 1 or self.held_out < 0:
            raise TransferError("pretraining needs identities >= 2, images >= 1, held_out >= 0 "
                                f"(got {self.identities}, {self.images}, {self.held_out})")
        if self.epochs < 1 or self.batch_size < 1 or self.embed_dim < 1 or self.top_width < 1:
            raise TransferError("epochs, batch_size, embed_dim and top_width must be at least 1")
        if self.batch_size < 2:  # BatchNorm's ValueError, with a traceback, at the first step
            raise TransferError(f"batch_size={self.batch_size}: the network's BatchNorm needs "
                                f"at least 2 images a batch; give --batch-size 2 or more")
        if self.top_depth < 0:
            raise TransferError(f"top_depth={self.top_depth} must be at least 0")
        for name in ("occlusion", "grayscale"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TransferError(f"{name}={getattr(self, name)} must lie in [0, 1]")

    def params(self) -> dict:
        """The cache key: the recipe plus the versions of the recipe and of the generator."""
        return dict(version=PRETRAIN_VERSION, generator_version=synth.GENERATOR_VERSION,
                    **dataclasses.asdict(self))


def weights_name(size: str = "tiny") -> str:
    """The weights file's name: ``ir50-tiny-identity.pth`` (its record: ``.json``)."""
    return f"ir50-{size}-identity.pth"


# ---------------------------------------------------------------------------------------------
# The identity data set, in memory


def _render_chunk(job: tuple) -> np.ndarray:
    people, image_ids, seed, occlusion, size = job
    out = np.empty((len(people) * len(image_ids), size, size, 3), np.uint8)
    k = 0
    for person in people:
        for image in image_ids:
            out[k] = synth.identity_face(person, image, seed=seed, occlusion=occlusion, size=size)[0]
            k += 1
    return out


def render_identities(identities: int, image_ids: list[int] | range, seed: int = 0,
                      occlusion: float = synth.DEFAULT_OCCLUSION, size: int = 64,
                      workers: int | None = None, progress: bool = False,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``image_ids`` of people ``0 .. identities - 1``, rendered in memory.

    Returns (N, 3, size, size) uint8 images and (N,) int64 identity labels, person by person in
    ``image_ids`` order (N = identities * len(image_ids)). Same arguments, same bytes, whatever
    ``workers`` is.
    """
    image_ids = list(image_ids)
    workers = workers or min(2, os.cpu_count() or 1)
    per_chunk = chunk_size(identities, workers, 16)
    jobs = [(list(range(p, min(p + per_chunk, identities))), image_ids, seed, occlusion, size)
            for p in range(0, identities, per_chunk)]
    from tqdm.auto import tqdm

    bar = tqdm(total=identities * len(image_ids), desc="render", unit="img", disable=not progress,
               leave=False, dynamic_ncols=True)
    chunks = map_chunks(_render_chunk, jobs, workers, on_result=lambda c: bar.update(len(c)))
    bar.close()
    images = torch.from_numpy(np.concatenate(chunks)).permute(0, 3, 1, 2).contiguous()
    labels = torch.arange(identities).repeat_interleave(len(image_ids))
    return images, labels


# ---------------------------------------------------------------------------------------------
# The network


class IdentityNet(nn.Module):
    """An IR network (``backbone``: the stem's stages, plus a stage 4 when ``widths`` has one),
    a small face.evoLVe-style ``output_layer`` and an identity head.

    (B, 3, S, S) -> ``embed``: (B, embed_dim) -> ``forward``: (B, num_identities) logits.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], num_identities: int,
                 embed_dim: int = 128, head: str = "cosface", margin: float = 0.2,
                 scale: float = 16.0) -> None:
        super().__init__()
        self.backbone = IR50Stem(widths, depths)  # input_layer, body.{i}
        c = self.backbone.out_channels
        # face.evoLVe: BN2d, Dropout, Flatten, Linear(C * 7 * 7, 512), BN1d; here the map is
        # pooled first (the fine-tuned CNN pools too) and the embedding is small
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )
        self.head_kind, self.margin, self.scale = head, margin, scale
        self.head = nn.Linear(embed_dim, num_identities, bias=head == "linear")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backbone(x))  # (B, embed_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_identities); with ``labels``, CosFace's margin is taken off the true
        class's cosine (training only)."""
        e = self.embed(x)
        if self.head_kind == "linear":
            return self.head(e)
        cos = F.linear(F.normalize(e, dim=1), F.normalize(self.head.weight, dim=1))
        if labels is not None:
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * cos

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone and ``output_layer`` in face.evoLVe's key layout (no prefix, no head):
        ``input_layer.*``, ``body.{i}.*``, ``output_layer.*``."""
        state = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        state.update({f"output_layer.{k}": v.detach().clone()
                      for k, v in self.output_layer.state_dict().items()})
        return state


# ---------------------------------------------------------------------------------------------
# Training


def _augment(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int,
             g: torch.Generator | None, grayscale: float = 0.0) -> torch.Tensor:
    """Crop + flip a uint8 batch (B, 3, H, W), turn a share ``grayscale`` of it grey, normalise:
    float (B, 3, size, size)."""
    from transfer_lib.data.fast import resized_crops, sample_crops

    n, _, h, w = images.shape
    crops = sample_crops(n, h, w, scale=CROP_SCALE, ratio=CROP_RATIO, generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    grey = torch.rand(n, generator=g) < grayscale
    x = resized_crops(images, crops, flips, size).round_()
    if bool(grey.any()):
        luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # ITU-R 601
        x = torch.where(grey.view(-1, 1, 1, 1), luma.expand_as(x), x)
    return (x / 255.0 - mean) / std


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - mean) / std


@torch.no_grad()
def identification_accuracy(net: IdentityNet, images: torch.Tensor, labels: torch.Tensor,
                            mean: torch.Tensor, std: torch.Tensor, batch_size: int = 256,
                            channels_last: bool = False) -> float:
    """Share of ``images`` (uint8 (N, 3, S, S)) whose highest logit is their person."""
    net.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = _normalise(images[i:i + batch_size], mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += int((net(x).argmax(1) == labels[i:i + batch_size]).sum())
    return correct / max(1, len(images))


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(cfg: PretrainConfig, size: int) -> None:
    """Refuse a set whose images (rendered in memory, held twice while the chunks are joined)
    would not fit in this machine's memory: ``--identities 100000 --images 1000`` rendered for
    hours and then died of it."""
    images = cfg.identities * (cfg.images + cfg.held_out)
    need = 2 * images * size * size * 3
    have = physical_memory()
    if have is not None and need > have:
        raise TransferError(
            f"pretraining on {cfg.identities} identities x {cfg.images + cfg.held_out} images "
            f"({images:,} images of {size} x {size} pixels, rendered in memory) needs about "
            f"{need / 1e9:,.0f} GB, more than this machine's {have / 1e9:,.0f} GB: give fewer "
            f"--identities or --images")


def pretrain(cfg: PretrainConfig = PretrainConfig(), workers: int | None = None,
             progress: bool = True, channels_last: bool = True,
             threads: int | None = None) -> tuple[IdentityNet, dict]:
    """Render the identity set, train :class:`IdentityNet` on it, measure identification.

    Returns the network (eval mode) and a record: ``identification_accuracy`` on the held-out
    images (None when ``held_out`` is 0), ``train_accuracy`` of the last epoch (with the
    margin), image counts and ``wall_seconds`` (``render``, ``train``). ``channels_last`` and
    ``threads`` change speed only.
    """
    if threads:
        torch.set_num_threads(threads)
    mc = make_config("ir50", cfg.size)
    size = mc.input_size
    check_memory(cfg, size)
    t0 = time.perf_counter()
    train_x, train_y = render_identities(cfg.identities, range(cfg.images), cfg.seed,
                                         cfg.occlusion, size, workers, progress)
    held_ids = range(HELD_OUT_OFFSET, HELD_OUT_OFFSET + cfg.held_out)
    test_x, test_y = render_identities(cfg.identities, held_ids, cfg.seed, cfg.occlusion, size,
                                       workers, progress)
    t_render = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    widths, depths = mc.stem_widths, mc.stem_depths
    if cfg.top_depth:
        widths, depths = widths + (cfg.top_width,), depths + (cfg.top_depth,)
    net = IdentityNet(widths, depths, cfg.identities, cfg.embed_dim, cfg.head,
                      cfg.margin, cfg.scale)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1 and not n.startswith("head.")]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1 or n.startswith("head.")]
    optimiser = torch.optim.AdamW([dict(params=decay, weight_decay=cfg.weight_decay),
                                   dict(params=no_decay, weight_decay=0.0)], lr=cfg.lr)
    steps_per_epoch = max(1, len(train_x) // cfg.batch_size)  # drop the last partial batch
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    mean = torch.tensor(mc.mean).view(1, 3, 1, 1)
    std = torch.tensor(mc.std).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    t1 = time.perf_counter()
    bar = tqdm(total=total, desc="pretrain", disable=not progress, dynamic_ncols=True)
    step, correct, seen, loss_value = 0, 0, 0, float("nan")
    for _epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=g)
        correct, seen = 0, 0
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = _augment(train_x[idx], mean, std, size, g, cfg.grayscale)
            y = train_y[idx]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for group in optimiser.param_groups:
                group["lr"] = cfg.lr * lr_factor(step)
            logits = net(x, y)
            loss = F.cross_entropy(logits, y)
            update(optimiser, loss)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TransferError(f"pretraining loss is {loss_value} at step {step}; lower --lr")
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    acc = (identification_accuracy(net, test_x, test_y, mean, std, channels_last=channels_last)
           if len(test_x) else None)
    net.eval()
    record = dict(
        identification_accuracy=acc,
        train_accuracy=correct / max(1, seen),
        final_loss=loss_value,
        train_images=len(train_x),
        held_out_images=len(test_x),
        steps=total,
        wall_seconds=dict(render=round(t_render, 1), train=round(t_train, 1),
                          evaluate=round(time.perf_counter() - t2, 1)),
        train_images_per_second=round(total * cfg.batch_size / t_train, 1),
    )
    return net, record


# ---------------------------------------------------------------------------------------------
# The cached file


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ensure_pretrained(root: str | os.PathLike = DEFAULT_ROOT, workers: int | None = None,
                      progress: bool = False, force: bool = False, threads: int | None = None,
                      **params) -> Path:
    """The pretrained stem's weights file under ``root``, trained on first use and reused.

    ``params`` are :class:`PretrainConfig` fields (``identities=``, ``images=``, ``epochs=``,
    ...; the defaults are the recipe). A relative ``root`` is taken from the project root (the
    folder with ``pyproject.toml``), as :func:`transfer_lib.data.synth.ensure_synthetic` does.
    ``root/ir50-<size>-identity.json`` records the parameters, the held-out identification
    accuracy, wall seconds and torch version; when its parameters equal the ones asked for and
    the weights exist, nothing is trained. The weights are written atomically first and the
    record last, so a run that stops half way is never taken for a finished one. ``force``
    trains again. Returns ``root/ir50-<size>-identity.pth``: pass it as ``train --ir50``.
    """
    cfg = PretrainConfig(**params)
    root = Path(root)
    if not root.is_absolute():
        root = project_root() / root
    weights = root / weights_name(cfg.size)
    record_path = weights.with_suffix(".json")
    old = _read_record(record_path)
    if not force and weights.is_file() and old is not None and old.get("params") == cfg.params():
        if progress:
            print(f"reusing {weights} (same parameters; identification accuracy "
                  f"{_pct(old.get('identification_accuracy'))})")
        return weights
    t0 = time.perf_counter()
    net, record = pretrain(cfg, workers=workers, progress=progress, threads=threads)
    from transfer_lib.utils.atomic import atomic_write_text
    from transfer_lib.utils.kernels import provenance

    state = net.backbone_state_dict()
    save_atomic(state, weights)
    record = dict(
        params=cfg.params(),
        weights=weights.name,
        keys=len(state),
        stem_units=sum(make_config("ir50", cfg.size).stem_depths),
        left_out_units=cfg.top_depth,
        **record,
        wall_seconds_total=round(time.perf_counter() - t0, 1),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        machine=platform.machine(),
        load_average=[round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        provenance=provenance(),
    )
    atomic_write_text(record_path, json.dumps(record, indent=1) + "\n")
    if progress:
        print(f"identification accuracy on {record['held_out_images']} held-out images of "
              f"{cfg.identities} people: {_pct(record['identification_accuracy'])}; "
              f"{record['wall_seconds_total']:.0f} s; wrote {weights}")
    return weights


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T

    d = PretrainConfig()
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_ROOT,
                        help=f"output folder (default: {DEFAULT_ROOT} under the project root); "
                             f"gets ir50-<size>-identity.pth and .json")
    parser.add_argument("--size", choices=SIZES, default=d.size, help="model size of the stem")
    parser.add_argument("--identities", type=T.Number(int, 2, 100000), default=d.identities,
                        metavar="N", help="synthetic people")
    parser.add_argument("--images", type=T.positive_int(10000), default=d.images, metavar="K",
                        help="training images per person")
    parser.add_argument("--held-out", type=T.nonnegative_int(10000), default=d.held_out,
                        metavar="H",
                        help="unseen images per person for the identification accuracy")
    parser.add_argument("--epochs", type=T.EPOCHS, default=d.epochs)
    parser.add_argument("--batch-size", type=T.BATCH_SIZE, default=d.batch_size)
    parser.add_argument("--lr", type=T.LEARNING_RATE, default=d.lr)
    parser.add_argument("--grayscale", type=T.PROBABILITY, default=d.grayscale, metavar="P",
                        help="share of training images turned grey, so that people are told "
                             "apart by the shape of their face more than by its colour")
    parser.add_argument("--top-depth", type=T.nonnegative_int(100), default=d.top_depth,
                        metavar="N",
                        help="units of a stage 4 trained on top of the stem and left out when "
                             "the stem loads the file, as IR-50's stage 4 is (0: none)")
    parser.add_argument("--head", choices=HEADS, default=d.head,
                        help="cosface (cosine logits, additive margin) or linear")
    parser.add_argument("--seed", type=T.SEED, default=d.seed)
    parser.add_argument("--workers", type=T.PROCESSES, default=None, metavar="N",
                        help="rendering processes (default: 2 or the cores)")
    parser.add_argument("--threads", type=T.PROCESSES, default=None, metavar="N",
                        help="torch threads for training (default: torch's)")
    parser.add_argument("--force", action="store_true", help="train again even if cached")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    # a relative --out is the user's: from the working directory, not the project root
    out = Path(args.out) if args.out == DEFAULT_ROOT else Path(args.out).resolve()
    t0 = time.perf_counter()
    weights = ensure_pretrained(
        out, workers=args.workers, progress=args.progress, force=args.force, threads=args.threads,
        size=args.size, identities=args.identities, images=args.images, held_out=args.held_out,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, grayscale=args.grayscale,
        top_depth=args.top_depth, head=args.head, seed=args.seed,
    )
    record = _read_record(weights.with_suffix(".json")) or {}
    print(f"identification accuracy (held out): {_pct(record.get('identification_accuracy'))}")
    print(f"weights: {weights} ({time.perf_counter() - t0:.0f} s)")
    print(f"use: python -m transfer_lib train --ir50 {weights}")
    return 0
