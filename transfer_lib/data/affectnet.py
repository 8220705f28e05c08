"""AffectNet (manually annotated part), 7 or 8 expressions.

``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` list
``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression,
valence, arousal``; images lie under ``Manually_Annotated_Images/``. Codes 8-10 (none,
uncertain, non-face) are dropped; ``affectnet7`` also drops 7 (contempt). The validation list is
the test split (AffectNet's test set is not public); the ``val`` split is carved from the training
list (:data:`~transfer_lib.data.base.VAL_CARVED`: 10 % of each class, seed 0) and ``train`` is the
rest. A header line is optional (some copies of ``validation.csv`` have none); one that is
there must name the nine columns in this order, and every row must have nine cells: the
columns are read by position, so a shifted one would give wrong labels without a word.

Images are returned whole by default; ``crop_face=True`` crops the annotated face box
(face_x, face_y, face_width, face_height), for copies whose images are not already face crops.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image

from transfer_lib.data.base import (
    VAL_CARVED,
    FolderListing,
    ImageListDataset,
    carve,
    load_rgb,
    missing,
    open_text,
)
from transfer_lib.utils.errors import DataError

AFFECTNET_CLASSES: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust",
                                      "Anger", "Contempt")
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
#: The list each split is read from (``val`` is carved from the training list).
#: Why AffectNet's codes beyond the classes are left out (code 7, contempt, only by affectnet7).
LEFT_OUT = {8: "none (code 8)", 9: "uncertain (code 9)", 10: "non-face (code 10)"}
LISTS = {"train": "training.csv", "val": "training.csv", "test": "validation.csv"}
LAYOUT = """\
  ROOT/Manually_Annotated_file_lists/training.csv     subDirectory_filePath,face_x,face_y,
  ROOT/Manually_Annotated_file_lists/validation.csv   face_width,face_height,facial_landmarks,
                                                      expression,valence,arousal
  ROOT/Manually_Annotated_Images/<subDirectory_filePath>   (e.g. 689/737db2483489148d783ef278f43.jpg)"""


def _escapes(name: str) -> bool:
    """Whether a list's image path points outside the image folder (absolute, a drive, ``..``)."""
    for path in (PurePosixPath(name), PureWindowsPath(name)):
        if path.is_absolute() or path.anchor or ".." in path.parts:
            return True
    return False


class AffectNet(ImageListDataset):
    name = "affectnet"

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 num_classes: int = 7, crop_face: bool = False):
        if split not in LISTS:
            raise ValueError(f"split={split!r} must be 'train', 'val' or 'test'")
        if num_classes not in (7, 8):
            raise ValueError(f"num_classes={num_classes} must be 7 or 8")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise missing("AffectNet folder", root, LAYOUT)
        list_file = root / "Manually_Annotated_file_lists" / LISTS[split]
        image_dir = root / "Manually_Annotated_Images"
        if not list_file.is_file():
            raise missing("AffectNet list", list_file, LAYOUT)
        if not image_dir.is_dir():
            raise missing("AffectNet image folder", image_dir, LAYOUT)
        listing = FolderListing()
        samples, boxes, seen = [], [], {}
        left_out: Counter[str] = Counter()
        with open_text(list_file) as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not "".join(row).strip():
                    continue  # a blank line (or one of spaces)
                where = f"{list_file}, line {lineno}"
                if lineno == 1 and set(COLUMNS) & {c.strip() for c in row}:
                    # the header: the columns are read by position, so each must be in its place
                    if [c.strip() for c in row] != list(COLUMNS):
                        raise DataError(f"{where}: expected the header '{','.join(COLUMNS)}' "
                                        f"(or no header), got {','.join(row)!r}")
                    continue
                if len(row) != len(COLUMNS):
                    raise DataError(f"{where}: expected {len(COLUMNS)} columns "
                                    f"({','.join(COLUMNS)}), got {len(row)}")
                name = row[0].strip()
                try:
                    code = int(row[6])
                    box = tuple(int(float(v)) for v in row[1:5])
                except ValueError:
                    raise DataError(f"{where}: expression and face box must be numbers, got "
                                    f"{row[1:5] + row[6:7]}") from None
                if not 0 <= code <= 10:
                    raise DataError(f"{where}: unknown expression code {code} for {name} "
                                    "(AffectNet codes are 0..10)")
                if code >= num_classes:  # 8-10 none/uncertain/non-face; 7 contempt
                    left_out[LEFT_OUT.get(code, "contempt (code 7; affectnet8 keeps it)")] += 1
                    continue
                if name in seen:
                    raise DataError(f"{where}: duplicate entry {name} (first at line {seen[name]})")
                seen[name] = lineno
                if _escapes(name):
                    raise DataError(f"{where}: image path {name!r} leaves the image folder: "
                                    f"paths are relative to {image_dir}, without '..' or a "
                                    f"leading '/' (e.g. 689/737db2483489148d783ef278f43.jpg)")
                image = image_dir / name
                if not listing.exists(image):
                    raise DataError(f"{where}: image missing: {image}")
                samples.append((image, code))
                boxes.append(box)
        if split != "test":  # val carved from the training list, train the rest
            kept = carve(list(zip(samples, boxes)), [k for _, k in samples], split)
            samples, boxes = [s for s, _ in kept], [b for _, b in kept]
        if not samples:
            what = ("usable rows" if split != "val" else
                    f"val rows: val is carved from the training list ({VAL_CARVED}), and no "
                    f"class has two")
            raise DataError(f"{list_file}: no {what}.\n{LAYOUT}")
        self.val_source = VAL_CARVED
        self.left_out = dict(left_out)
        self.boxes = boxes
        self.crop_face = crop_face
        self.name = f"affectnet{num_classes}"
        super().__init__(samples, AFFECTNET_CLASSES[:num_classes], root, split, transform,
                         sources=[list_file])

    def load_image(self, index: int) -> Image.Image:
        img = load_rgb(self.samples[index][0])
        if self.crop_face:
            x, y, w, h = self.boxes[index]
            if w > 0 and h > 0:
                img = img.crop((x, y, x + w, y + h))
        return img

