"""Training profiles: ``smoke``, ``cpu``, ``paper`` and ``gpu``, defined once for the CLI, the book and tests.

A profile is the whole recipe at one scale: model size, epochs, batch, optimiser, learning-rate
schedule, evaluation cadence and, for the synthetic data set, how many images to generate.

* ``paper``: the authors' recipe (``TransFER.yaml``, see docs/transfer-spec.md "Training
  recipe"): the paper-size model, 40 epochs, SGD with momentum 0.9 and weight decay 1e-4, batch
  64, learning rate 1e-4 / 1e-5 / 1e-6 switching at epochs 15 and 30, and the authors' transforms
  as they ran them:

  - ``randaugment="paddle"``: PaddleClas's RandAugment (2 of 14 ops at magnitude 5 of 10: shear
    0.15, translate 0.227 of the side, rotate +15 degrees, enhance 1 +- 0.45, posterize to 2
    bits, solarize at 128, autocontrast, equalize, invert; grey-128 fill), not torchvision's
    (``--randaugment torchvision``);
  - ``erasing="authors"``: their RandomErasing applied to the HWC array as their pipeline does,
    which touches a few values of the top row at most, i.e. in effect no erasing
    (``--erasing config``: a rectangle of the image, as their config reads; ``off``: none);
  - ``proj_init="paddle"``: the 1x1 projection 256 -> 768 (trained from scratch in every
    recipe) starts as Paddle initialises a conv, Kaiming-normal (fan-in) with a zero bias,
    about 2.4x larger than PyTorch's default;

  and the IR-50 / ViT-Small initialisations (``--ir50``, ``--vit``): ``train`` refuses to run
  the paper profile without them unless ``--from-scratch`` says so (SGD at 1e-4 from random
  weights does not learn).
* ``cpu``: the tiny model (at 48 x 48 input) on the synthetic set, from random weights, on two
  CPU cores. Appendix 12 ("Why the cpu recipe is not the paper's") shows the evidence for each
  change; in short:

  - AdamW at 1e-3 with a cosine decay instead of SGD at 1e-4: SGD at 1e-4 only fine-tunes
    *pretrained* weights;
  - class-balanced sampling (``balance="sampler"``) and label smoothing 0.1: the previous
    recipe, which differed in several ways at once, left the three rarest classes at 0 % (74.1 %
    accuracy, 47.3 % mean class accuracy; ``book/results.md``); balancing was never varied alone;
  - gradient clipping at norm 1 and a 3-epoch warmup, chosen as a guard against stalls (3 of 22
    unclipped runs at lr 1e-3 stalled at chance in ``benchmarks/results/recipe_sweep_h200.jsonl``,
    0 of 3 clipped ones in ``recipe_sweep_2_h200.jsonl``: too few to call it a cure, and 2 of the
    43 committed 30-epoch runs still stall). The stall study (``book/results/stall-study.md``)
    points at the zero-initialised head instead (``head_init``);
  - 30 epochs: the transformer converges far more slowly than the CNN (32 epochs: 90.6 % mean
    class accuracy over 2 seeds at 64 px in the same sweep; 16 epochs: 70.9 %);
  - 48 x 48 input instead of the tiny size's 64: 126 against 81-92 images/s for a training step
    on this project's 2-core AVX2 CPU (``benchmarks/cpu_step_speed.py``);
  - the fast input pipeline (``cpu_fast``) and fp32 (``cpu_amp=False``): bf16 pays only on CPUs
    with native bf16; fp32 with the pinned kernels (``transfer_lib.utils.kernels``) gives the same
    numbers on every x86 CPU, which the committed ablations rely on to be reproducible.

  The identity-pretrained stem (``python -m transfer_lib pretrain``) is *not* used by default:
  in the sweep, fine-tuning from its first version stalled more often than from random weights;
  from the current one (stage 4 trained and left out), paired over seeds 0-2, it was lower on
  average at the ablation's 3-epoch budget for both rows tried
  (``book/results/ablation-cpu-pretrained.json``) and at this full recipe for TransFER (-19.1
  points; one of its three runs ended below the most-frequent-class line, none from random
  weights did; ``book/results/ablation-cpu-30ep-pretrained.json`` against
  ``ablation-cpu-30ep.json``). No interval lay above 0 (appendix 12). Over seeds 0-4 this recipe
  from random weights ends at 86.4, 86.9, 92.0, 86.1 and 90.9 % accuracy (mean class accuracy
  85.4, 85.9, 92.0, 86.3 and 88.7 %); seed 2 meets the aim of >= 90 % mean class accuracy and
  >= 80 % on every class, the others do not (weakest class: Sadness 76.1 and 73.5 %, Neutral
  72.2 %; seed 4 has every class at 81 % or more but a mean of 88.7 %).
  ``proj_init="torch"`` (PyTorch's default init of the projection) and ``augment="light"``
  (which ignores ``randaugment`` and ``erasing``) keep this profile's numbers exactly those of
  the committed ablation (``book/results/ablation-cpu.json``), made before the paper profile
  took Paddle's projection init.
* ``smoke``: seconds; for tests and CI. It checks that the code runs, not that it learns.
* ``gpu``: a GPU without RAF-DB (Colab's T4): the cpu recipe scaled up, the ``small`` model on
  a synthetic set of RAF-DB's size (12,271 + 3,068 images), batch 128, 20 epochs. The trainer
  picks bf16 autocast where the GPU has bf16 tensor cores and fp16 with a GradScaler elsewhere
  (``transfer_lib.train.pick_amp_dtype``). It takes Paddle's projection init
  (``proj_init="paddle"``), as the paper profile. Estimated from FLOPs: about 5-7 s an epoch on a T4
  (see the comment at its definition).

``active_profile()`` picks one from the environment (``TRANSFER_PROFILE``) or the machine;
``find_rafdb()`` finds RAF-DB in its distributed layout; ``project_root()`` is the folder that
relative data, weights and run folders are taken from.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

PROFILE_NAMES: tuple[str, ...] = ("smoke", "cpu", "paper", "gpu")
OPTIMISERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("step", "cosine")
BALANCES: tuple[str, ...] = ("none", "sampler")
#: RandAugment and RandomErasing choices (transfer_lib.data.transforms, which imports torchvision:
#: restated here so that the CLI builds its parser without it; a test checks they agree).
RANDAUGMENTS: tuple[str, ...] = ("paddle", "torchvision")
ERASINGS: tuple[str, ...] = ("authors", "config", "off")

#: Where ``find_rafdb`` looks, after ``$TRANSFER_RAFDB``, relative to the working directory.
RAFDB_CANDIDATES: tuple[str, ...] = ("data/RAF-DB", "data/rafdb", "/content/drive/MyDrive/RAF-DB")


@dataclass(frozen=True)
class Profile:
    """One training recipe at one scale. Every field is read by ``transfer_lib.train``."""

    name: str
    description: str
    # model
    variant: str = "transfer"
    size: str = "paper"  # paper | tiny | small (transfer_lib.models.config.SIZES)
    input_size: int = 0  # input side in pixels; 0: the size's own (112 paper/small, 64 tiny)
    # schedule
    epochs: int = 40
    batch_size: int = 64
    optimiser: str = "sgd"  # sgd | adamw
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"  # step: lr * gamma ** (milestones passed); cosine: to lr * min_lr_ratio
    milestones: tuple[int, ...] = (15, 30)  # epochs at which a step schedule multiplies by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warmup from 0, in epochs (fractions allowed)
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # clip the gradient's global norm to this (0: off, the paper's)
    # MAD (or the map regulariser in its place) and MSAD stay off before this epoch (0-based):
    # 0, the authors', drops from the first step; 1 with a 1-epoch warmup drops after it
    regularise_from_epoch: int = 0
    # data
    proj_init: str = "paddle"  # the projection's init: paddle (the authors') | torch (PyTorch's)
    augment: str = "paper"  # paper: the authors' train transform; light: crop + flip only
    randaugment: str = "paddle"  # with augment="paper": paddle (PaddleClas's) | torchvision
    erasing: str = "authors"  # with augment="paper": authors (in effect off) | config | off
    balance: str = "none"  # none: each image once an epoch; sampler: classes drawn equally often
    synthetic_train: int = 3000  # images of the generated data set (transfer_lib.data.synth)
    synthetic_test: int = 700
    # cadence
    eval_every: int = 1  # evaluate every k epochs (and always after the last)
    workers: int = 4  # data loader processes for the per-image path
    # speed on a CPU (on CUDA bf16 autocast and the fast pipeline are on by default anyway)
    cpu_amp: bool = False  # bf16 autocast where the CPU computes bf16 natively (avx512_bf16/AMX)
    cpu_fast: bool = False  # the fast input pipeline (uint8 cache, batched augmentation)

    def lr_at(self, epoch_float: float) -> float:
        """The learning rate at a (fractional) epoch: a pure function, so resuming is exact."""
        if self.warmup_epochs > 0 and epoch_float < self.warmup_epochs:
            return self.lr * (epoch_float + 1e-3) / self.warmup_epochs
        if self.schedule == "step":
            passed = sum(1 for m in self.milestones if epoch_float >= m)
            return self.lr * self.gamma**passed
        import math

        span = max(self.epochs - self.warmup_epochs, 1e-9)
        t = min(max((epoch_float - self.warmup_epochs) / span, 0.0), 1.0)
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown profile fields: {sorted(unknown)}")
        if "milestones" in changes:
            changes["milestones"] = tuple(changes["milestones"])
        return dataclasses.replace(self, **changes)

    @property
    def synthetic_root(self) -> str:
        """Where this profile's synthetic set lives (the embedded default set is shared)."""
        if (self.synthetic_train, self.synthetic_test) == (3000, 700):
            return "data/synthetic"
        return f"data/synthetic-{self.synthetic_train}-{self.synthetic_test}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser={self.optimiser!r} is not one of {', '.join(OPTIMISERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.balance not in BALANCES:
            raise ValueError(f"balance={self.balance!r} is not one of {', '.join(BALANCES)}")
        if self.augment not in ("paper", "light"):
            raise ValueError(f"augment={self.augment!r} is not 'paper' or 'light'")
        from transfer_lib.models.config import PROJ_INITS

        for name, value, allowed in (("randaugment", self.randaugment, RANDAUGMENTS),
                                     ("erasing", self.erasing, ERASINGS),
                                     ("proj_init", self.proj_init, PROJ_INITS)):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("epochs, batch_size and eval_every must be at least 1")


