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
2. :class:`FastLoader` yields whole batches. On CUDA a thread gathers the rows of the next
   batches from the memmap and pins them while this one moves them to the GPU
   (``non_blocking``) and augments them there. On the CPU, ``workers`` threads (default: the
   cores) each gather and augment whole batches with one intra-op thread apiece, yielded in
   order (the augmentation of a step does not depend on which thread ran it). Order is a deterministic function of
   ``(seed, epoch)``; ``set_epoch(e)`` before each epoch, as with ``DistributedSampler``.
   ``rank``/``world_size`` shard the epoch for DistributedDataParallel (every rank gets the same
   number of samples: padded by wrap-around, or trimmed with ``drop_last``).
3. :class:`BatchAugment` draws every random parameter on the CPU from an explicit
   ``torch.Generator`` (seeded per epoch, rank and step by the loader), then runs the batch on
   its own device. ``train=True`` reproduces the distribution of the per-image train transform
   (:func:`~transfer_lib.data.transforms.train_transform`, same ``randaugment`` and ``erasing``
   switches): per-sample RandomResizedCrop (same sampling), horizontal flip, RandAugment,
   normalisation, RandomErasing (the authors' sampler, :func:`erase_mask`). ``train=False`` is
   the eval transform (short side to S, centre crop, normalise), within one grey level of the
   per-image one.

   * crop + resize + flip is one bilinear ``grid_sample`` from the source, clamped at the
     crop's edges: within one grey level of PIL's antialiased ``resized_crop`` when every crop
     is enlarged (always for a cache stored at <= S: RAF-DB and the synthetic set at 112).
     When some crop shrinks (e.g. 100 px -> the tiny model's 64), two matrix products with
     PIL's antialiasing triangle filter instead (also within one grey level);
   * ``randaugment="paddle"`` (the authors', the default): PaddleClas's 14 ops run after the
     resize on whole grey levels, each on the samples of a slot that drew it
     (:func:`paddle_op_batch`), with PIL's arithmetic: its bicubic (a = -1) for shears,
     nearest for translations and the rotation, grey-128 fill, its luma, blend truncation and
     SMOOTH filter. Given the same resized image each op equals PIL's output (the rotation up
     to a few pixels whose source point lies on a pixel edge);
   * ``randaugment="torchvision"``: 2 of torchvision's 14 ops, its magnitude table at
     magnitude 5, random sign. Its geometric ops (shear, translate, rotate) are folded into the
     crop's ``grid_sample`` when nothing before them in the sample's chain needs the unwarped
     image (the crop, Identity, geometric, Brightness, Color, Posterize, Solarize: per-pixel ops
     that keep a zero fill at zero, so they commute with the warp). torchvision applies them to
     the resized uint8 image with nearest interpolation; here the point is interpolated
     bilinearly from the source once. Whole-pixel translations are identical; shear and
     rotation differ by interpolation only (a few grey levels per image on average, the same
     geometry and the same zero-filled area). A geometric op after Contrast, Sharpness,
     AutoContrast or Equalize (about 10 % of samples) runs afterwards, nearest, as torchvision
     does. The photometric ops run once per slot on the samples that drew them, on whole grey
     levels (rounded after each op, as uint8 would be); the batch is processed in the order of
     its first op so each of that slot's ops works on one contiguous slice.

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
import io
import json
import math
import os
import queue
import sys
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
from transfer_lib.models.config import TransFERConfig
from transfer_lib.utils import atomic
from transfer_lib.utils.errors import DataError

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


#: Temporaries of earlier versions: ``NAME.tmpPID-THREAD.npy``, removed once their process is gone.
LEGACY_TEMP = r"^.*\.tmp(?P<pid>[0-9]+)(?:-(?:(?!\.tmp).)*)?$"


def remove_stale_temporaries(cache_dir: str | os.PathLike) -> list[Path]:
    """Delete the half-written files that builds killed before they could clean up left in
    ``cache_dir`` (hundreds of MB each on RAF-DB): this program's ``.NAME.PID.XXXXXXXX.tmp`` and
    an earlier version's ``NAME.tmpPID-THREAD.npy``
    (:func:`transfer_lib.utils.atomic.remove_stale_temporaries`); files of a process still running are
    kept. Returns the files removed."""
    return atomic.remove_stale_temporaries(cache_dir, legacy=[LEGACY_TEMP])


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
    remove_stale_temporaries(cache_dir)
    cached = _read_cache(meta_path, img_path, lab_path, key, size)
    if cached is None:
        n = len(dataset)
        # each file whole or not at all (a corrupt image, Ctrl-C, a full disk leave no partial
        # file), images and labels before the meta, without which there is no cache (_read_cache)
        with atomic.atomic_path(img_path) as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                            shape=(n, size, size, 3))

            def fill(i: int) -> None:
                arr[i] = _to_store(dataset.load_image(i), size)

            # PIL releases the GIL while decoding, so threads decode in parallel
            with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
                for _ in pool.map(fill, range(n), chunksize=64):
                    pass
            arr.flush()
            del arr
        labels = io.BytesIO()
        np.save(labels, np.asarray(dataset.targets, dtype=np.int64), allow_pickle=False)
        atomic.atomic_write_bytes(lab_path, labels.getvalue())
        meta = dict(version=CACHE_VERSION, key=key, n=n, size=size,
                    classes=list(dataset.classes), root=str(getattr(dataset, "root", "")))
        atomic.atomic_write_text(meta_path, json.dumps(meta, indent=1))
        for old in cache_dir.glob(f"{prefix}*"):  # stale caches of this data set and split
            if not old.name.startswith(stem.name) and ".tmp" not in old.name:
                old.unlink(missing_ok=True)
        cached = _read_cache(meta_path, img_path, lab_path, key, size)
        if cached is None:
            raise DataError(f"the cache {img_path} could not be read back just after it was "
                            f"written; check the disk, or give another --cache-dir")
    images, labels, classes = cached
    return ImageCache(images, labels, classes, img_path)


def _read_cache(meta_path: Path, img_path: Path, lab_path: Path, key: str, size: int):
    """(images, labels, classes) of a complete cache, or None when there is none. A damaged one
    (unreadable or truncated JSON, arrays missing or of the wrong shape) is removed with a
    warning, so that the caller builds it again."""
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(img_path, mmap_mode="r")
        labels = torch.from_numpy(np.load(lab_path))
        n = int(meta["n"])
        if meta["key"] != key or images.shape != (n, size, size, 3) or labels.shape != (n,):
            raise ValueError(f"{n} images of {size} px expected, found {images.shape} and "
                             f"{tuple(labels.shape)} labels")
        return images, labels, tuple(meta["classes"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"warning: the cache {meta_path.with_suffix('')}* is damaged ({err}); rebuilding it",
              file=sys.stderr, flush=True)
        for f in (meta_path, img_path, lab_path):
            f.unlink(missing_ok=True)
        return None


# --------------------------------------------------------------------------------------------
# 2. Batched augmentation
# --------------------------------------------------------------------------------------------
#: torchvision RandAugment's ops, in its order. Magnitudes at bin ``m`` of 31 follow its table.
RANDAUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
                   "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
                   "AutoContrast", "Equalize")
_GEOMETRIC = (1, 2, 3, 4, 5)
#: Ops that act on each pixel alone and keep 0 at 0: a nearest warp with zero fill commutes with them.
_PER_PIXEL = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 10, 11])


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


