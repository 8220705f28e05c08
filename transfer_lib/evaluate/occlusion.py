"""Occlusion tests: accuracy with one facial part hidden (chapter 9, ``book/09_beyond.ipynb``).

MAD's argument is that a model must not lean on one part, because any part can be hidden. This
module measures it: the test faces are evaluated with none hidden and with each part of
:data:`~transfer_lib.data.synth.PARTS` (brows, eyes, nose, cheeks, mouth) hidden in turn.

    >>> result = evaluate_occlusion(model, "data/synthetic")
    >>> result["occlusion"]["none"]["accuracy"], result["occlusion"]["mouth"]["accuracy"]

How a part is hidden depends on the data set:

* **the synthetic set** (recognised by its marker file ``synthetic.json``): every test face is
  drawn again from its own seed with the part under a grey box (same identity, expression, pose,
  lighting and noise; :func:`~transfer_lib.data.synth.render_sample` with ``occlude_part=``) and
  JPEG-encoded at the sample's own quality, exactly as ``generate`` wrote it. Without a part,
  this gives the file on disk byte for byte (tests check it). The JPEG files are cached under
  ``<root>/occlusion/`` (:func:`rendered_split`; about 3 kB a face), so evaluating another
  checkpoint costs only its forward passes;
* **any other data set** (RAF-DB's aligned 100 x 100 faces and the others): a grey box (128)
  covers the part's region of the aligned layout, :data:`ALIGNED_PART_REGIONS`, on the image as
  read, before the eval transform (:func:`hide_part`).

``python -m transfer_lib eval --checkpoint RUN/last.pt --occlusion [--json F]`` prints the table;
``ablate`` records it for every row and seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transfer_lib.data.synth import PARTS
from transfer_lib.utils.errors import DataError, TransferError
from transfer_lib.utils.pool import chunk_size, map_chunks

#: The conditions of an occlusion test, in the order they are reported.
CONDITIONS: tuple[str, ...] = ("none", *PARTS)
#: Grey level of the box that hides a part (the synthetic generator's too).
FILL = 128

#: Boxes (x0, y0, x1, y1) hiding each part of an aligned face, as fractions of the image's width
#: and height (RAF-DB's aligned 100 x 100 faces: eyes at y 0.30-0.45, mouth at 0.67-0.98).
#: Measured from the synthetic generator, which draws its faces at the scale of RAF-DB's aligned
#: crops: :func:`measure_part_regions` (60 faces, seed 123) gives, for each part, the bounding box
#: of the pixels that its grey box covers in at least half of the faces; the values below are
#: those boxes, made symmetric about the vertical centre line. They were not checked on RAF-DB
#: itself (not available here); a face aligned higher or lower than the synthetic ones has its
#: parts partly outside them.
ALIGNED_PART_REGIONS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "brows": ((0.16, 0.15, 0.84, 0.34),),
    "eyes": ((0.17, 0.30, 0.83, 0.45),),
    "nose": ((0.39, 0.36, 0.61, 0.70),),
    "cheeks": ((0.17, 0.45, 0.43, 0.82), (0.57, 0.45, 0.83, 0.82)),
    "mouth": ((0.27, 0.67, 0.73, 0.98),),
}
#: Processes that draw the occluded synthetic faces (as ``synth.generate``: two cores here).
RENDER_WORKERS = 2


def parse_parts(parts: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parts from ``"eyes,mouth"`` or a sequence; None: all of :data:`PARTS`, in their order."""
    if parts is None:
        return PARTS
    names = [p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts)]
    names = [p for p in names if p]
    bad = [p for p in names if p not in PARTS]
    if bad or not names:
        raise TransferError(f"--parts: unknown part(s) {', '.join(bad) or '(none given)'}; "
                            f"allowed: {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in names)


# ---------------------------------------------------------------------------------------------
# Grey boxes on aligned faces (every data set but the synthetic one)
# ---------------------------------------------------------------------------------------------
def part_boxes(part: str, width: int, height: int,
               regions: dict = ALIGNED_PART_REGIONS) -> list[tuple[int, int, int, int]]:
    """The pixel boxes (x0, y0, x1, y1), end exclusive, that hide ``part`` in a width x height
    aligned face."""
    if part not in regions:
        raise TransferError(f"unknown part {part!r}; allowed: {', '.join(regions)}")
    return [(round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))
            for x0, y0, x1, y1 in regions[part]]


