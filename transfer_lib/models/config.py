"""One configuration for every model in the paper, and the facts the model carries with it.

Built in chapter 6 (``book/06_transfer.ipynb``). Everything else in the repository (data
transforms, trainer, book) reads the input size, the normalisation and the class names from here
through ``model.config``; nothing restates them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: RAF-DB's labels 1..7, in RAF-DB's order (label k is ``RAFDB_CLASSES[k - 1]``).
RAFDB_CLASSES: tuple[str, ...] = (
    "Surprise",
    "Fear",
    "Disgust",
    "Happiness",
    "Sadness",
    "Anger",
    "Neutral",
)

#: The authors' TransFER config normalises with ImageNet statistics (not face.evoLVe's 0.5).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

VARIANTS: tuple[str, ...] = ("ir50", "vit_fer", "local", "local_mad", "transfer")
SIZES: tuple[str, ...] = ("paper", "tiny", "small")
MSAD_MODES: tuple[str, ...] = ("head", "token")
MAP_REGULARISERS: tuple[str, ...] = ("mad", "none", "dropout", "dropblock", "spatial")
#: Initialisations of the 1x1 projection: Paddle's Conv2D default (the authors') or PyTorch's.
PROJ_INITS: tuple[str, ...] = ("paddle", "torch")
#: How the classifier head starts: "zeros" (the authors': weight and bias 0) | "normal" (weight
#: truncated normal, std 0.02, as ViT's other linear layers; bias 0).
HEAD_INITS: tuple[str, ...] = ("zeros", "normal")


@dataclass
class TransFERConfig:
    """Every setting of TransFER and of its ablation variants.

    The defaults are the authors' (``size="paper"``): IR-50 stages 1-3 (3 + 4 + 14 units,
    64/128/256 channels) on 112 x 112 inputs, B = 2 LANets with reduction r = 16, MAD with
    p1 = 0.6, a 1x1 projection to 768, 8 pre-norm blocks with 8 heads, mlp_ratio 3, and MSAD with
    p2 = 0.3.
    """

    variant: str = "transfer"
    num_classes: int = 7
    class_names: tuple[str, ...] = RAFDB_CLASSES
    # preprocessing facts carried by the model
    input_size: int = 112
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # stem: IR-50 stages 1-3
    stem_widths: tuple[int, ...] = (64, 128, 256)
    stem_depths: tuple[int, ...] = (3, 4, 14)
    # local CNN: LANets and Multi-Attention Dropping
    num_branches: int = 2
    lanet_reduction: int = 16
    use_lanet: bool = True
    map_regulariser: str = "mad"  # mad | none | dropout | dropblock | spatial
    mad_p: float = 0.6
    mad_num_drop: int = 1  # maps zeroed in a hit sample (the paper: more than one gains nothing)
    dropblock_size: int = 3
    # whether Dropout, DropBlock and Spatial Dropout rescale what they keep (their own
    # definitions, True) or, like MAD, do not (False: the same rule as MAD, for a fair comparison)
    map_rescale: bool = True
    # projection 1x1 conv to embed_dim, trained from scratch in every recipe. "paddle": as
    # Paddle initialises a Conv2D (the authors'), Kaiming-normal over fan-in (std sqrt(2 / C)),
    # bias 0; "torch": PyTorch's default (uniform, std sqrt(1 / (3 C)), 2.4x smaller; the bias
    # uniform too), what the cpu and smoke profiles keep (profiles.py)
    proj_init: str = "paddle"
    # transformer with MSAD
    embed_dim: int = 768
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 3.0
    qkv_bias: bool = False
    qk_scale: float | None = None  # None: head_dim ** -0.5, as in the TransFER code
    layer_norm_eps: float = 1e-6
    msad_p: float = 0.3
    msad_num_drop: int = 1  # heads (or tokens) zeroed in a hit sample
    msad_mode: str = "head"  # head (the paper) | token (the authors' code)
    head_init: str = "zeros"  # zeros (the authors') | normal (trunc. normal, std 0.02)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def check(name: str, value: object, allowed: tuple) -> None:
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")

        check("variant", self.variant, VARIANTS)
        check("msad_mode", self.msad_mode, MSAD_MODES)
        check("map_regulariser", self.map_regulariser, MAP_REGULARISERS)
        check("proj_init", self.proj_init, PROJ_INITS)
        check("head_init", self.head_init, HEAD_INITS)
        # a config can come from an untrusted checkpoint: types and sizes are checked before
        # anything is allocated (an embed_dim of 2**22 or a depth of 10**9 would exhaust memory
        # or hang); the bounds are far above every size this package builds
        for name, low, high in (("num_classes", 1, 100_000), ("input_size", 8, 4096),
                                ("num_branches", 1, 64), ("lanet_reduction", 1, 4096),
                                ("embed_dim", 1, 8192), ("depth", 1, 256), ("num_heads", 1, 256),
                                ("dropblock_size", 1, 64), ("mad_num_drop", 1, 64),
                                ("msad_num_drop", 1, 256)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}={value!r} must be an integer in {low}..{high}")
        if not (isinstance(self.mlp_ratio, (int, float)) and 0 < self.mlp_ratio <= 64):
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} must be a number in (0, 64]")
        if len(self.stem_widths) > 8 or any(
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8192
                for v in (*self.stem_widths, *self.stem_depths)) or \
                any(d > 256 for d in self.stem_depths):
            raise ValueError(f"stem_widths={self.stem_widths!r} / stem_depths="
                             f"{self.stem_depths!r} must be up to 8 stages of integers in "
                             f"1..8192 (depths 1..256)")
        if len(self.stem_widths) != len(self.stem_depths):
            raise ValueError("stem_widths and stem_depths must have the same length")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if not 1 <= self.mad_num_drop <= self.num_branches:
            raise ValueError(f"mad_num_drop={self.mad_num_drop} must lie in 1..num_branches={self.num_branches}")
        if not 1 <= self.msad_num_drop <= self.num_heads:
            raise ValueError(f"msad_num_drop={self.msad_num_drop} must lie in 1..num_heads={self.num_heads}")
        if not isinstance(self.map_rescale, bool):
            raise ValueError(f"map_rescale={self.map_rescale!r} must be True or False")
        for name in ("mad_p", "msad_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p} must lie in [0, 1]")
        if len(self.class_names) != self.num_classes:
            # a data set with other classes (FERPlus, AffectNet) passes its own names
            self.class_names = tuple(f"class_{i}" for i in range(self.num_classes))
        self.class_names = tuple(self.class_names)
        self.mean = tuple(self.mean)
        self.std = tuple(self.std)
        self.stem_widths = tuple(self.stem_widths)
        self.stem_depths = tuple(self.stem_depths)

    @property
    def stem_channels(self) -> int:
        return self.stem_widths[-1]

    @property
    def token_grid(self) -> int:
        """Side of the token grid: the stem halves the input once per stage."""
        return self.input_size // 2 ** len(self.stem_widths)

    @property
    def num_tokens(self) -> int:
        return self.token_grid**2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransFERConfig:
        """The config saved as ``d`` (``to_dict()``). A dict without ``proj_init`` was saved
        before that switch existed, when every model started with PyTorch's: ``"torch"``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TransFERConfig fields: {sorted(unknown)}")
        return cls(**{"proj_init": "torch", **d})


