"""What every data set here shares: (image, label) pairs, ``.classes``, ``.targets``, and errors
that say what was expected and where (:class:`~transfer_lib.utils.errors.DataError`)."""

from __future__ import annotations

import codecs
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from transfer_lib.utils.atomic import process_alive  # noqa: F401  (re-exported: data.fast, synth)
from transfer_lib.utils.errors import DataError
from transfer_lib.utils.pool import interrupts_deferred

README_HINT = "See data/README.md for how to obtain the data set and where to put it."

#: A data set without a validation list of its own (RAF-DB, AffectNet) has its ``val`` split
#: carved from its training list: this share of each class, chosen with this seed.
VAL_FRACTION = 0.1
VAL_SEED = 0
#: ``val_source`` of a validation split read from the data set's own files.
VAL_FROM_FILE = "file"
#: ``val_source`` of a validation split carved from the training list (:func:`carve_validation`).
VAL_CARVED = (f"carved from train, {round(100 * VAL_FRACTION)} % per class, seed {VAL_SEED}")


def describe_val_source(source: str | None) -> str:
    """A ``val_source`` in words, for a sentence ("val: ...")."""
    if source == VAL_FROM_FILE:
        return "the data set's own validation list"
    return source or "of unknown origin"


def carve_validation(labels: Sequence[int], fraction: float = VAL_FRACTION,
                     seed: int = VAL_SEED) -> np.ndarray:
    """Which entries of a training list (by their 0-based labels, in file order) form the
    validation split carved from it: a boolean mask, stratified and deterministic.

    Class ``k``'s ``n`` images give ``round(fraction * n)`` (halves up) to val, at least one
    when ``n >= 2`` and never all of them, chosen by a permutation seeded by (``seed``, ``k``)
    alone: a class's choice does not depend on the other classes (AffectNet-7 and -8 carve the
    same images from their seven shared classes). The train split is the rest.
    """
    labels = np.asarray(labels, dtype=np.int64)
    mask = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels).tolist():
        idx = np.flatnonzero(labels == k)
        n = len(idx)
        m = min(n - 1, max(1 if n >= 2 else 0, int(np.floor(fraction * n + 0.5))))
        if m > 0:
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(k),)))
            mask[idx[rng.permutation(n)[:m]]] = True
    return mask


def carve(entries: Sequence, labels: Sequence[int], split: str) -> list:
    """The ``entries`` of ``split`` (``train`` or ``val``) when val is carved from a training
    list whose entries have ``labels`` (:func:`carve_validation`)."""
    mask = carve_validation(labels)
    keep = mask if split == "val" else ~mask
    return [e for e, kept in zip(entries, keep.tolist()) if kept]


def missing(what: str, path: Path, layout: str) -> DataError:
    """The error for a missing file or folder: what, where, the expected layout, the README. A
    folder where a file belongs (or the reverse) is said to be one, not "not found"."""
    path = Path(path)
    found = (" is a folder, not a file" if path.is_dir() and "folder" not in what else
             " is a file, not a folder" if path.is_file() and "folder" in what else
             " not found")
    return DataError(f"{what}{found}: {path}\nExpected layout:\n{layout.rstrip()}\n"
                     f"{README_HINT}")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image as PIL RGB, fully decoded; a corrupt file raises DataError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Image.DecompressionBombError as err:  # a header claiming a gigantic image
        raise DataError(f"refused image {path}: {err} Face images are a few hundred pixels "
                        f"wide: the file is damaged or not a face crop; remove it from the "
                        f"data set") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"corrupt or unreadable image: {path} ({err})") from None


def _text_encoding(path: Path) -> str:
    """UTF-16 when the file starts with its byte-order mark, else UTF-8 (a UTF-8 mark skipped)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return "utf-16" if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"


def _not_text(path: Path, err: UnicodeDecodeError, line: int | None = None) -> DataError:
    bad = err.object[err.start:err.start + 4]
    where = f"{path}, line {line}" if line is not None else str(path)
    return DataError(f"{where}: not UTF-8 text (bytes {bad!r} cannot be decoded as "
                     f"{err.encoding}). Label files are plain text: save it as UTF-8 (or ASCII).")


def read_text(path: Path) -> str:
    """A label file's text: UTF-8 with or without a byte-order mark, or UTF-16 with one (what
    some editors write as "Unicode"); anything else raises DataError naming file and line."""
    data = Path(path).read_bytes()
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise _not_text(path, err, data[:err.start].count(b"\n") + 1) from None


@contextlib.contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a large CSV for streaming, with :func:`read_text`'s encodings; a byte that does not
    decode raises DataError naming the file."""
    with open(path, encoding=_text_encoding(path), newline="") as f:
        try:
            yield f
        except UnicodeDecodeError as err:
            raise _not_text(path, err) from None




class FolderListing:
    """Which files exist, one directory listing per folder (faster than one stat per file,
    which matters on Google Drive)."""

    def __init__(self) -> None:
        self._dirs: dict[str, set[str]] = {}

    def exists(self, path: Path) -> bool:
        d = str(path.parent)
        if d not in self._dirs:
            try:
                self._dirs[d] = set(os.listdir(d))
            except OSError:
                self._dirs[d] = set()
        return path.name in self._dirs[d]


class WorkerLoader(DataLoader):
    """torch's DataLoader, whose worker processes start with Ctrl-C held back until they are up
    (:func:`~transfer_lib.utils.pool.interrupts_deferred`): one that came while they were forked
    was lost in the fork's handlers, and training went on."""

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        with interrupts_deferred():
            return super()._get_iterator()


class ImageListDataset(Dataset):
    """A list of (image path, 0-based label) read as PIL RGB, then ``transform`` if given.

    Attributes: ``classes`` (names in the data set's own order), ``samples`` (list of
    (path, label)), ``targets`` (list of int), ``root``, ``split``, ``name``, ``val_source``
    (how the data set's ``val`` split is obtained, whichever split this is: :data:`VAL_FROM_FILE`
    or :data:`VAL_CARVED`, when its ``train`` split then excludes those images; None unknown).
    """

    name = "images"
    native_size: int | None = None  # side of the images when they all share one square size
    val_source: str | None = None
    #: rows of the label files that the data set's own protocol leaves out, by reason (FERPlus's
    #: majority rule, AffectNet's codes beyond the classes); counted, never silent
    left_out: dict[str, int] = {}

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], root: Path,
                 split: str, transform: Callable | None = None,
                 sources: Sequence[Path] = ()) -> None:
        self.samples = [(Path(p), int(k)) for p, k in samples]
        self.targets = [k for _, k in self.samples]
        self.classes = tuple(classes)
        self.root, self.split, self.transform = Path(root), split, transform
        self._sources = [Path(s) for s in sources]

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        """The raw image of sample ``index`` (PIL RGB, no transform)."""
        return load_rgb(self.samples[index][0])

    def __getitem__(self, index: int):
        img = self.load_image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    def source_files(self) -> list[Path]:
        """Every file the samples come from (label files, images): keys the fast cache."""
        return self._sources + [p for p, _ in self.samples]

    def describe_left_out(self) -> str | None:
        """``left out by the data set's protocol: 1,203 no majority label, ...`` or None."""
        if not self.left_out:
            return None
        return "left out by the data set's protocol: " + ", ".join(
            f"{n:,} {why}" for why, n in self.left_out.items())

    def __repr__(self) -> str:
        left = f", left_out={self.left_out}" if self.left_out else ""
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, root='{self.root}'{left})")