_CPU = Profile(
    name="cpu",
    description="tiny TransFER on the synthetic set from scratch: balanced sampling, label "
                "smoothing, clipped AdamW + warmup + cosine, fp32, minutes on 2 cores",
    size="tiny",
    input_size=48,
    epochs=30,
    batch_size=32,
    optimiser="adamw",
    lr=1e-3,
    weight_decay=0.05,
    schedule="cosine",
    milestones=(),
    warmup_epochs=3.0,
    min_lr_ratio=0.01,
    label_smoothing=0.1,
    grad_clip=1.0,
    proj_init="torch",  # PyTorch's default: the committed ablation's init, kept
    augment="light",
    balance="sampler",
    eval_every=3,
    workers=0,
    cpu_fast=True,
)

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        description="the authors' recipe: paper-size TransFER, 40 epochs, SGD 1e-4/1e-5/1e-6",
    ),
    "cpu": _CPU,
    # the cpu recipe shrunk to seconds: no warmup, no cosine floor, a few synthetic images
    "smoke": _CPU.replace(
        name="smoke",
        description="seconds: the tiny model, 2 epochs on a few synthetic images (tests, CI)",
        epochs=2,
        batch_size=8,
        warmup_epochs=0.0,
        min_lr_ratio=0.0,
        eval_every=1,
        synthetic_train=48,
        synthetic_test=21,
    ),
}

