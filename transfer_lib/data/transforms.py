"""The authors' per-image transforms (spec, "Training recipe"), built from a model's config.

Size, mean and std come from the :class:`~transfer_lib.models.config.TransFERConfig` passed in
(``model.config``); nothing is restated here. The batched equivalent that runs on the GPU is
:class:`transfer_lib.data.fast.BatchAugment`.

Two choices of the recipe have switches (``train --randaugment``, ``--erasing``; the profile's
fields of the same names):

* ``randaugment="paddle"`` (the authors'): PaddleClas's RandAugment
  (``ppcls/data/preprocess/ops/randaugment.py``, :class:`PaddleRandAugment`), which is not
  torchvision's: magnitude 5 on a scale of 10, 14 ops and no identity, grey-128 fill;
  ``"torchvision"``: ``torchvision.transforms.v2.RandAugment(2, 5)`` (31 magnitude bins, an
  identity op, black fill), what this project used before.
* ``erasing``: the authors' RandomErasing (``ppcls/data/preprocess/ops/random_erasing.py``,
  :class:`AuthorsRandomErasing`) is written for a CHW array, but their pipeline hands it the
  HWC one (``NormalizeImage`` with ``order: ''``), so it erases a few values of the image's top
  row at most: ``"authors"`` does exactly that (in effect off), ``"config"`` erases a rectangle
  of the CHW image as the config reads, ``"off"`` skips it.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageEnhance, ImageOps
from torchvision.transforms import v2

from transfer_lib.models.config import TransFERConfig

#: RandomResizedCrop and RandomErasing settings of the authors' config.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
RANDAUGMENT_OPS = 2
RANDAUGMENT_MAGNITUDE = 5
ERASE_P = 0.5
ERASE_SCALE = (0.02, 0.4)
ERASE_R1 = 0.3  # aspect ratio drawn uniformly in (r1, 1 / r1)
ERASE_ATTEMPTS = 100

RANDAUGMENTS: tuple[str, ...] = ("paddle", "torchvision")
ERASINGS: tuple[str, ...] = ("authors", "config", "off")

#: PaddleClas RandAugment's ops, in its ``level_map`` order (no identity op).
PADDLE_OPS: tuple[str, ...] = (
    "shearX", "shearY", "translateX", "translateY", "rotate", "color", "posterize", "solarize",
    "contrast", "sharpness", "brightness", "autocontrast", "equalize", "invert",
)
#: Fill of PaddleClas's geometric ops (RGB).
PADDLE_FILL = (128, 128, 128)


def paddle_levels(magnitude: int = RANDAUGMENT_MAGNITUDE, max_level: int = 10) -> dict[str, float]:
    """PaddleClas's ``level_map`` at ``magnitude`` (of ``max_level``): shear 0.3 m/10, translate
    150/331 m/10 of the side, rotate 30 m/10 degrees, colour/contrast/sharpness/brightness
    0.9 m/10 (factor 1 +- that), posterize to int(4 m/10) bits, solarize at 256 m/10."""
    f = magnitude / max_level
    return {"shearX": 0.3 * f, "shearY": 0.3 * f, "translateX": 150.0 / 331 * f,
            "translateY": 150.0 / 331 * f, "rotate": 30 * f, "color": 0.9 * f,
            "posterize": int(4.0 * f), "solarize": 256.0 * f, "contrast": 0.9 * f,
            "sharpness": 0.9 * f, "brightness": 0.9 * f, "autocontrast": 0, "equalize": 0,
            "invert": 0}


def paddle_op(img: Image.Image, name: str, level: float, sign: int = 1) -> Image.Image:
    """One PaddleClas RandAugment op on an RGB PIL image, as ``randaugment.py`` computes it.

    ``sign`` (+1 or -1) is the random direction of shears, translations and the enhance
    factors; the rotation ignores it (PaddleClas rotates by +level degrees, counter-clockwise,
    always), as do the ops without a magnitude.
    """
    if name in ("shearX", "shearY"):
        coeffs = (1, level * sign, 0, 0, 1, 0) if name == "shearX" else (1, 0, 0, level * sign, 1, 0)
        return img.transform(img.size, Image.AFFINE, coeffs, Image.BICUBIC, fillcolor=PADDLE_FILL)
    if name in ("translateX", "translateY"):
        w, h = img.size
        coeffs = ((1, 0, level * w * sign, 0, 1, 0) if name == "translateX"
                  else (1, 0, 0, 0, 1, level * h * sign))
        return img.transform(img.size, Image.AFFINE, coeffs, fillcolor=PADDLE_FILL)  # nearest
    if name == "rotate":  # their RGBA rotate + composite on grey is a nearest rotate, grey fill
        return img.rotate(level, resample=Image.NEAREST, fillcolor=PADDLE_FILL)
    if name in ("color", "contrast", "sharpness", "brightness"):
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "sharpness": ImageEnhance.Sharpness, "brightness": ImageEnhance.Brightness}[name]
        return enhancer(img).enhance(1 + level * sign)
    if name == "posterize":
        return ImageOps.posterize(img, int(level))
    if name == "solarize":
        return ImageOps.solarize(img, level)
    if name == "autocontrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "invert":
        return ImageOps.invert(img)
    raise ValueError(f"unknown PaddleClas RandAugment op {name!r}; expected one of {PADDLE_OPS}")


class PaddleRandAugment:
    """PaddleClas's RandAugment on a PIL image: ``num_ops`` ops, each drawn uniformly from the
    14 of :data:`PADDLE_OPS` (with replacement), each with a random sign where it has one.

    Random numbers come from torch's global generator (seeded per DataLoader worker, and saved
    in checkpoints by the trainer) rather than from Python's and NumPy's as in PaddleClas.
    """

    def __init__(self, num_ops: int = RANDAUGMENT_OPS, magnitude: int = RANDAUGMENT_MAGNITUDE):
        self.num_ops, self.magnitude = num_ops, magnitude
        self.levels = paddle_levels(magnitude)

    def __repr__(self) -> str:
        return f"PaddleRandAugment(num_ops={self.num_ops}, magnitude={self.magnitude})"

    def __call__(self, img):
        tensor = isinstance(img, torch.Tensor)
        if tensor:  # a uint8 (3, H, W) tensor: through PIL, as PaddleClas does
            img = v2.functional.to_pil_image(img)
        for _ in range(self.num_ops):
            name = PADDLE_OPS[int(torch.randint(len(PADDLE_OPS), ()))]
            sign = 1 if torch.rand(()) < 0.5 else -1
            img = paddle_op(img, name, self.levels[name], sign)
        return v2.functional.pil_to_tensor(img) if tensor else img


def sample_authors_erasing(n: int, shape: tuple[int, int, int], p: float = ERASE_P,
                           scale=ERASE_SCALE, r1: float = ERASE_R1, attempts: int = ERASE_ATTEMPTS,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """The authors' RandomErasing decisions for ``n`` arrays of ``shape`` (d0, d1, d2), as their
    code reads that shape (written for CHW): (n, 4) long (x1, y1, h, w) of the box
    ``[.., x1:x1 + h, y1:y1 + w]`` over dims 1 and 2, h = 0 for no erasing.

    Per array: applied with probability ``p``; up to ``attempts`` tries of area
    ``uniform(scale) * d1 * d2`` and aspect ``uniform(r1, 1 / r1)`` (both uniform, not
    log-uniform), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)); the first with
    h < d1 and w < d2 wins, placed uniformly. Which dim-0 slices it writes is
    :func:`erase_authors`'s business.
    """
    _, d1, d2 = shape
    apply = torch.rand(n, generator=generator, dtype=torch.float64) <= p
    area = d1 * d2 * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator,
                                                                      dtype=torch.float64))
    aspect = r1 + (1 / r1 - r1) * torch.rand(n, attempts, generator=generator, dtype=torch.float64)
    h = torch.round(torch.sqrt(area * aspect))  # half to even, as Python's round
    w = torch.round(torch.sqrt(area / aspect))
    ok = (w < d2) & (h < d1)
    first = ok.to(torch.uint8).argmax(1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    x1 = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (d1 - h + 1))
    y1 = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (d2 - w + 1))
    out = torch.stack([x1, y1, h, w], 1).long()
    out[~(apply & ok.any(1))] = 0
    return out


def erase_authors(arr: torch.Tensor, box: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Write one box of :func:`sample_authors_erasing` into ``arr`` (d0, d1, d2) in place as the
    authors' code does: every slice of dim 0 when d0 == 3 (a CHW image), else slice 0 only (their
    ``else`` branch, which an HWC image takes: its top row)."""
    x1, y1, h, w = box.tolist()
    if h > 0:
        target = arr if arr.shape[0] == 3 else arr[:1]
        target[:, x1:x1 + h, y1:y1 + w] = value
    return arr