def _resample_weights(start: torch.Tensor, length: torch.Tensor, src: int, out: int,
                      flip: torch.Tensor | None = None) -> torch.Tensor:
    """(n, out, src) weights that resample the window [start, start + length) of a line of
    ``src`` pixels to ``out`` pixels: a triangle (bilinear) filter widened when shrinking, as
    PIL and torchvision's antialiased resize do (taps outside the window are dropped and the rest
    renormalised, as when PIL resizes the cropped image); ``flip`` reverses the output.

    Only the few taps of each output pixel are computed ((n, out, K), K <= 2 * support + 2) and
    scattered into the dense matrix, so building it costs little next to using it."""
    n = len(start)
    scale = (length / out).double().view(-1, 1, 1)  # source pixels per output pixel
    support = scale.clamp(min=1.0)
    centre = start.double().view(-1, 1, 1) + (torch.arange(out, dtype=torch.float64).view(1, -1, 1)
                                              + 0.5) * scale
    taps = int(math.ceil(2 * float(support.max()))) + 2 if n else 1
    first = torch.floor(centre - support - 0.5) + 1  # first pixel j with |j + 0.5 - centre| < support
    j = first + torch.arange(taps, dtype=torch.float64).view(1, 1, -1)  # (n, out, K)
    w = (1 - (j + 0.5 - centre).abs() / support).clamp(min=0)
    lo = start.double().view(-1, 1, 1)
    inside = (j >= lo) & (j < lo + length.double().view(-1, 1, 1))  # PIL resizes the cropped image
    w = torch.where(inside, w, torch.zeros_like(w))
    w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
    if flip is not None:
        f = flip.view(-1, 1, 1)
        w, j = torch.where(f, w.flip(1), w), torch.where(f, j.flip(1), j)
    dense = torch.zeros(n, out, src, dtype=torch.float32)
    return dense.scatter_add_(2, j.clamp(0, src - 1).long(), w.float())


