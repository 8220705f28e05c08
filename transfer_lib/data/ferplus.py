"""FERPlus: FER2013's 48 x 48 grey faces with Microsoft's ten-annotator labels, 8 classes.

``fer2013.csv`` (``emotion,pixels,Usage``) gives the pixels, ``fer2013new.csv`` (same row order:
``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``)
the votes. Labels follow the majority protocol of FERPlus's own code (:func:`majority_label`).
Both headers must be exactly these, every row must have their number of cells, every Usage must
be one of the three and every vote count a whole number, 0 or more (not all 0 for a face with an
image name): a file that is not is refused naming its line, never read into wrong labels.
Splits: ``train`` = Training, ``test`` = PrivateTest (the usual FERPlus test set), ``val`` =
PublicTest. Images are returned as PIL RGB (grey copied to three channels).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transfer_lib.data.base import VAL_FROM_FILE, ImageListDataset, missing, open_text
from transfer_lib.utils.errors import DataError

FERPLUS_CLASSES: tuple[str, ...] = ("Neutral", "Happiness", "Surprise", "Sadness", "Anger",
                                    "Disgust", "Fear", "Contempt")
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
LAYOUT = """\
  ROOT/fer2013.csv      emotion,pixels,Usage          (Kaggle FER2013; 35,887 rows)
  ROOT/fer2013new.csv   Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,
                        fear,contempt,unknown,NF       (Microsoft FERPlus; same row order)"""


def majority_label(votes: Sequence[float]) -> int | None:
    """The FERPlus majority label of one row of 10 vote counts, or None if the row is dropped.

    Emotions with at most one vote are zeroed (outliers); the winner is kept only if its count is
    over half of the remaining votes; a winner that is ``unknown`` or ``NF`` drops the row.
    """
    v = np.asarray(votes, dtype=float).copy()
    if v.shape != (len(VOTE_COLUMNS),):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} vote counts, got {v.shape}")
    v[v <= 1] = 0.0
    total = v.sum()
    k = int(np.argmax(v))
    if total <= 0 or v[k] <= 0.5 * total or k >= len(FERPLUS_CLASSES):
        return None
    return k


OLD_HEADER = ("emotion", "pixels", "Usage")
NEW_HEADER = ("Usage", "Image name", *VOTE_COLUMNS)


def _shown(row: list[str] | None, at_most: int = 80) -> str:
    """A CSV row as its line, cut short (a pixel row is 2,304 numbers); None: an empty file."""
    if row is None:
        return "nothing (the file is empty)"
    line = ",".join(row)
    return repr(line[:at_most] + ("..." if len(line) > at_most else ""))


def _vote_counts(cells: list[str], path: Path, lineno: int) -> list[float]:
    """A row's 10 vote counts: whole numbers, 0 or more (a NaN made a face Neutral)."""
    try:
        votes = [float(x) for x in cells]
    except ValueError:
        votes = None
    if votes is None or not all(math.isfinite(v) and v >= 0 and v == int(v) for v in votes):
        raise DataError(f"{path}, line {lineno}: vote counts must be whole numbers, 0 or more "
                        f"(how many annotators chose each column), got {cells}")
    return votes