def hide_part(image: Image.Image | np.ndarray, part: str,
              regions: dict = ALIGNED_PART_REGIONS) -> Image.Image | np.ndarray:
    """A copy of ``image`` (PIL RGB, or an (H, W, 3) uint8 array) with ``part`` under a grey box
    (:data:`FILL`) at its :data:`ALIGNED_PART_REGIONS` place. Returns the same type."""
    as_pil = isinstance(image, Image.Image)
    x = np.array(image.convert("RGB") if as_pil else image, dtype=np.uint8, copy=True)
    h, w = x.shape[:2]
    for x0, y0, x1, y1 in part_boxes(part, w, h, regions):
        x[y0:y1, x0:x1] = FILL
    return Image.fromarray(x) if as_pil else x


def measure_part_regions(n: int = 60, seed: int = 123, share: float = 0.5,
                         threshold: int = 12) -> dict[str, tuple[tuple[float, float, float, float], ...]]:
    """Where the synthetic generator hides each part, as fractions of the image.

    Draws ``n`` faces (no natural occluder) with and without each part hidden and keeps the
    pixels that change by more than ``threshold`` grey levels in at least ``share`` of them; the
    box around them (for the cheeks, one box per half) is the part's region. This is how
    :data:`ALIGNED_PART_REGIONS` was measured.
    """
    from transfer_lib.data.synth import IMAGE_SIZE, _image_seed, render_sample

    hits = {p: np.zeros((IMAGE_SIZE, IMAGE_SIZE)) for p in PARTS}
    for i in range(n):
        base, _ = render_sample(i % 7, _image_seed(seed, "test", i), 0.0)
        for part in PARTS:
            img, _ = render_sample(i % 7, _image_seed(seed, "test", i), 0.0, occlude_part=part)
            hits[part] += np.abs(img.astype(int) - base.astype(int)).max(-1) > threshold
    regions = {}
    for part in PARTS:
        mask = hits[part] / n >= share
        halves = [mask]
        if part == "cheeks":  # two boxes, one a side
            left, right = mask.copy(), mask.copy()
            left[:, IMAGE_SIZE // 2:], right[:, :IMAGE_SIZE // 2] = False, False
            halves = [left, right]
        boxes = []
        for m in halves:
            ys, xs = np.nonzero(m)
            boxes.append((xs.min() / IMAGE_SIZE, ys.min() / IMAGE_SIZE,
                          (xs.max() + 1) / IMAGE_SIZE, (ys.max() + 1) / IMAGE_SIZE))
        regions[part] = tuple(tuple(float(v) for v in b) for b in boxes)
    return regions


class HiddenPartDataset(Dataset):
    """``base`` (a data set of this project, read without transform) with ``part`` hidden by
    :func:`hide_part` (None: nothing hidden), then ``transform``."""

    def __init__(self, base, part: str | None, transform=None) -> None:
        self.base, self.part, self.transform = base, part, transform
        self.targets, self.classes = base.targets, base.classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        img = self.base.load_image(index)
        if self.part is not None:
            img = hide_part(img, self.part)
        return (self.transform(img) if self.transform else img), self.targets[index]


# ---------------------------------------------------------------------------------------------
# Re-rendered synthetic faces
# ---------------------------------------------------------------------------------------------
def synthetic_root(root: str | os.PathLike) -> Path | None:
    """The folder holding the synthetic set's marker ``synthetic.json`` (``root``, or its parent
    when ``root`` is the ``basic`` folder), or None when ``root`` is not a synthetic set."""
    from transfer_lib.data.synth import MARKER

    root = Path(root)
    for folder in (root, root.parent) if root.name == "basic" else (root,):
        if (folder / MARKER).is_file():
            return folder
    return None


def synthetic_marker(root: str | os.PathLike) -> dict | None:
    """The generation parameters of the synthetic set at ``root`` (its ``synthetic.json``:
    generator version, seed, occlusion, balance, train and test sizes), or None when ``root`` is
    not a synthetic set. ``root`` may also be its ``basic`` folder."""
    from transfer_lib.data.synth import MARKER

    folder = synthetic_root(root)
    if folder is None:
        return None
    path = folder / MARKER
    try:
        marker = json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}); regenerate the synthetic set "
                        f"(delete {folder} and run again)") from None
    missing = [k for k in ("version", "seed", "occlusion") if k not in marker]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: it was not written by "
                        f"ensure_synthetic; regenerate the set")
    return marker


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """``image`` (H, W, 3) uint8 as the JPEG file ``synth.generate`` writes at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """A JPEG's pixels as (H, W, 3) uint8, decoded as the data sets read files (PIL, RGB)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def render_test_face(marker: dict, split: str, index: int, label: int,
                     part: str | None) -> bytes:
    """The JPEG bytes of sample ``index`` (0-based, file ``{split}_{index + 1:05d}``) of the
    synthetic set described by ``marker``, with ``part`` hidden (None: the file as written, so
    with the part a ``part_occlusion`` set hid in its train and val images, if any)."""
    from transfer_lib.data.synth import _image_seed, hidden_part, render_sample

    if part is None:
        part = hidden_part(marker["seed"], split, index, marker.get("part_occlusion", 0.0))
    img, quality = render_sample(label, _image_seed(marker["seed"], split, index),
                                 marker["occlusion"], occlude_part=part,
                                 task=marker.get("task", "additive"))
    return jpeg_bytes(img, quality)


