"""RAF-DB (basic): 7 expressions, aligned 100 x 100 faces. Also reads the synthetic set, which
is written in the same layout (chapter 2, ``book/02_data.ipynb``).

Splits ``train``, ``val`` and ``test``. RAF-DB has no validation list: ``val`` is carved from
the ``train_`` images (:data:`~transfer_lib.data.base.VAL_CARVED`: 10 % of each class, seed 0)
and ``train`` is the rest. A label file that lists ``val_`` images (the synthetic set's; or a
``val.txt`` beside ``train.txt`` and ``test.txt``) gives ``val`` itself and ``train`` keeps every
``train_`` image. ``val_source`` says which.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from transfer_lib.data.base import (
    VAL_CARVED,
    VAL_FROM_FILE,
    FolderListing,
    ImageListDataset,
    carve,
    missing,
    read_text,
)
from transfer_lib.models.config import RAFDB_CLASSES
from transfer_lib.utils.errors import DataError

LAYOUT = """\
  ROOT/basic/EmoLabel/list_patition_label.txt   lines 'train_00001.jpg 5' (labels 1..7)
       (or ROOT/basic/EmoLabel/train.txt and test.txt, same line format; val_ lines optional)
  ROOT/basic/Image/aligned/train_00001_aligned.jpg ...
ROOT may also be the 'basic' folder itself."""


def find_basic(root: str | Path) -> Path:
    """The ``basic`` folder: ``root/basic`` or ``root`` itself."""
    root = Path(root).expanduser()
    for cand in (root / "basic", root):
        if (cand / "EmoLabel").is_dir() or (cand / "Image").is_dir():
            return cand
    if not root.exists():
        from transfer_lib.data.synth import interrupted_note

        if interrupted_note(root):
            raise DataError(f"data set folder not found: {root}.{interrupted_note(root)}")
        raise missing("RAF-DB folder", root, LAYOUT)
    raise missing("RAF-DB 'basic' folder (with EmoLabel/ and Image/)", root / "basic", LAYOUT)


#: The image-name prefixes of a label file's lines, one per split.
PREFIXES = ("train", "val", "test")


def read_label_entries(path: Path) -> list[tuple[str, str, int, int]]:
    """Every line of a RAF-DB label file as (split prefix, name, 0-based label, line number),
    checked (label, duplicates, prefix); every problem is reported with file and line number."""
    entries: list[tuple[str, str, int, int]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}, line {lineno}"
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'NAME LABEL' (e.g. 'train_00001.jpg 5'), got {line!r}")
        name, label = parts
        if not (label.isascii() and label.isdigit()) or not 1 <= int(label) <= len(RAFDB_CLASSES):
            raise DataError(f"{where}: unknown label {label!r} for {name} "
                            f"(RAF-DB labels are 1..{len(RAFDB_CLASSES)}: "
                            + ", ".join(f"{i + 1}={c}" for i, c in enumerate(RAFDB_CLASSES)) + ")")
        if name in seen:
            raise DataError(f"{where}: duplicate entry {name} (first at line {seen[name]})")
        seen[name] = lineno
        prefix = name.split("_", 1)[0]
        if prefix not in PREFIXES:
            raise DataError(f"{where}: image name {name!r} does not start with 'train_', 'val_' "
                            f"or 'test_'")
        entries.append((prefix, name, int(label) - 1, lineno))
    return entries


def _samples(path: Path, entries, image_dir: Path,
             listing: FolderListing | None = None) -> list[tuple[Path, int]]:
    """The (image, label) pairs of label-file ``entries``, each image checked to exist."""
    listing = listing or FolderListing()
    samples = []
    for _, name, label, lineno in entries:
        stem = Path(name).stem
        image = image_dir / (stem + ".jpg" if stem.endswith("_aligned") else f"{stem}_aligned.jpg")
        if not listing.exists(image):
            raise DataError(f"{path}, line {lineno}: image missing: {image}")
        samples.append((image, label))
    return samples


def read_label_file(path: Path, split: str | None, image_dir: Path,
                    listing: FolderListing | None = None) -> list[tuple[Path, int]]:
    """Parse a RAF-DB label file; keep the lines of ``split`` (by the ``train_``/``val_``/
    ``test_`` prefix; None keeps all), as listed (no carving). Every problem is reported with
    file and line number."""
    entries = [e for e in read_label_entries(path) if split is None or e[0] == split]
    return _samples(path, entries, image_dir, listing)


def _refuse_incomplete_synthetic(basic: Path) -> None:
    """A synthetic set whose marker says it is still being written (or was interrupted) is
    refused: its label file and images may not belong together."""
    from transfer_lib.data.synth import MARKER, read_marker

    for folder in (basic.parent, basic):
        marker = read_marker(folder)
        if marker is not None and marker["state"] != "complete":
            raise DataError(
                f"the synthetic set at {folder} is incomplete ({folder / MARKER} says "
                f"{marker['state']!r}): its generation was interrupted or is still running. "
                f"Run `python -m transfer_lib synth --out {folder}` again (it replaces the set), "
                f"or wait for the running one to finish.")


class RAFDB(ImageListDataset):
    """RAF-DB basic, split ``train`` (12,271 less the carved val), ``val`` (carved from train, or
    the ``val_`` images listed) or ``test`` (3,068); labels 0..6 in RAF-DB order
    (:data:`~transfer_lib.models.config.RAFDB_CLASSES`)."""

    name = "rafdb"
    native_size = 100

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        if split not in PREFIXES:
            raise ValueError(f"split={split!r} must be 'train', 'val' or 'test'")
        basic = find_basic(root)
        _refuse_incomplete_synthetic(basic)
        image_dir = basic / "Image" / "aligned"
        emolabel = basic / "EmoLabel"
        combined = emolabel / "list_patition_label.txt"
        if combined.is_file():
            files = {s: combined for s in PREFIXES}
            entries = read_label_entries(combined)
            has_val = any(e[0] == "val" for e in entries)
        else:
            has_val = (emolabel / "val.txt").is_file()
            # without a val list, train.txt holds val too (carved)
            wanted = split if split == "test" or has_val else "train"
            if not (emolabel / f"{wanted}.txt").is_file():
                raise missing("RAF-DB label file", combined, LAYOUT)
            files = {s: emolabel / f"{s}.txt" for s in PREFIXES}
            entries = read_label_entries(files[wanted])
        self.val_source = VAL_FROM_FILE if has_val else VAL_CARVED
        if not image_dir.is_dir():
            raise missing("RAF-DB image folder", image_dir, LAYOUT)
        if split == "test" or has_val:
            label_file = files[split]
            chosen = [e for e in entries if e[0] == split]
        else:  # train or val, val carved from the train_ images
            label_file = files["train"]
            listed = [e for e in entries if e[0] == "train"]
            chosen = carve(listed, [e[2] for e in listed], split)
        samples = _samples(label_file, chosen, image_dir)
        if not samples:
            what = (f"'{split}_' images listed" if split != "val" or has_val else
                    f"val images: val is carved from the 'train_' images ({VAL_CARVED}), and no "
                    f"class has two")
            raise DataError(f"{label_file}: no {what}.\n{LAYOUT}")
        super().__init__(samples, RAFDB_CLASSES, basic, split, transform, sources=[label_file])
