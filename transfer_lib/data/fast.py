"""The fast data path: decode once, load whole batches, augment the batch where it lives.

The per-image pipeline (``DataLoader`` + :func:`~transfer_lib.data.transforms.train_transform`)
decodes a JPEG and runs eight PIL/tensor steps per image on the CPU. Here:

1. :func:`build_cache` decodes every image of a data set once into a uint8 array on disk,
   ``(N, S, S, 3)``, memory-mapped (RAF-DB and the synthetic set keep their native 100 x 100,
   FERPlus its 48 x 48, other sets are resized on the short side to ``store_size`` and
   centre-cropped). The file name carries a hash of the source (every file's path, size and
   mtime, the class names and the store size), so a changed source file gives a new cache;
   files are written to a temporary name and renamed (atomic), stale caches of the same data set
   and split are removed.
2. :class:`FastLoader` yields whole batches: it gathers the rows of a batch from the memmap,
   pins them and moves them to ``device`` (``non_blocking`` on CUDA) while the previous batch
   is being augmented, then applies ``augment``. Order is a deterministic function of
   ``(seed, epoch)``; ``set_epoch(e)`` before each epoch, as with ``DistributedSampler``.
   ``rank``/``world_size`` shard the epoch for DistributedDataParallel (every rank gets the same
   number of samples: padded by wrap-around, or trimmed with ``drop_last``).
3. :class:`BatchAugment` draws every random parameter on the CPU from an explicit
   ``torch.Generator`` (seeded per epoch, rank and step by the loader), then runs the batch on
   its own device. ``train=True`` reproduces the distribution of the per-image train transform:
   per-sample RandomResizedCrop (same sampling; crop, resize and flip as two matrix products,
   antialiased like PIL), horizontal
   flip, RandAugment (2 of torchvision's 14 ops, its magnitude table at magnitude 5, random
   sign), normalisation, RandomErasing. ``train=False`` is the eval transform (short side to S,
   centre crop, normalise), within one grey level of the per-image one.

Usage (what the trainer codes against)::

    from transfer_lib.data import build_dataset
    from transfer_lib.data.fast import BatchAugment, FastLoader, build_cache

    cache = build_cache(build_dataset("rafdb", "data/rafdb", "train"), "data/cache")
    loader = FastLoader(cache, batch_size=64, shuffle=True, drop_last=True, device="cuda",
                        augment=BatchAugment(model.config, train=True), seed=0,
                        rank=rank, world_size=world_size)
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)
        for x, y in loader:      # x: (B, 3, S, S) float normalised on device, y: (B,) long
            ...

Chapter 2 (``book/02_data.ipynb``) explains it; ``python -m transfer_lib bench data`` measures it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from transfer_lib.data import transforms as T
from transfer_lib.errors import DataError
from transfer_lib.models.config import TransFERConfig

CACHE_VERSION = 1
#: Side at which images without one native square size are stored.
DEFAULT_STORE_SIZE = 112


# --------------------------------------------------------------------------------------------
# 1. The decoded-once cache
# --------------------------------------------------------------------------------------------
@dataclass
class ImageCache:
    """A decoded data set: ``images`` (N, S, S, 3) uint8 memmap, ``labels`` (N,) long."""

    images: np.ndarray
    labels: torch.Tensor
    classes: tuple[str, ...]
    path: Path

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def batch(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``indices`` as (B, 3, S, S) uint8 (a copy, in CPU memory) and their labels."""
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))  # (B, S, S, 3)
        return x.permute(0, 3, 1, 2).contiguous(), self.labels[torch.as_tensor(idx)]