class FERPlus(ImageListDataset):
    name = "ferplus"
    native_size = 48
    val_source = VAL_FROM_FILE  # PublicTest

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        if split not in USAGE:
            raise ValueError(f"split={split!r} must be one of {tuple(USAGE)}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise missing("FERPlus folder", root, LAYOUT)
        fer, new = root / "fer2013.csv", root / "fer2013new.csv"
        for f in (fer, new):
            if not f.is_file():
                raise missing("FERPlus file", f, LAYOUT)
        usage = USAGE[split]
        pixels, labels, samples = [], [], []
        left_out: Counter[str] = Counter()
        with open_text(fer) as f_old, open_text(new) as f_new:
            old_rows, new_rows = csv.reader(f_old), csv.reader(f_new)
            h_old, h_new = next(old_rows, None), next(new_rows, None)
            # the whole header, each column where it belongs: the rows are read by position
            for path, header, expected in ((fer, h_old, OLD_HEADER), (new, h_new, NEW_HEADER)):
                if header is None or [h.strip() for h in header] != list(expected):
                    raise DataError(f"{path}, line 1: expected the header "
                                    f"'{','.join(expected)}', got {_shown(header)}")
            lineno = 1
            for row_old, row_new in itertools.zip_longest(old_rows, new_rows):
                lineno += 1
                if row_old is None or row_new is None:  # one file ended: the other must too
                    n_old = lineno - 2 + sum(1 for r in itertools.chain([row_old], old_rows) if r)
                    n_new = lineno - 2 + sum(1 for r in itertools.chain([row_new], new_rows) if r)
                    if n_old != n_new:
                        raise DataError(
                            f"{fer} has {n_old} rows but {new} has {n_new}: the two files must "
                            f"list the same faces in the same order (35,887 rows each). One is "
                            f"cut short or from another release; download both again "
                            f"(data/README.md).")
                    break
                if len(row_new) != len(NEW_HEADER):
                    raise DataError(f"{new}, line {lineno}: expected 12 columns (Usage,Image name "
                                    f"and 10 vote counts), got {len(row_new)}: {_shown(row_new)}")
                if len(row_old) != len(OLD_HEADER):
                    raise DataError(f"{fer}, line {lineno}: expected 3 columns (emotion,pixels,"
                                    f"Usage), got {len(row_old)}")
                for path, value in ((new, row_new[0]), (fer, row_old[2])):
                    if value.strip() not in USAGE.values():
                        raise DataError(f"{path}, line {lineno}: Usage {value!r} is none of "
                                        f"{', '.join(USAGE.values())}")
                votes = _vote_counts(row_new[2:12], new, lineno)
                name = row_new[1].strip()
                if not name:  # no image name: FERPlus dropped this face
                    if row_new[0].strip() == usage:
                        left_out["no image name (dropped by FERPlus)"] += 1
                    continue
                if row_old[2].strip() != row_new[0].strip():
                    raise DataError(f"{fer}, line {lineno}: Usage {row_old[2]!r} differs from "
                                    f"{new}'s {row_new[0]!r}: the two files are not in the same order")
                if sum(votes) == 0:
                    raise DataError(f"{new}, line {lineno}: no votes for {name} (its 10 counts "
                                    f"are all 0), where FERPlus gives each face its annotators' "
                                    f"votes: the file is damaged or not FERPlus's")
                if row_new[0].strip() != usage:
                    continue
                k = majority_label(votes)
                if k is None:
                    left_out["no majority label (FERPlus's rule)"] += 1
                    continue
                try:
                    px = np.array(row_old[1].split(), dtype=np.int64)
                except ValueError:
                    px = np.zeros(0, np.int64)  # not numbers: reported below
                if px.size != 48 * 48 or px.min() < 0 or px.max() > 255:
                    raise DataError(f"{fer}, line {lineno}: expected 2304 whole numbers 0..255 "
                                    f"separated by spaces, got {row_old[1][:40]!r}"
                                    f"{'...' if len(row_old[1]) > 40 else ''}")
                pixels.append(px.astype(np.uint8).reshape(48, 48))
                labels.append(k)
                samples.append((Path(f"{fer}#line{lineno}"), k))
        if not samples:
            raise DataError(f"{new}: no usable '{usage}' rows.\n{LAYOUT}")
        #: (N, 48, 48) uint8 grey faces
        self.pixels = np.stack(pixels)
        self.left_out = {why: n for why, n in left_out.items() if n}
        super().__init__(samples, FERPLUS_CLASSES, root, split, transform, sources=[fer, new])

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index], mode="L").convert("RGB")

    def source_files(self) -> list[Path]:
        return list(self._sources)
