"""RAF-DB (basic): 7 expressions, aligned 100 x 100 faces. Also reads the synthetic set, which
is written in the same layout (chapter 2, ``book/02_data.ipynb``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from transfer_lib.data.base import FolderListing, ImageListDataset, missing, read_text
from transfer_lib.errors import DataError
from transfer_lib.models.config import RAFDB_CLASSES

LAYOUT = """\
  ROOT/basic/EmoLabel/list_patition_label.txt   lines 'train_00001.jpg 5' (labels 1..7)
       (or ROOT/basic/EmoLabel/train.txt and test.txt, same line format)
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


def read_label_file(path: Path, split: str | None, image_dir: Path,
                    listing: FolderListing | None = None) -> list[tuple[Path, int]]:
    """Parse a RAF-DB label file; keep the lines of ``split`` (by the ``train_``/``test_``
    prefix; None keeps all). Every problem is reported with file and line number."""
    listing = listing or FolderListing()
    samples: list[tuple[Path, int]] = []
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
        if prefix not in ("train", "test"):
            raise DataError(f"{where}: image name {name!r} does not start with 'train_' or 'test_'")
        if split is not None and prefix != split:
            continue
        stem = Path(name).stem
        image = image_dir / (stem + ".jpg" if stem.endswith("_aligned") else f"{stem}_aligned.jpg")
        if not listing.exists(image):
            raise DataError(f"{where}: image missing: {image}")
        samples.append((image, int(label) - 1))
    return samples


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
    """RAF-DB basic, split ``train`` (12,271) or ``test`` (3,068); labels 0..6 in RAF-DB order
    (:data:`~transfer_lib.models.config.RAFDB_CLASSES`)."""

    name = "rafdb"
    native_size = 100

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r} must be 'train' or 'test'")
        basic = find_basic(root)
        _refuse_incomplete_synthetic(basic)
        image_dir = basic / "Image" / "aligned"
        emolabel = basic / "EmoLabel"
        combined = emolabel / "list_patition_label.txt"
        per_split = emolabel / f"{split}.txt"
        if combined.is_file():
            label_file = combined
        elif per_split.is_file():
            label_file = per_split
        else:
            raise missing("RAF-DB label file", combined, LAYOUT)
        if not image_dir.is_dir():
            raise missing("RAF-DB image folder", image_dir, LAYOUT)
        samples = read_label_file(label_file, split, image_dir)
        if not samples:
            raise DataError(f"{label_file}: no '{split}_' images listed.\n{LAYOUT}")
        super().__init__(samples, RAFDB_CLASSES, basic, split, transform, sources=[label_file])