def source_key(dataset, store_size: int) -> str:
    """Hash of what the cache is made from: files (path, size, mtime), classes, store size."""
    files = dataset.source_files() if hasattr(dataset, "source_files") else []
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, type(dataset).__name__, list(dataset.classes),
                         store_size, len(dataset), list(map(int, dataset.targets))]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _to_store(img: Image.Image, size: int) -> np.ndarray:
    if img.size != (size, size):
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def build_cache(dataset, cache_dir: str | os.PathLike = "data/cache", store_size: int | None = None,
                workers: int | None = None) -> ImageCache:
    """Decode ``dataset`` once into ``cache_dir`` (or reuse the cache if its source is unchanged).

    ``dataset`` needs ``load_image(i) -> PIL``, ``targets``, ``classes`` (every data set of
    :func:`~transfer_lib.data.build_dataset` has them) and, for change detection,
    ``source_files()``. ``store_size`` defaults to the data set's ``native_size`` or
    :data:`DEFAULT_STORE_SIZE`.
    """
    size = int(store_size or getattr(dataset, "native_size", None) or DEFAULT_STORE_SIZE)
    key = source_key(dataset, size)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{getattr(dataset, 'name', type(dataset).__name__.lower())}-{getattr(dataset, 'split', 'all')}-"
    stem = cache_dir / f"{prefix}{key[:16]}"
    meta_path, img_path, lab_path = (Path(f"{stem}{s}") for s in (".json", ".npy", "-labels.npy"))
    if not meta_path.exists():
        n = len(dataset)
        tmp = f".tmp{os.getpid()}-{threading.get_ident()}.npy"
        arr = np.lib.format.open_memmap(f"{img_path}{tmp}", mode="w+", dtype=np.uint8,
                                        shape=(n, size, size, 3))

        def fill(i: int) -> None:
            arr[i] = _to_store(dataset.load_image(i), size)

        # PIL releases the GIL while decoding, so threads decode in parallel
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for _ in pool.map(fill, range(n), chunksize=64):
                pass
        arr.flush()
        del arr
        np.save(f"{lab_path}{tmp}", np.asarray(dataset.targets, dtype=np.int64), allow_pickle=False)
        os.replace(f"{img_path}{tmp}", img_path)
        os.replace(f"{lab_path}{tmp}", lab_path)
        meta = dict(version=CACHE_VERSION, key=key, n=n, size=size, classes=list(dataset.classes),
                    root=str(getattr(dataset, "root", "")))
        Path(f"{meta_path}{tmp}").write_text(json.dumps(meta, indent=1))
        os.replace(f"{meta_path}{tmp}", meta_path)
        for old in cache_dir.glob(f"{prefix}*"):  # stale caches of this data set and split
            if not old.name.startswith(stem.name) and ".tmp" not in old.name:
                old.unlink(missing_ok=True)
    meta = json.loads(meta_path.read_text())
    try:
        images = np.load(img_path, mmap_mode="r")
        labels = torch.from_numpy(np.load(lab_path))
    except (OSError, ValueError) as err:
        raise DataError(f"the cache {img_path} is damaged ({err}); delete {stem}* to rebuild") from None
    return ImageCache(images, labels, tuple(meta["classes"]), img_path)


# --------------------------------------------------------------------------------------------
# 2. Batched augmentation
# --------------------------------------------------------------------------------------------
#: torchvision RandAugment's ops, in its order. Magnitudes at bin ``m`` of 31 follow its table.
RANDAUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
                   "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
                   "AutoContrast", "Equalize")
_GEOMETRIC = (1, 2, 3, 4, 5)