# The cpu recipe (AdamW, warmup, cosine) at GPU scale, for a GPU without RAF-DB. Cost, from
# measured FLOPs (summary.forward_flops, plus the attention matmuls a CPU count leaves out): the
# small model takes 2.8 GFLOPs forward and about 8.4 GFLOPs to train per image, so an epoch
# (12,271 training and 3,068 test images) is about 112 TFLOP: 5-7 s on a T4 (65 TFLOP/s fp16
# peak at 25-35 % utilisation), 20 epochs in 2-2.5 minutes.
PROFILES["gpu"] = _CPU.replace(
    name="gpu",
    description="small TransFER on a RAF-DB-sized synthetic set, AdamW + cosine, minutes on a T4",
    size="small",
    input_size=0,
    epochs=20,
    batch_size=128,
    warmup_epochs=1.0,
    proj_init="paddle",
    synthetic_train=12_271,
    synthetic_test=3_068,
    workers=2,
)


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (``smoke``, ``cpu``, ``paper`` or ``gpu``)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"profile {name!r} is not one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


def project_root() -> Path:
    """The project's root folder, from which relative data, weights and run folders are taken
    (``data/synthetic``, ``weights/``, ``runs/book``), whatever the working directory.

    The checkout holding this package when there is one (its folder has ``pyproject.toml``: a
    clone, an editable install); else the nearest folder at or above the working directory holding
    ``pyproject.toml`` or the book's ``_config.yml`` (chapters run from inside ``book/``); else
    the working directory (a pip install, e.g. on Colab).
    """
    package_root = Path(__file__).resolve().parents[2]  # transfer_lib/train/profiles.py
    if (package_root / "pyproject.toml").is_file():
        return package_root
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "pyproject.toml").is_file() or (d / "_config.yml").is_file():
            return d
    return cwd