#: The sizes, as overrides of the defaults. ``tiny`` trains at 100+ images/s on 2 CPU cores.
#: Its stem has two units per stage (2, 2, 4): with one (1, 1, 2) the tokens came out so weak
#: that the transformer's cls output was the same for every image (cosine > 0.99 between images
#: within 25 steps) and the model sat at the majority class for 5+ epochs.
SIZE_PRESETS: dict[str, dict] = {
    "paper": {},
    "tiny": dict(
        input_size=64,
        stem_widths=(16, 32, 64),
        stem_depths=(2, 2, 4),
        lanet_reduction=8,
        embed_dim=96,
        depth=2,
        num_heads=4,
        mlp_ratio=2.0,
    ),
    # Between the two, for a GPU without RAF-DB (the ``gpu`` profile): the paper's 112 x 112
    # input, 14 x 14 tokens and mlp_ratio, half the stem's widths and under a third of its units,
    # a 256-wide 4-block transformer (head_dim 64). Forward 2.6 GFLOPs per image against tiny's
    # 0.12 and paper's 29.6 (``python -m transfer_lib summary --size small``), 4.7 M parameters:
    # sized so that the gpu profile's whole book fits in 30 minutes on a T4 (profiles.py).
    "small": dict(
        input_size=112,
        stem_widths=(32, 64, 128),
        stem_depths=(2, 3, 6),
        lanet_reduction=8,
        embed_dim=256,
        depth=4,
        num_heads=4,
        mlp_ratio=3.0,
    ),
}

#: What each ablation variant switches on (the rows of the paper's Table 1, plus the CNN).
VARIANT_PRESETS: dict[str, dict] = {
    "ir50": dict(use_lanet=False, map_regulariser="none", msad_p=0.0),
    "vit_fer": dict(use_lanet=False, map_regulariser="none", msad_p=0.0),
    "local": dict(use_lanet=True, map_regulariser="none", msad_p=0.0),
    "local_mad": dict(use_lanet=True, map_regulariser="mad", msad_p=0.0),
    "transfer": dict(use_lanet=True, map_regulariser="mad"),
}


def make_config(variant: str = "transfer", size: str = "paper", num_classes: int = 7,
                **overrides) -> TransFERConfig:
    """The config of ``variant`` at ``size``; keyword overrides win over both presets."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not one of {', '.join(SIZES)}")
    kwargs: dict = {"variant": variant, "num_classes": num_classes}
    kwargs.update(SIZE_PRESETS[size])
    kwargs.update(VARIANT_PRESETS[variant])
    kwargs.update(overrides)
    if num_classes == len(RAFDB_CLASSES) and "class_names" not in overrides:
        kwargs["class_names"] = RAFDB_CLASSES
    return TransFERConfig(**kwargs)