class AuthorsRandomErasing:
    """The authors' RandomErasing (p 0.5, area 0.02-0.4, aspect from 0.3, value 0) on a
    normalised (3, H, W) tensor: ``layout="hwc"`` applies it to the image's HWC view, as their
    pipeline does (``"authors"``), ``"chw"`` to the CHW image, as the config reads (``"config"``)."""

    def __init__(self, layout: str = "hwc"):
        if layout not in ("hwc", "chw"):
            raise ValueError(f"layout={layout!r} is not 'hwc' or 'chw'")
        self.layout = layout

    def __repr__(self) -> str:
        return f"AuthorsRandomErasing(layout={self.layout!r}, p={ERASE_P})"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        view = img.permute(1, 2, 0) if self.layout == "hwc" else img  # shares img's storage
        erase_authors(view, sample_authors_erasing(1, tuple(view.shape))[0])
        return img


def erasing_transform(erasing: str) -> AuthorsRandomErasing | None:
    """The RandomErasing step of ``erasing`` (one of :data:`ERASINGS`), None for ``"off"``."""
    if erasing not in ERASINGS:
        raise ValueError(f"erasing={erasing!r} is not one of {', '.join(ERASINGS)}")
    return None if erasing == "off" else AuthorsRandomErasing("hwc" if erasing == "authors" else "chw")