def resized_crops(images: torch.Tensor, crops: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """RandomResizedCrop + horizontal flip of a uint8 batch (B, 3, H, W) on its device: float
    (B, 3, S, S), within one grey level of PIL's antialiased ``resized_crop`` (+ flip) of each
    image once rounded. ``crops`` (B, 4) long (top, left, h, w), ``flips`` (B,) bool."""
    _, _, h, w = images.shape
    dev = images.device
    if bool((crops[:, 2:] > size).any()):
        # some crop shrinks: two matrix products per image, rows (S, H) and columns (S, W),
        # with the antialiasing triangle filter
        top, left, ch, cw = crops.unbind(1)
        wy = _resample_weights(top, ch, h, size).to(dev, non_blocking=True)
        wx = _resample_weights(left, cw, w, size, flip=flips).to(dev, non_blocking=True)
        x = torch.matmul(wy.unsqueeze(1), images.float())
        return torch.matmul(x, wx.transpose(1, 2).unsqueeze(1))
    # every crop is enlarged (always when the cache is stored at <= S): PIL's triangle filter is
    # then plain bilinear, clamped at the crop's edges; one grid_sample, ~4x cheaper
    grid = _warped_crop_grid(crops, flips, h, w, size, device=dev)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)  # (B, 1, H, W)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * a + (1 - f) * b).clamp(0, 255)


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's SHARPEN-style blend: the 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 on the inner
    pixels (borders kept), as box sums of slices (a grouped conv2d is far slower on the CPU)."""
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    blurred = ((box + 4 * x[..., 1:-1, 1:-1]) / 13.0).round_()
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
    """Per-channel histogram equalisation, torchvision's rule, all channels of all images at once
    (one bincount over values offset by 256 per channel)."""
    b, c, h, w = x.shape
    v = x.round().clamp(0, 255).long().view(b * c, h * w)
    offset = torch.arange(b * c, device=x.device).view(-1, 1) * 256
    hist = torch.bincount((v + offset).view(-1), minlength=b * c * 256).view(b * c, 256).float()
    last = hist.gather(1, v.amax(1, keepdim=True))  # count of the highest value present
    step = torch.div(h * w - last, 255, rounding_mode="floor")  # (bc, 1)
    safe = step.clamp(min=1)
    lut = torch.div(hist.cumsum(1) + torch.div(safe, 2, rounding_mode="floor"), safe,
                    rounding_mode="floor")
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = lut.gather(1, v)
    out = torch.where(step > 0, out, v.float())
    return out.view(b, c, h, w)


def _affine_theta(op: torch.Tensor, mag: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse maps (n, 2, 3) in normalised coordinates (-1..1, pixel centres at
    (2 i + 1) / size - 1) of the geometric RandAugment ops: shear about the top-left corner as
    torchvision does, translation in whole pixels, rotation about the centre."""
    n = len(op)
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    m = mag.float()
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
    return theta