def randaugment_magnitudes(magnitude: int, size: int, num_bins: int = 31) -> dict[str, float]:
    """torchvision's ``RandAugment._augmentation_space`` evaluated at bin ``magnitude``."""
    f = magnitude / (num_bins - 1)
    return dict(ShearX=0.3 * f, ShearY=0.3 * f, TranslateX=float(int(150.0 / 331.0 * size * f)),
                TranslateY=float(int(150.0 / 331.0 * size * f)), Rotate=30.0 * f,
                Brightness=0.9 * f, Color=0.9 * f, Contrast=0.9 * f, Sharpness=0.9 * f,
                Posterize=float(8 - int(round(magnitude / ((num_bins - 1) / 4)))),
                Solarize=255.0 * (1 - f))


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def sample_crops(n: int, height: int, width: int, scale=T.CROP_SCALE, ratio=T.CROP_RATIO,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop's parameters for ``n`` images, as (n, 4) long (top, left, h, w).

    Same algorithm as torchvision: up to 10 tries of (area, log-aspect), the first that fits
    wins, else the whole image clamped to the ratio range.
    """
    tries = 10
    area = height * width * _uniform(n * tries, *scale, generator).view(n, tries)
    log_r = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    h_sel, w_sel = h[rows, first.clamp(min=0)], w[rows, first.clamp(min=0)]
    u_i, u_j = torch.rand(n, generator=generator, dtype=torch.float64), torch.rand(
        n, generator=generator, dtype=torch.float64)
    top = torch.floor(u_i * (height - h_sel + 1))
    left = torch.floor(u_j * (width - w_sel + 1))
    # fallback: central crop at the nearest allowed ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    bad = first < 0
    h_sel, w_sel = torch.where(bad, float(fh), h_sel), torch.where(bad, float(fw), w_sel)
    top = torch.where(bad, float((height - fh) // 2), top)
    left = torch.where(bad, float((width - fw) // 2), left)
    return torch.stack([top, left, h_sel, w_sel], 1).long()


def sample_erasing(n: int, height: int, width: int, p=T.ERASE_P, scale=T.ERASE_SCALE,
                   ratio=T.ERASE_RATIO, generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomErasing's decisions for ``n`` images as (n, 4) long (top, left, h, w); h = 0 means
    no erasing (not drawn with probability 1 - p, or no try of the 10 fitted)."""
    apply = torch.rand(n, generator=generator) < p
    tries = 10
    area = height * width * _uniform(n * tries, *scale, generator).view(n, tries)
    aspect = torch.exp(_uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator)).view(n, tries)
    h = torch.round(torch.sqrt(area * aspect))
    w = torch.round(torch.sqrt(area / aspect))
    ok = (h < height) & (w < width)
    first = ok.float().argmax(1)
    rows = torch.arange(n)
    h_sel, w_sel = h[rows, first], w[rows, first]
    top = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (height - h_sel + 1))
    left = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (width - w_sel + 1))
    keep = apply & ok.any(1)
    out = torch.stack([top, left, h_sel, w_sel], 1).long()
    out[~keep] = 0
    return out


def _resample_weights(start: torch.Tensor, length: torch.Tensor, src: int, out: int,
                      flip: torch.Tensor | None = None) -> torch.Tensor:
    """(n, out, src) weights that resample the window [start, start + length) of a line of
    ``src`` pixels to ``out`` pixels: a triangle (bilinear) filter widened when shrinking, as
    PIL and torchvision's antialiased resize do; ``flip`` reverses the output."""
    scale = (length / out).double().view(-1, 1, 1)  # source pixels per output pixel
    support = scale.clamp(min=1.0)
    centre = start.double().view(-1, 1, 1) + (torch.arange(out, dtype=torch.float64).view(1, -1, 1)
                                              + 0.5) * scale
    pos = torch.arange(src, dtype=torch.float64).view(1, 1, -1) + 0.5
    w = (1 - (pos - centre).abs() / support).clamp(min=0)
    w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
    if flip is not None:
        w = torch.where(flip.view(-1, 1, 1), w.flip(1), w)
    return w.float()


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)  # (B, 1, H, W)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * a + (1 - f) * b).clamp(0, 255)


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    k = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    k[1, 1] = 5.0
    k = (k / k.sum()).expand(3, 1, 3, 3)
    blurred = F.conv2d(x, k, padding=0, groups=3).round()
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = blurred
    return _blend(x, degenerate, factor)


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255.0 / (hi - lo), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return ((x - lo) * scale).clamp(0, 255)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation, torchvision's rule, all channels of all images at once."""
    b, c, h, w = x.shape
    v = x.round().clamp(0, 255).long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.float32, device=x.device)
    hist.scatter_add_(1, v, torch.ones_like(v, dtype=torch.float32))
    last = hist.gather(1, v.amax(1, keepdim=True))  # count of the highest value present
    step = torch.div(h * w - last, 255, rounding_mode="floor")  # (bc, 1)
    safe = step.clamp(min=1)
    lut = torch.div(hist.cumsum(1) + torch.div(safe, 2, rounding_mode="floor"), safe,
                    rounding_mode="floor")
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = lut.gather(1, v)
    out = torch.where(step > 0, out, v.float())
    return out.view(b, c, h, w)