def _render_chunk(job: tuple) -> dict[str, list[bytes]]:
    marker, split, items, parts = job
    return {part: [render_test_face(marker, split, index, label, part) for index, label in items]
            for part in parts}


def _save_jpegs(path: Path, jpegs: Sequence[bytes]) -> None:
    """JPEG files as one .npz: their bytes end to end (``jpeg``, uint8) and where each starts
    (``offsets``, int64, N + 1); no pickle, so it loads safely."""
    from transfer_lib.utils.atomic import atomic_path

    offsets = np.cumsum([0] + [len(j) for j in jpegs]).astype(np.int64)
    data = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # never a half-written cache
        np.savez(f, jpeg=data, offsets=offsets)


def _load_jpegs(path: Path) -> list[bytes]:
    with np.load(path, allow_pickle=False) as f:
        data, offsets = f["jpeg"], f["offsets"]
    return [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]


def _sample_index(path: Path, split: str) -> int:
    """0-based index of a synthetic sample from its file name ``{split}_00012_aligned.jpg``."""
    head, _, rest = path.name.partition("_")
    number = rest.split("_", 1)[0]
    if head != split or not number.isdigit():
        raise DataError(f"{path}: not a synthetic file name ({split}_00001_aligned.jpg)")
    return int(number) - 1