def _pixel_maps(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse maps ``theta`` (n, 2, 3, normalised coordinates, align_corners=False) as
    (n, 2, 3) maps between pixel indices (pixel centres at whole numbers)."""
    n = len(theta)
    t = torch.zeros(n, 3, 3, dtype=torch.float64)
    t[:, :2] = theta.double()
    t[:, 2, 2] = 1
    to_norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=torch.float64)
    to_pix = torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    return (to_pix @ t @ to_norm)[:, :2].float()


def _affine_index(theta: torch.Tensor, h: int, w: int, ix: torch.Tensor | None = None,
                  iy: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest input pixel (ix, iy) (float, whole numbers, (n, h, w)) and whether it lies inside,
    for the inverse maps ``theta`` (n, 2, 3) applied to output pixels (``ix``, ``iy``; default
    every pixel): grid_sample's nearest with align_corners=False (ties may round either way)."""
    m = _pixel_maps(theta, h, w).to(theta.device).view(-1, 6, 1, 1)
    if ix is None:
        ix = torch.arange(w, device=theta.device, dtype=torch.float32).view(1, 1, w)
        iy = torch.arange(h, device=theta.device, dtype=torch.float32).view(1, h, 1)
    jx = torch.addcmul(m[:, 2], m[:, 0], ix).addcmul(m[:, 1], iy).round_()
    jy = torch.addcmul(m[:, 5], m[:, 3], ix).addcmul(m[:, 4], iy).round_()
    return jx, jy, (jx >= 0) & (jx <= w - 1) & (jy >= 0) & (jy <= h - 1)


def _affine(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """The geometric RandAugment ops, nearest neighbour, zero fill, as one gather per batch:
    each output pixel reads the input pixel its inverse map lands in."""
    n, c, h, w = x.shape
    ix, iy, valid = _affine_index(_affine_theta(op, mag, h, w), h, w)
    src = torch.where(valid, iy * w + ix, torch.zeros_like(ix)).long().view(n, 1, h * w)
    out = x.reshape(n, c, h * w).gather(2, src.to(x.device).expand(n, c, h * w))
    return (out * valid.to(x.device).view(n, 1, h * w)).view(n, c, h, w)


def _homog(theta: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(theta), 3, 3, dtype=torch.float64)
    out[:, :2] = theta.double()
    out[:, 2, 2] = 1
    return out


def _warped_crop_grid(crops: torch.Tensor, flips: torch.Tensor, h: int, w: int, s: int,
                      warps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (),
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample coordinates (n, S, S, 2) (align_corners=False) of crop (top, left, ch, cw)
    resized to S x S, flipped, then warped by geometric ops: ``warps`` lists, in the order they
    are applied, (sample indices, op, signed magnitude).

    Each sample's chain is one affine map (3x3 products, evaluated per pixel), clamped to
    the crop's pixel centres as PIL clamps the resize at the crop's edges. Points that an op
    would fill (outside the image before that op) get a point far outside, which grid_sample's
    zero padding turns into 0. The geometric ops are thus interpolated bilinearly together with
    the resize (one interpolation from the source, instead of resize, round, nearest warp)."""
    n = len(crops)
    top, left, ch, cw = (v.double() for v in crops.unbind(1))
    # crop map: normalised output (-1..1 over S) -> normalised source, flip included
    sx = torch.where(flips, -1.0, 1.0).double() * cw / w
    crop = torch.zeros(n, 3, 3, dtype=torch.float64)
    crop[:, 0, 0], crop[:, 0, 2] = sx, (2 * left + cw) / w - 1
    crop[:, 1, 1], crop[:, 1, 2] = ch / h, (2 * top + ch) / h - 1
    crop[:, 2, 2] = 1
    chain = torch.eye(3, dtype=torch.float64).expand(n, 3, 3).clone()  # output -> warped image
    axis = (torch.arange(s, dtype=torch.float32, device=device) * 2 + 1) / s - 1
    xs, ys = axis.view(1, 1, s), axis.view(1, s, 1)  # per-pixel work on ``device``, 3x3 maths on the CPU
    sub = torch.unique(torch.cat([idx for idx, _, _ in warps])) if warps else torch.zeros(0, dtype=torch.long)
    valid = None
    if len(sub):
        pos = torch.full((n,), -1, dtype=torch.long)
        pos[sub] = torch.arange(len(sub))
        valid = torch.ones(len(sub), s, s, dtype=torch.bool, device=device)
        for idx, op, mag in reversed(warps):  # the last op's inverse first
            chain[idx] = _homog(_affine_theta(op, mag, s, s)) @ chain[idx]
            t = chain[idx, :2].float().view(len(idx), 6, 1, 1).to(device)
            ok = None
            for c in range(2):  # inside the image this op was applied to
                plane = torch.addcmul(t[:, 3 * c + 2], t[:, 3 * c], xs).addcmul(t[:, 3 * c + 1], ys)
                inside = plane.abs_() < 1
                ok = inside if ok is None else ok.logical_and_(inside)
            valid[pos[idx].to(device)] &= ok
    # The grid, one coordinate at a time. Unwarped samples: x depends on the column only and y
    # on the row only, so each is a clamped (n, S) line broadcast into the grid. Warped samples:
    # full (m, S, S) planes, clamped, with the filled points sent far outside.
    theta = (crop @ chain)[:, :2].float().view(n, 6, 1, 1).to(device)
    grid = torch.empty(n, s, s, 2, device=device)
    line_shape = ((n, 1, s), (n, s, 1))
    sub = sub.to(device)
    planes = []
    for c, (size, start, length) in enumerate(((w, left, cw), (h, top, ch))):
        lo = ((2 * start + 1) / size - 1).float().view(n, 1, 1).to(device)  # first, last crop pixel
        hi = ((2 * (start + length) - 1) / size - 1).float().view(n, 1, 1).to(device)
        line = torch.addcmul(theta[:, 3 * c + 2], theta[:, 4 * c], (xs, ys)[c])  # (n, 1, S) / (n, S, 1)
        grid[..., c] = torch.minimum(torch.maximum(line, lo), hi).view(line_shape[c])
        if len(sub):
            t, lo_s, hi_s = theta[sub], lo[sub], hi[sub]
            plane = torch.addcmul(t[:, 3 * c + 2], t[:, 3 * c], xs).addcmul(t[:, 3 * c + 1], ys)
            plane = torch.minimum(torch.maximum(plane, lo_s, out=plane), hi_s, out=plane)
            planes.append(plane.masked_fill_(~valid, -4.0))
    if planes:
        grid.index_copy_(0, sub, torch.stack(planes, -1))
    return grid


# --------------------------------------------------------------------------------------------
# PaddleClas's RandAugment on a batch (the authors'; transforms.paddle_op is the per-image one)
# --------------------------------------------------------------------------------------------
def paddle_affine_coeffs(name: str, level: float, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 6) float64 PIL ``AFFINE`` data (a, b, c, d, e, f) of a PaddleClas geometric op for
    samples with ``sign`` (n,) +-1: the output pixel (x, y) reads the input point
    (a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f)."""
    n = len(sign)
    s = sign.double()
    out = torch.zeros(n, 6, dtype=torch.float64)
    out[:, 0] = out[:, 4] = 1.0
    if name == "shearX":
        out[:, 1] = level * s
    elif name == "shearY":
        out[:, 3] = level * s
    elif name == "translateX":
        out[:, 2] = level * w * s
    elif name == "translateY":
        out[:, 5] = level * h * s
    elif name == "rotate":  # PIL's Image.rotate(level) about the centre, whatever the sign
        a = -math.radians(level)
        m = [round(math.cos(a), 15), round(math.sin(a), 15), 0.0,
             round(-math.sin(a), 15), round(math.cos(a), 15), 0.0]
        cx, cy = w / 2.0, h / 2.0
        m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx
        m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy
        out[:] = torch.tensor(m, dtype=torch.float64)
    else:
        raise ValueError(f"{name!r} is not a geometric PaddleClas op")
    return out


def _pil_cubic(v1, v2, v3, v4, d):
    """PIL's cubic convolution of a transform (a = -1) at fraction ``d`` between v2 and v3."""
    return v2 + d * ((v3 - v1) + d * ((2 * (v1 - v2) + v3 - v4) + d * (v2 - v1 - v3 + v4)))


def pil_affine(x: torch.Tensor, coeffs: torch.Tensor, bicubic: bool = False,
               fill: float = 128.0) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, coeffs, NEAREST | BICUBIC, fillcolor=fill)`` on a
    batch of whole grey levels (n, C, H, W), per sample ``coeffs`` (n, 6) (see
    :func:`paddle_affine_coeffs`). Points outside the image get ``fill``; nearest takes the pixel
    the point lies in; bicubic is PIL's (a = -1, taps clamped to the image, truncated to whole
    levels). Coordinates in float64, so it matches PIL up to points that land on a pixel edge."""
    n, c, h, w = x.shape
    dev = x.device
    cf = coeffs.to(dev, torch.float64).view(n, 6, 1, 1)
    px = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w) + 0.5
    py = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1) + 0.5
    xin = cf[:, 0] * px + cf[:, 1] * py + cf[:, 2]  # (n, H, W)
    yin = cf[:, 3] * px + cf[:, 4] * py + cf[:, 5]
    inside = ((xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)).view(n, 1, h * w)
    flat = x.reshape(n, c, h * w)

    def tap(iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:  # (n, C, H*W) float64
        idx = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long().view(n, 1, h * w)
        return flat.gather(2, idx.expand(n, c, h * w)).double()

    if not bicubic:
        out = tap(yin.floor(), xin.floor())
    else:
        xs, ys = xin - 0.5, yin - 0.5
        x0, y0 = xs.floor(), ys.floor()
        dx, dy = (xs - x0).view(n, 1, h * w), (ys - y0).view(n, 1, h * w)
        rows = [_pil_cubic(*(tap(y0 + j, x0 + i) for i in (-1, 0, 1, 2)), dx) for j in (-1, 0, 1, 2)]
        out = _pil_cubic(*rows, dy).clamp(0, 255).floor()
    out = torch.where(inside, out, torch.full_like(out, fill))
    return out.to(x.dtype).view(n, c, h, w)


def _pil_blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``Image.blend(degenerate, image, factor)`` (ImageEnhance): in float32, truncated, clipped."""
    f = factor.float().view(-1, 1, 1, 1).to(image.device)
    return ((image - degenerate).float() * f + degenerate.float()).clamp_(0, 255).floor_()


def _pil_luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion, (n, 1, H, W) whole levels: (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    r, g, b = x.double().unbind(1)
    return torch.floor((19595 * r + 38470 * g + 7471 * b + 32768) / 65536).unsqueeze(1)


def _pil_smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageFilter.SMOOTH`` ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded; border pixels kept)."""
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    out = x.clone()
    out[..., 1:-1, 1:-1] = torch.floor((box + 4 * x[..., 1:-1, 1:-1]) / 13.0 + 0.5)
    return out


def _pil_autocontrast(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): each channel stretched to 0..255, truncated."""
    xd = x.double()
    lo = xd.amin(dim=(2, 3), keepdim=True)
    hi = xd.amax(dim=(2, 3), keepdim=True)
    # 255 / (hi - lo) as Python divides (torch's ``255.0 / t`` multiplies by 1 / t: off by an ulp)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1)
    out = (xd * scale + (-lo * scale)).floor().clamp(0, 255)
    return torch.where(hi > lo, out, xd).to(x.dtype)


def paddle_op_batch(x: torch.Tensor, name: str, level: float, sign: torch.Tensor) -> torch.Tensor:
    """One PaddleClas RandAugment op (:data:`~transfer_lib.data.transforms.PADDLE_OPS`) on a
    batch (n, 3, H, W) of whole grey levels (float), ``sign`` (n,) +-1 per sample: the batched
    twin of :func:`transfer_lib.data.transforms.paddle_op`, the same numbers as PIL's (tests:
    equal, or within a grey level where float rounding or a pixel edge decides)."""
    n, _, h, w = x.shape
    if name in ("shearX", "shearY", "translateX", "translateY", "rotate"):
        coeffs = paddle_affine_coeffs(name, level, sign, h, w)
        return pil_affine(x, coeffs, bicubic=name.startswith("shear"), fill=float(T.PADDLE_FILL[0]))
    factor = 1.0 + level * sign.double()
    if name == "brightness":
        return _pil_blend(torch.zeros_like(x), x, factor)
    if name == "color":
        return _pil_blend(_pil_luma(x).to(x.dtype).expand_as(x), x, factor)
    if name == "contrast":
        mean = torch.floor(_pil_luma(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
        return _pil_blend(mean.to(x.dtype).expand_as(x), x, factor)
    if name == "sharpness":
        return _pil_blend(_pil_smooth(x), x, factor)
    if name == "posterize":
        q = 2.0 ** (8 - int(level))
        return torch.floor(x / q) * q
    if name == "solarize":
        return torch.where(x >= level, 255.0 - x, x)
    if name == "autocontrast":
        return _pil_autocontrast(x)
    if name == "equalize":
        return _equalize(x.contiguous())
    if name == "invert":
        return 255.0 - x
    raise ValueError(f"unknown PaddleClas RandAugment op {name!r}")


def erase_mask(erase: torch.Tensor, size: int, erasing: str, device=None) -> torch.Tensor:
    """(n, 3, S, S) bool: the values the authors' RandomErasing sets to 0 for boxes ``erase``
    (n, 4) of :func:`~transfer_lib.data.transforms.sample_authors_erasing`; ``"config"``: boxes of
    the CHW image (rows x1.., columns y1.., every channel), ``"authors"``: of its HWC view (the
    top row, columns x1.., channels y1..)."""
    n = len(erase)
    x1, y1, h, w = (v.to(device).view(n, 1) for v in erase.unbind(1))
    ar = torch.arange(size, device=device).view(1, size)
    if erasing == "config":
        rows = (ar >= x1) & (ar < x1 + h)  # (n, S)
        cols = (ar >= y1) & (ar < y1 + w)
        return (rows.view(n, 1, size, 1) & cols.view(n, 1, 1, size)).expand(n, 3, size, size)
    ch = torch.arange(3, device=device).view(1, 3)
    cols = (ar >= x1) & (ar < x1 + h)  # the HWC view's dim 1: columns
    chans = (ch >= y1) & (ch < y1 + w)  # its dim 2: channels
    top = (torch.arange(size, device=device) == 0).view(1, 1, size, 1)
    return chans.view(n, 3, 1, 1) & top & cols.view(n, 1, 1, size)


class BatchAugment:
    """Augment a uint8 batch (B, 3, H, W) on its own device into a normalised float batch
    (B, 3, S, S); ``S``, mean and std come from ``config`` (a model's ``.config``).

    ``train=True``: the distribution of :func:`~transfer_lib.data.transforms.train_transform`;
    ``train=False``: :func:`~transfer_lib.data.transforms.eval_transform`. Random parameters are
    drawn on the CPU from ``generator`` so a batch is reproducible on any device. After a call,
    ``last_params`` holds them (crops, flips, ops, signs, erasing) for inspection and tests.
    """

    def __init__(self, config: TransFERConfig, train: bool = True,
                 magnitude: int = T.RANDAUGMENT_MAGNITUDE, num_ops: int = T.RANDAUGMENT_OPS,
                 randaugment: str = "paddle", erasing: str = "authors"):
        if randaugment not in T.RANDAUGMENTS:
            raise ValueError(f"randaugment={randaugment!r} is not one of {', '.join(T.RANDAUGMENTS)}")
        if erasing not in T.ERASINGS:
            raise ValueError(f"erasing={erasing!r} is not one of {', '.join(T.ERASINGS)}")
        self.size = int(config.input_size)
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.train, self.num_ops, self.magnitude = train, num_ops, magnitude
        self.randaugment, self.erasing = randaugment, erasing
        self.mags = randaugment_magnitudes(magnitude, self.size)
        self.levels = T.paddle_levels(magnitude)
        self.last_params: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (f"BatchAugment(size={self.size}, train={self.train}, magnitude={self.magnitude}, "
                f"randaugment={self.randaugment}, erasing={self.erasing})")

    def _sample_erasing(self, n: int, g: torch.Generator | None) -> torch.Tensor:
        """The erasing boxes (n, 4) of this batch (h = 0: none), as the per-image transform."""
        s = self.size
        shape = (s, s, 3) if self.erasing == "authors" else (3, s, s)
        return T.sample_authors_erasing(n, shape, generator=g)

    def _erase(self, x: torch.Tensor, erase: torch.Tensor) -> torch.Tensor:
        """RandomErasing on the normalised batch, in place (0 after normalisation, the mean)."""
        if self.erasing == "off" or not bool((erase[:, 2] > 0).any()):
            return x
        return x.masked_fill_(erase_mask(erase, self.size, self.erasing, x.device), 0.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float 0..255 -> normalised."""
        return (x / 255.0 - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.device.type == "cpu" and torch.get_num_threads() > 1:
            # one intra-op thread: these ops are small and many, and OpenMP's threads spin at
            # every one of them (tens of times slower on a busy machine); FastLoader runs batches
            # in parallel instead. The caller's setting is restored.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self(images, generator)
            finally:
                torch.set_num_threads(threads)
        if not self.train:
            x = TF.resize(images, [self.size], antialias=True)
            x = TF.center_crop(x, [self.size, self.size])
            return self.normalise(x.float())
        return self._train(images, generator)

    def _train(self, images: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        if self.randaugment == "paddle":
            return self._train_paddle(images, g)
        return self._train_torchvision(images, g)

    def _train_paddle(self, images: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Crop + flip, PaddleClas's RandAugment on the resized image (as the authors: each op
        after the resize, on whole grey levels), normalise, erasing."""
        n, _, h, w = images.shape
        dev = images.device
        crops = sample_crops(n, h, w, generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        ops = torch.randint(len(T.PADDLE_OPS), (self.num_ops, n), generator=g)
        signs = torch.where(torch.rand(self.num_ops, n, generator=g) < 0.5, -1.0, 1.0)
        erase = self._sample_erasing(n, g)
        self.last_params = dict(crops=crops, flips=flips, ops=ops, signs=signs, erase=erase)
        x = resized_crops(images, crops, flips, self.size).round_()  # (B, 3, S, S) whole levels
        for k in range(self.num_ops):  # slot k: each op on the samples that drew it
            for i in ops[k].unique().tolist():
                idx = (ops[k] == i).nonzero().squeeze(1)
                d = idx.to(dev)
                name = T.PADDLE_OPS[i]
                x.index_copy_(0, d, paddle_op_batch(x.index_select(0, d), name, self.levels[name],
                                                    signs[k][idx]))
        return self._erase(self.normalise(x), erase)

    def _train_torchvision(self, images: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Crop + flip, torchvision's RandAugment (geometric ops folded into the crop where they
        can be, see the module's docstring), normalise, erasing."""
        n, _, h, w = images.shape
        s, dev = self.size, images.device
        crops = sample_crops(n, h, w, generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        ops = torch.randint(len(RANDAUGMENT_OPS), (self.num_ops, n), generator=g)
        signs = torch.where(torch.rand(self.num_ops, n, generator=g) < 0.5, -1.0, 1.0)
        erase = self._sample_erasing(n, g)
        self.last_params = dict(crops=crops, flips=flips, ops=ops, signs=signs, erase=erase)

        # Geometric RandAugment ops are folded into the crop's grid_sample when nothing before
        # them in the sample's chain needs the unwarped image: the crop itself and the ops that
        # act on each pixel alone (Identity, the geometric ops, Brightness, Color, Posterize,
        # Solarize; these map a zero fill to zero, so they commute with a nearest warp).
        geo_mag = torch.tensor([0.0] + [self.mags[RANDAUGMENT_OPS[i]] for i in _GEOMETRIC])
        is_geo = (ops >= 1) & (ops <= 5)
        enlarging = not bool((crops[:, 2:] > s).any())
        fused = torch.zeros_like(is_geo)
        if enlarging:
            chain_ok = torch.ones(n, dtype=torch.bool)
            for k in range(self.num_ops):
                fused[k] = is_geo[k] & chain_ok
                chain_ok &= torch.isin(ops[k], _PER_PIXEL)
        # RandAugment with few passes over the batch: it is processed in the order of its first
        # op (cur[r] = the sample in row r), so that each op of the first slot works on one
        # contiguous slice; that order is given to the crop parameters, so it costs nothing.
        # Later slots take each op's rows with index_select / index_copy_.
        keys = torch.where(fused, 0, ops)  # a folded geometric op is done: Identity
        cur = torch.argsort(keys[0], stable=True)
        row_of = torch.argsort(cur)  # row of each sample
        warps = []
        for k in range(self.num_ops):
            idx = fused[k].nonzero().squeeze(1)
            if len(idx):
                warps.append((row_of[idx], ops[k][idx], geo_mag[ops[k][idx]] * signs[k][idx]))
        images = images.index_select(0, cur.to(dev))  # uint8, source size: a cheap copy
        if enlarging and warps:
            grid = _warped_crop_grid(crops[cur], flips[cur], h, w, s, warps, device=dev)
            x = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        else:
            x = resized_crops(images, crops[cur], flips[cur], s)
        # whole grey levels as after a uint8 resize; a convex combination of 0..255 needs no clamp
        x = x.round_()  # (B, 3, S, S)
        # op k of every sample, then the next op; values stay whole grey levels
        for k in range(self.num_ops):
            key = keys[k][cur]
            if k == 0:
                ends = [0] + torch.bincount(key, minlength=len(RANDAUGMENT_OPS)).cumsum(0).tolist()
                groups = [(i, slice(ends[i], ends[i + 1])) for i in range(1, len(RANDAUGMENT_OPS))
                          if ends[i + 1] > ends[i]]
            else:
                groups = [(i, (key == i).nonzero().squeeze(1)) for i in key.unique().tolist() if i]
            geo = [r for i, r in groups if i <= 5]
            if geo:  # the geometric ops not folded into the crop, one gather
                rows = slice(geo[0].start, geo[-1].stop) if k == 0 else torch.cat(geo)  # ops 1..5 adjoin
                op_k, sign_k = ops[k][cur], signs[k][cur]
                self._apply(x, rows, lambda t, r, o=op_k, sg=sign_k: _affine(t, o[r], geo_mag[o[r]] * sg[r]))
            for i, rows in groups:
                if i >= 6:
                    name = RANDAUGMENT_OPS[i]
                    self._apply(x, rows, lambda t, r, name=name, sg=signs[k][cur]: self._color(t, name, sg[r]))
        x = x.index_select(0, row_of.to(dev))  # back to the batch's order
        scale = (1.0 / (255.0 * self.std)).to(dev)
        shift = (-self.mean / self.std).to(dev)
        return self._erase(x.mul_(scale).add_(shift), erase)  # in place: x is our own buffer

    @staticmethod
    def _apply(x: torch.Tensor, rows, fn) -> None:
        """x[rows] = fn(x[rows], rows) in place; ``rows`` a slice or an index tensor."""
        if isinstance(rows, slice):
            x[rows] = fn(x[rows], torch.arange(rows.start, rows.stop))
        else:
            d = rows.to(x.device)
            x.index_copy_(0, d, fn(x.index_select(0, d), rows))

    def _color(self, sub: torch.Tensor, name: str, sign: torch.Tensor) -> torch.Tensor:
        """One photometric RandAugment op on the samples ``sub`` that drew it (0..255 floats)."""
        if name in ("Brightness", "Color", "Contrast", "Sharpness"):
            factor = (1.0 + self.mags[name] * sign).float().to(sub.device)
            if name == "Brightness":
                return (sub * factor.view(-1, 1, 1, 1)).clamp_(0, 255).round_()
            if name == "Color":
                return _blend(sub, _gray(sub), factor).round_()
            if name == "Contrast":
                mean = _gray(sub).floor().mean(dim=(1, 2, 3), keepdim=True)
                return _blend(sub, mean.expand_as(sub), factor).round_()
            return _sharpness(sub, factor).round_()
        if name == "Posterize":
            q = 2.0 ** (8 - int(self.mags[name]))
            return torch.floor(sub / q) * q
        if name == "Solarize":
            return torch.where(sub >= self.mags[name], 255.0 - sub, sub)
        if name == "AutoContrast":
            return _autocontrast(sub).round_()
        return _equalize(sub)


# --------------------------------------------------------------------------------------------
# 3. The loader
# --------------------------------------------------------------------------------------------
def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class FastLoader:
    """Whole batches from an :class:`ImageCache`: (x, y) with x on ``device``.

    x is ``augment(uint8 batch)`` (float, normalised) or, with ``augment=None``, the uint8 batch
    (B, 3, S, S); y is (B,) long on ``device``. The order of epoch ``e`` (a permutation, or
    with ``sample_weights`` draws with replacement) depends only on ``(seed, e)``; the
    augmentation of step ``t`` only on ``(seed, e, rank, t)``, so a run resumed at an epoch
    boundary sees exactly the same batches.
    """

    def __init__(self, cache: ImageCache, batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, device: str | torch.device | None = None,
                 augment: BatchAugment | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, prefetch: int = 2, workers: int | None = None,
                 sample_weights: torch.Tensor | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in 0..world_size-1={world_size - 1}")
        self.cache, self.batch_size, self.shuffle, self.drop_last = cache, batch_size, shuffle, drop_last
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.augment, self.seed, self.rank, self.world_size = augment, seed, rank, world_size
        self.prefetch = prefetch
        #: per-sample weights: each epoch is len(cache) draws with replacement in proportion to
        #: them (class-balanced sampling), instead of a permutation
        self.sample_weights = sample_weights
        #: CPU device: threads that each gather and augment whole batches (one intra-op thread
        #: each: parallel over batches scales on a busy machine, OpenMP inside one batch does not)
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order."""
        n = len(self.cache)
        if self.shuffle:
            g = torch.Generator().manual_seed(_step_seed(self.seed, self.epoch))
            if self.sample_weights is not None:
                order = torch.multinomial(self.sample_weights, n, replacement=True, generator=g)
            else:
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
        if self.device.type == "cpu" and self.augment is not None and self.workers > 1:
            return self._iter_cpu_threads()
        return self._iter_pipelined()

    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(_step_seed(self.seed, self.epoch, self.rank, step, 1))

    def _iter_cpu_threads(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """CPU: ``workers`` threads each gather and augment whole batches, yielded in order."""
        batches = self._batches()

        def work(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = self.cache.batch(batches[step])
            return self.augment(x, generator=self._generator(step)), y

        pool = ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(1,))
        ahead = self.workers + max(0, self.prefetch)
        pending: list = []
        try:
            for step in range(len(batches)):
                while len(pending) < ahead and step + len(pending) < len(batches):
                    pending.append(pool.submit(work, step + len(pending)))
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False)

    def _iter_pipelined(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One thread gathers (and on CUDA pins) the next batches; this one copies them to the
        device (``non_blocking``) and augments them there."""
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
                    x = self.augment(x, generator=self._generator(step))
                yield x, y
        finally:
            stop.set()
