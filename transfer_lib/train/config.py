"""What a run is asked to do: :class:`TrainConfig` (a profile plus overrides) and its checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transfer_lib.data import FORMATS
from transfer_lib.train.profiles import Profile, get_profile
from transfer_lib.utils.errors import TransferError

AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: torch.compile modes; the two that capture CUDA graphs need static shapes (drop_last batches).
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune",
                                  "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES: tuple[str, ...] = ("reduce-overhead", "max-autotune")
#: Profile fields a TrainConfig may override (None: take the profile's).
PROFILE_OVERRIDES: tuple[str, ...] = (
    "variant", "size", "epochs", "batch_size", "optimiser", "lr", "momentum", "weight_decay",
    "input_size", "schedule", "milestones", "gamma", "warmup_epochs", "label_smoothing", "augment",
    "balance", "grad_clip", "eval_every", "workers", "randaugment", "erasing", "proj_init",
    "regularise_from_epoch",
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
    regularise_from_epoch: int | None = None  # MAD / map regulariser / MSAD off before it
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
        from transfer_lib.train.profiles import PROFILE_NAMES

        def check(name, value, allowed):
            if value is not None and value not in allowed:
                raise TransferError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")

        if not isinstance(self.profile, Profile):
            check("profile", self.profile, PROFILE_NAMES)
        check("dataset", self.dataset, FORMATS)
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
        if self.regularise_from_epoch is not None and self.regularise_from_epoch < 0:
            raise TransferError(f"regularise_from_epoch={self.regularise_from_epoch} must be 0 "
                                "(drop from the first step, the authors') or more")
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