def occlusion_cache_dir(root: str | os.PathLike, marker: dict, split: str,
                        cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the re-rendered faces of ``root`` are kept: ``<cache_dir or root/occlusion>/
    {split}-v{version}-{hash of the marker}``, so another generator version or set never reads
    them. The data set folder is used when writable, else ``data/cache/occlusion``."""
    from transfer_lib.data.synth import GENERATOR_VERSION

    key = hashlib.sha1(json.dumps([marker, split, GENERATOR_VERSION], sort_keys=True).encode())
    name = f"{split}-v{marker['version']}-{key.hexdigest()[:12]}"
    if cache_dir is None:
        folder = synthetic_root(root) or Path(root)
        cache_dir = folder / "occlusion" if os.access(folder, os.W_OK) else Path("data/cache/occlusion")
    return Path(cache_dir) / name


def rendered_split(root: str | os.PathLike, dataset, parts: Sequence[str], *,
                   workers: int | None = None, cache_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> dict[str, list[bytes]]:
    """The faces of ``dataset`` (a split of the synthetic set at ``root``) drawn again with each
    of ``parts`` hidden: ``{part: [JPEG bytes, one per sample]}`` in ``dataset``'s order, the
    files that ``generate`` would have written with the part hidden (:func:`decode` reads one).

    Cached as ``{part}.npz`` in :func:`occlusion_cache_dir`; parts not cached yet are drawn in
    ``workers`` processes (default :data:`RENDER_WORKERS`). Raises
    DataError when the set was written by another generator version, or when drawing its first
    face again does not give its file's bytes (the generator changed without a version bump).
    """
    from transfer_lib.data.synth import GENERATOR_VERSION

    marker = synthetic_marker(root)
    if marker is None:
        raise DataError(f"{root} is not a synthetic set (no synthetic.json): hide parts with "
                        f"grey boxes instead (evaluate_occlusion does so)")
    if marker["version"] != GENERATOR_VERSION:
        raise DataError(
            f"the synthetic set at {root} was drawn by generator version {marker['version']}, "
            f"this library draws version {GENERATOR_VERSION}: its faces cannot be drawn again "
            f"with a part hidden. Regenerate it (delete {root}; ensure_synthetic rebuilds it).")
    split = dataset.split
    items = [(_sample_index(p, split), int(k)) for p, k in dataset.samples]
    folder = occlusion_cache_dir(root, marker, split, cache_dir)
    found: dict[str, list[bytes]] = {}
    for part in parts:
        path = folder / f"{part}.npz"
        if path.is_file():
            try:
                jpegs = _load_jpegs(path)
            except (OSError, ValueError, KeyError):
                continue  # unreadable: draw it again
            if len(jpegs) == len(items):
                found[part] = jpegs
    todo = [p for p in parts if p not in found]
    if not todo:
        return found
    first_path, _ = dataset.samples[0]
    if render_test_face(marker, split, items[0][0], items[0][1], None) != first_path.read_bytes():
        raise DataError(
            f"{first_path} differs from the face its seed draws now: the set at {root} was "
            f"written by another drawing of generator version {marker['version']}. Regenerate "
            f"it (delete {root}) so that its faces can be drawn again with a part hidden.")
    workers = workers or RENDER_WORKERS
    step = chunk_size(len(items), workers, 100)
    jobs = [(marker, split, items[i:i + step], todo) for i in range(0, len(items), step)]
    t0 = time.perf_counter()
    chunks = map_chunks(_render_chunk, jobs, workers)
    from transfer_lib.utils.atomic import atomic_write_text, remove_stale_temporaries

    folder.mkdir(parents=True, exist_ok=True)
    # what killed runs left: the shared naming, and this module's earlier .PART.PID.npz
    remove_stale_temporaries(folder, legacy=[r"^\.\w+\.(?P<pid>\d+)\.npz$"])
    for part in todo:
        found[part] = [j for c in chunks for j in c[part]]
        _save_jpegs(folder / f"{part}.npz", found[part])
    atomic_write_text(folder / "params.json", json.dumps(
        {"marker": marker, "split": split, "generator_version": GENERATOR_VERSION,
         "images": len(items)}, indent=1))
    if progress:
        print(f"drew {len(items)} faces x {len(todo)} part(s) in {time.perf_counter() - t0:.1f} s "
              f"-> {folder}", flush=True)
    return found


class JpegDataset(Dataset):
    """JPEG files in memory with labels, decoded as PIL RGB (as the data sets read files), then
    ``transform``."""

    def __init__(self, jpegs: Sequence[bytes], targets: Sequence[int], transform=None) -> None:
        self.jpegs, self.targets, self.transform = list(jpegs), list(targets), transform

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, index: int):
        with Image.open(io.BytesIO(self.jpegs[index])) as f:
            img = f.convert("RGB")
        return (self.transform(img) if self.transform else img), self.targets[index]


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------
def occlusion_sets(root: str | os.PathLike, dataset: str = "rafdb", split: str = "test",
                   parts: str | Sequence[str] | None = None, transform=None, *,
                   workers: int | None = None, cache_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> tuple[dict[str, Dataset], str]:
    """``({condition: Dataset of (transform(image), label)}, method)`` for ``"none"`` and each
    part; ``method`` is ``"re-rendered"`` (synthetic set) or ``"grey box"`` (any other)."""
    from transfer_lib.data import build_dataset

    parts = parse_parts(parts)
    if not Path(root).exists():
        raise DataError(f"data set folder not found: {root}. Expected the root of {dataset} in "
                        f"its distributed layout (see data/README.md).")
    try:
        base = build_dataset(dataset, root, split)
    except ValueError as err:  # e.g. a split the data set does not have
        raise DataError(f"{dataset} at {root}: {err}") from None
    if len(base) == 0:
        raise DataError(f"{dataset} at {root} has no {split} images: an occlusion test needs a "
                        f"{split} split")
    sets: dict[str, Dataset] = {"none": HiddenPartDataset(base, None, transform)}
    synthetic = dataset in ("rafdb", "synthetic") and synthetic_marker(root) is not None
    if synthetic:
        jpegs = rendered_split(root, base, parts, workers=workers, cache_dir=cache_dir,
                               progress=progress)
        sets.update({p: JpegDataset(jpegs[p], base.targets, transform) for p in parts})
    else:
        sets.update({p: HiddenPartDataset(base, p, transform) for p in parts})
    return sets, "re-rendered" if synthetic else "grey box"


@torch.no_grad()
def evaluate_occlusion(model: torch.nn.Module, root: str | os.PathLike, dataset: str = "rafdb",
                       *, split: str = "test", parts: str | Sequence[str] | None = None,
                       batch_size: int = 128, device: str | torch.device | None = None,
                       tta: str | None = None, workers: int | None = None,
                       cache_dir: str | os.PathLike | None = None,
                       progress: bool = False) -> dict:
    """Evaluate ``model`` on the ``split`` of ``dataset`` at ``root`` with nothing hidden and
    with each of ``parts`` (default all of :data:`PARTS`) hidden.

    Returns ``{"occlusion": {condition: {"accuracy", "mean_class_accuracy",
    "per_class_accuracy"}}, "conditions", "class_names", "num_samples", "method", "data",
    "dataset", "split", "regions", "synthetic", "seconds"}``; conditions are ``"none"`` then the
    parts, accuracies are fractions in [0, 1], ``per_class_accuracy`` a list in ``class_names``
    order (None for a class without test images). ``method`` is ``"re-rendered"`` or
    ``"grey box"``; ``regions`` the grey boxes used (None when re-rendered); ``synthetic`` the
    set's marker (None otherwise). Evaluation is in fp32 with the model's eval transform.
    """
    from transfer_lib.data.transforms import eval_transform
    from transfer_lib.evaluate import evaluate

    t0 = time.perf_counter()
    parts = parse_parts(parts)
    if device is None:
        device = next(model.parameters()).device
    sets, method = occlusion_sets(root, dataset, split, parts, eval_transform(model.config),
                                  workers=workers, cache_dir=cache_dir, progress=progress)
    classes = list(sets["none"].classes)
    if len(classes) != model.config.num_classes:
        raise TransferError(f"the model predicts {model.config.num_classes} classes but "
                            f"{dataset} has {len(classes)}: evaluate on the data set the model "
                            f"was trained for")
    table = {}
    for condition, data in sets.items():
        m = evaluate(model, data, device=device, batch_size=batch_size, tta=tta)
        table[condition] = {
            "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
            "per_class_accuracy": [m["per_class_accuracy"][c] for c in m["class_names"]],
        }
    return {
        "occlusion": table, "conditions": list(table), "class_names": classes,
        "num_samples": len(sets["none"]), "method": method, "data": str(root),
        "dataset": dataset, "split": split,
        "regions": None if method == "re-rendered" else
        {p: [list(b) for b in ALIGNED_PART_REGIONS[p]] for p in parts},
        "synthetic": synthetic_marker(root) if method == "re-rendered" else None,
        "tta": tta or "none", "seconds": time.perf_counter() - t0,
    }


def format_occlusion(result: dict, title: str | None = None) -> str:
    """The occlusion test as a plain-text table: accuracy, mean class accuracy and the drop
    from ``none``, in %."""
    table = result["occlusion"]
    lines = [title] if title else []
    how = ("each face drawn again with the part under a grey box" if result["method"] ==
           "re-rendered" else "a grey box on the part's region of the aligned face")
    lines.append(f"{result['num_samples']} {result['split']} images of {result['dataset']}; "
                 f"a part hidden: {how}")
    lines.append(f"{'hidden':<10}{'accuracy':>10}{'drop':>8}{'mean class':>12}")
    none = table["none"]["accuracy"] if "none" in table else None
    for condition, m in table.items():
        drop = "" if none is None or condition == "none" else f"{100 * (none - m['accuracy']):.2f}"
        lines.append(f"{condition:<10}{100 * m['accuracy']:>10.2f}{drop:>8}"
                     f"{100 * m['mean_class_accuracy']:>12.2f}")
    return "\n".join(lines)


__all__ = [
    "ALIGNED_PART_REGIONS", "CONDITIONS", "FILL", "HiddenPartDataset", "JpegDataset",
    "evaluate_occlusion", "format_occlusion", "hide_part", "measure_part_regions",
    "occlusion_cache_dir", "occlusion_sets", "parse_parts", "part_boxes", "render_test_face",
    "rendered_split", "synthetic_marker", "synthetic_root",
]