def _affine(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """The geometric RandAugment ops (shear about the top-left corner as torchvision does,
    translation in whole pixels, rotation about the centre), nearest, zero fill."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    m = mag.float()
    # inverse maps in normalised coordinates (-1..1, align_corners=False)
    sx = op == 1
    theta[sx, 0, 1] = -m[sx] * h / w
    theta[sx, 0, 2] = -m[sx] * h / w  # shear about y = top: shift by m * (y - (-1))
    sy = op == 2
    theta[sy, 1, 0] = -m[sy] * w / h
    theta[sy, 1, 2] = -m[sy] * w / h
    tx = op == 3
    theta[tx, 0, 2] = -2 * m[tx] / w
    ty = op == 4
    theta[ty, 1, 2] = -2 * m[ty] / h
    ro = op == 5
    a = torch.deg2rad(m[ro])
    theta[ro, 0, 0], theta[ro, 0, 1] = torch.cos(a), -torch.sin(a) * h / w
    theta[ro, 1, 0], theta[ro, 1, 1] = torch.sin(a) * w / h, torch.cos(a)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class BatchAugment:
    """Augment a uint8 batch (B, 3, H, W) on its own device into a normalised float batch
    (B, 3, S, S); ``S``, mean and std come from ``config`` (a model's ``.config``).

    ``train=True``: the distribution of :func:`~transfer_lib.data.transforms.train_transform`;
    ``train=False``: :func:`~transfer_lib.data.transforms.eval_transform`. Random parameters are
    drawn on the CPU from ``generator`` so a batch is reproducible on any device. After a call,
    ``last_params`` holds them (crops, flips, ops, signs, erasing) for inspection and tests.
    """

    def __init__(self, config: TransFERConfig, train: bool = True,
                 magnitude: int = T.RANDAUGMENT_MAGNITUDE, num_ops: int = T.RANDAUGMENT_OPS):
        self.size = int(config.input_size)
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.train, self.num_ops, self.magnitude = train, num_ops, magnitude
        self.mags = randaugment_magnitudes(magnitude, self.size)
        self.last_params: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"BatchAugment(size={self.size}, train={self.train}, magnitude={self.magnitude})"

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float 0..255 -> normalised."""
        return (x / 255.0 - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if not self.train:
            x = TF.resize(images, [self.size], antialias=True)
            x = TF.center_crop(x, [self.size, self.size])
            return self.normalise(x.float())
        return self._train(images, generator)

    def _train(self, images: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = images.shape
        s, dev = self.size, images.device
        crops = sample_crops(n, h, w, generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        ops = torch.randint(len(RANDAUGMENT_OPS), (self.num_ops, n), generator=g)
        signs = torch.where(torch.rand(self.num_ops, n, generator=g) < 0.5, -1.0, 1.0)
        erase = sample_erasing(n, s, s, generator=g)
        self.last_params = dict(crops=crops, flips=flips, ops=ops, signs=signs, erase=erase)

        # RandomResizedCrop + flip as two matrix products per image: rows (S, H), columns (S, W)
        top, left, ch, cw = crops.unbind(1)
        wy = _resample_weights(top, ch, h, s).to(dev)
        wx = _resample_weights(left, cw, w, s, flip=flips).to(dev)
        x = torch.matmul(torch.matmul(wy.unsqueeze(1), images.float()), wx.transpose(1, 2).unsqueeze(1))
        x = x.round_().clamp_(0, 255)  # (B, 3, S, S), whole grey levels as after a uint8 resize
        # RandAugment: op k of every sample, then the next op; values stay whole grey levels
        names = RANDAUGMENT_OPS
        for k in range(self.num_ops):
            op = ops[k]
            geo = (op >= 1) & (op <= 5)
            if geo.any():
                mag = torch.zeros(n)
                for i in _GEOMETRIC:
                    mag[op == i] = self.mags[names[i]]
                idx = geo.nonzero().squeeze(1)
                x[idx.to(dev)] = _affine(x[idx.to(dev)], op[idx], (mag * signs[k])[idx])
            for i in range(6, len(names)):
                idx = (op == i).nonzero().squeeze(1)
                if len(idx) == 0:
                    continue
                di = idx.to(dev)
                sub = x[di]
                name = names[i]
                if name in ("Brightness", "Color", "Contrast", "Sharpness"):
                    factor = (1.0 + self.mags[name] * signs[k][idx]).float().to(dev)
                    if name == "Brightness":
                        sub = _blend(sub, torch.zeros_like(sub), factor)
                    elif name == "Color":
                        sub = _blend(sub, _gray(sub), factor)
                    elif name == "Contrast":
                        mean = _gray(sub).floor().mean(dim=(1, 2, 3), keepdim=True)
                        sub = _blend(sub, mean.expand_as(sub), factor)
                    else:
                        sub = _sharpness(sub, factor)
                elif name == "Posterize":
                    q = 2.0 ** (8 - int(self.mags[name]))
                    sub = torch.floor(sub / q) * q
                elif name == "Solarize":
                    sub = torch.where(sub >= self.mags[name], 255.0 - sub, sub)
                elif name == "AutoContrast":
                    sub = _autocontrast(sub)
                else:
                    sub = _equalize(sub)
                x[di] = sub.round().clamp(0, 255)
        # normalise and RandomErasing (value 0 after normalisation) in one pass
        et, el, eh, ew = (v.to(dev).view(n, 1, 1) for v in erase.unbind(1))
        rows = torch.arange(s, device=dev).view(1, s, 1)
        cols = torch.arange(s, device=dev).view(1, 1, s)
        keep = ~((rows >= et) & (rows < et + eh) & (cols >= el) & (cols < el + ew))  # (B, S, S)
        scale = (1.0 / (255.0 * self.std)).to(dev)
        shift = (-self.mean / self.std).to(dev)
        return torch.addcmul(shift, x, scale).mul_(keep.unsqueeze(1))


# --------------------------------------------------------------------------------------------
# 3. The loader
# --------------------------------------------------------------------------------------------
def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class FastLoader:
    """Whole batches from an :class:`ImageCache`: (x, y) with x on ``device``.

    x is ``augment(uint8 batch)`` (float, normalised) or, with ``augment=None``, the uint8 batch
    (B, 3, S, S); y is (B,) long on ``device``. The order of epoch ``e`` depends only on
    ``(seed, e)``; the augmentation of step ``t`` only on ``(seed, e, rank, t)``, so a run
    resumed at an epoch boundary sees exactly the same batches.
    """

    def __init__(self, cache: ImageCache, batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, device: str | torch.device | None = None,
                 augment: BatchAugment | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, prefetch: int = 2):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in 0..world_size-1={world_size - 1}")
        self.cache, self.batch_size, self.shuffle, self.drop_last = cache, batch_size, shuffle, drop_last
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.augment, self.seed, self.rank, self.world_size = augment, seed, rank, world_size
        self.prefetch = prefetch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order."""
        n = len(self.cache)
        if self.shuffle:
            g = torch.Generator().manual_seed(_step_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.drop_last:
                per = n // self.world_size
                order = order[: per * self.world_size]
            else:
                per = math.ceil(n / self.world_size)
                pad = per * self.world_size - n
                order = torch.cat([order, order.repeat(math.ceil(pad / max(n, 1)) + 1)[:pad]])
            order = order[self.rank::self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self.indices()) if self.world_size > 1 else len(self.cache)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self) -> list[torch.Tensor]:
        order = self.indices()
        batches = list(order.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _host(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.cache.batch(idx)
        if self.device.type == "cuda":
            x, y = x.contiguous().pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self._batches()
        q: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch))
        stop = threading.Event()

        def produce() -> None:
            try:
                for idx in batches:
                    item = self._host(idx)
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                q.put(err)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            for step in range(len(batches)):
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                x, y = item
                nb = self.device.type == "cuda"
                x = x.to(self.device, non_blocking=nb)
                y = y.to(self.device, non_blocking=nb)
                if self.augment is not None:
                    g = torch.Generator().manual_seed(
                        _step_seed(self.seed, self.epoch, self.rank, step, 1))
                    x = self.augment(x, generator=g)
                yield x, y
        finally:
            stop.set()