#: The values of ``$TRANSFER_RAFDB`` :func:`find_rafdb` has warned of (once each per process).
_RAFDB_WARNED: set[str] = set()


def _rafdb_root(path: Path) -> Path | None:
    """RAF-DB's root if ``path`` is it (or its ``basic`` folder), else None."""
    if (path / "basic" / "EmoLabel" / "list_patition_label.txt").is_file():
        return path
    if path.name == "basic" and (path / "EmoLabel" / "list_patition_label.txt").is_file():
        return path.parent
    return None


def find_rafdb(extra: list[str | os.PathLike] | None = None,
               required: bool = False) -> Path | None:
    """The root of RAF-DB in its distributed layout, or None.

    Looks in ``$TRANSFER_RAFDB``, then ``data/RAF-DB``, ``data/rafdb`` and Colab's
    ``/content/drive/MyDrive/RAF-DB``. The relative places are tried from the working directory
    and then from :func:`project_root`. A root qualifies when it holds
    ``basic/EmoLabel/list_patition_label.txt`` (or the root itself is the ``basic`` folder).

    A ``$TRANSFER_RAFDB`` that is not RAF-DB's root is not passed over silently: a warning on
    stderr names it and what was expected (once per value and process) before the other places
    are tried; with ``required`` (the caller asked for RAF-DB explicitly) it raises
    TransferError instead. Unset, nothing is printed.
    """
    candidates: list[str | os.PathLike] = []
    given = os.environ.get("TRANSFER_RAFDB")
    if given:
        path = Path(given).expanduser()
        found = _rafdb_root(path)
        if found is not None:
            return found
        problem = ("names nothing (no such folder)" if not path.exists() else
                   "is a file, not a folder" if not path.is_dir() else
                   "is not a RAF-DB folder")
        message = (f"TRANSFER_RAFDB={given} {problem}: expected RAF-DB's root, the folder "
                   f"holding basic/EmoLabel/list_patition_label.txt (and basic/Image/aligned/). "
                   f"Point TRANSFER_RAFDB at it, or unset it")
        if required:
            from transfer_lib.utils.errors import DataError

            raise DataError(message)
        if given not in _RAFDB_WARNED:
            _RAFDB_WARNED.add(given)
            import sys

            print(f"warning: {message}; looking in "
                  f"{', '.join(RAFDB_CANDIDATES)} instead", file=sys.stderr)
    candidates += list(extra or []) + list(RAFDB_CANDIDATES)
    root = project_root()
    if root != Path.cwd().resolve():
        candidates += [root / c for c in RAFDB_CANDIDATES if not Path(c).expanduser().is_absolute()]
    for c in candidates:
        found = _rafdb_root(Path(c).expanduser())
        if found is not None:
            return found
    if required:
        from transfer_lib.utils.errors import DataError

        raise DataError(f"RAF-DB not found in {', '.join(RAFDB_CANDIDATES)}: set TRANSFER_RAFDB "
                        f"to its root (the folder holding basic/EmoLabel/list_patition_label.txt)")
    return None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch, no CUDA
        return False


def active_profile(default: str | None = None) -> Profile:
    """The profile to use now: ``$TRANSFER_PROFILE`` if set, else ``default`` if given, else
    on a CUDA machine ``paper`` where RAF-DB is found and ``gpu`` where it is not, and ``cpu``
    without CUDA."""
    name = os.environ.get("TRANSFER_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(
                f"TRANSFER_PROFILE={name!r} is not one of {', '.join(PROFILE_NAMES)}: set it "
                f"to one of them or unset it"
            )
        return PROFILES[name]
    if default is not None:
        return get_profile(default)
    if _cuda_available():
        return PROFILES["paper"] if find_rafdb() is not None else PROFILES["gpu"]
    return PROFILES["cpu"]


__all__ = [
    "PROFILE_NAMES", "PROFILES", "Profile", "active_profile", "find_rafdb", "get_profile",
    "project_root",
]