def train_transform(config: TransFERConfig, randaugment: str = "paddle",
                    erasing: str = "authors") -> v2.Compose:
    """PIL image -> normalised float tensor (3, S, S) with the training augmentation:
    RandomResizedCrop, horizontal flip, RandAugment (``randaugment``: ``"paddle"`` or
    ``"torchvision"``), normalisation, RandomErasing (``erasing``: ``"authors"``, ``"config"``
    or ``"off"``; see the module's docstring)."""
    if randaugment not in RANDAUGMENTS:
        raise ValueError(f"randaugment={randaugment!r} is not one of {', '.join(RANDAUGMENTS)}")
    size = config.input_size
    rand_augment = (PaddleRandAugment(RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE) if randaugment == "paddle"
                    else v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE))
    erase = erasing_transform(erasing)
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.RandomHorizontalFlip(),
        rand_augment,
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(config.mean, config.std),
        *([erase] if erase is not None else []),
    ])


def eval_transform(config: TransFERConfig) -> v2.Compose:
    """PIL image -> normalised float tensor (3, S, S): short side to S, centre crop S."""
    size = config.input_size
    return v2.Compose([
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(config.mean, config.std),
    ])


__all__ = [
    "AuthorsRandomErasing", "CROP_RATIO", "CROP_SCALE", "ERASINGS", "PADDLE_OPS",
    "PaddleRandAugment", "RANDAUGMENTS", "erase_authors", "erasing_transform", "eval_transform",
    "paddle_levels", "paddle_op", "sample_authors_erasing", "train_transform",
]
