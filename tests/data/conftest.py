"""Small copies of each data set in its exact real layout, written by the tests themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_rafdb(root: Path, n_train: int = 6, n_test: int = 3, size: int = 100) -> Path:
    aligned = root / "basic" / "Image" / "aligned"
    aligned.mkdir(parents=True)
    (root / "basic" / "EmoLabel").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(1, n + 1):
            label = (i % 7) + 1
            lines.append(f"{split}_{i:05d}.jpg {label}")
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(aligned / f"{split}_{i:05d}_aligned.jpg")
    (root / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


FER_VOTES_HEADER = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
                    "disgust", "fear", "contempt", "unknown", "NF"]


def write_ferplus(root: Path, rows: list[tuple[str, str, list[int]]]) -> Path:
    """rows: (Usage, Image name, 10 votes). fer2013.csv gets matching pixel rows."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with (root / "fer2013.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for usage, _, _ in rows:
            px = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
            w.writerow([0, px, usage])
    with (root / "fer2013new.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FER_VOTES_HEADER)
        for usage, name, votes in rows:
            w.writerow([usage, name, *votes])
    return root


AFFECT_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                 "facial_landmarks", "expression", "valence", "arousal"]


def write_affectnet(root: Path, train_codes: list[int], val_codes: list[int],
                    header_in_val: bool = False) -> Path:
    images = root / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for fname, codes, header in (("training.csv", train_codes, True),
                                 ("validation.csv", val_codes, header_in_val)):
        with (lists / fname).open("w", newline="") as f:
            w = csv.writer(f)
            if header:
                w.writerow(AFFECT_HEADER)
            for i, code in enumerate(codes):
                sub = f"{100 + i % 3}/{fname[:3]}{i:04d}.jpg"
                (images / sub).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(images / sub)
                w.writerow([sub, 5, 6, 40, 44, "1.0;2.0;3.0;4.0", code, 0.1, -0.2])
    return root


@pytest.fixture
def rafdb_root(tmp_path: Path) -> Path:
    return write_rafdb(tmp_path / "RAF-DB")
