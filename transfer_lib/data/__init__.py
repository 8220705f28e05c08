"""Data: the real data sets, the synthetic set, transforms and the fast GPU pipeline.

Chapter 2 (``book/02_data.ipynb``) builds and shows them.

* :func:`build_dataset` (``rafdb``, ``ferplus``, ``affectnet7``, ``affectnet8``, ``synthetic``)
  returns a torch Dataset of (PIL RGB image or ``transform(image)``, label 0..C-1) with
  ``.classes``, ``.targets`` and ``.samples``. Bad data raises
  :class:`~transfer_lib.utils.errors.DataError` saying what was expected and where.
* :func:`ensure_synthetic` makes the embedded synthetic set on first use
  (:mod:`transfer_lib.data.synth`).
* :func:`train_transform` / :func:`eval_transform`: the authors' per-image transforms.
* :mod:`transfer_lib.data.fast`: decoded-once uint8 cache, a batch loader and batched
  augmentation on the batch's device (``build_cache``, ``FastLoader``, ``BatchAugment``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from transfer_lib.data.affectnet import AFFECTNET_CLASSES, AffectNet
from transfer_lib.data.base import ImageListDataset
from transfer_lib.data.ferplus import FERPLUS_CLASSES, FERPlus, majority_label
from transfer_lib.data.rafdb import RAFDB
from transfer_lib.data.synth import ensure_synthetic, render_face
from transfer_lib.data.transforms import eval_transform, train_transform

#: The formats a run reads (``--dataset`` of train, eval, ablate, attention): the synthetic set
#: is written in RAF-DB's, so a run on it names ``rafdb``.
FORMATS: tuple[str, ...] = ("rafdb", "ferplus", "affectnet7", "affectnet8")
#: Every name :func:`build_dataset` reads: the formats and ``synthetic``.
DATASETS: tuple[str, ...] = (*FORMATS, "synthetic")
#: The splits of each data set (``test`` is AffectNet's validation list, FERPlus's PrivateTest).
#: ``val`` (the trainer picks best.pt on it) is the data set's own validation list where it has
#: one (FERPlus's PublicTest, the synthetic set's ``val_`` images), otherwise carved from the
#: training list (RAF-DB, AffectNet: 10 % of each class, seed 0; ``train`` is then the rest). A
#: data set records which in ``val_source`` (:data:`~transfer_lib.data.base.VAL_CARVED`).
SPLITS: dict[str, tuple[str, ...]] = {name: ("train", "val", "test") for name in DATASETS}


def build_dataset(name: str, root: str | Path, split: str,
                  transform: Callable | None = None) -> ImageListDataset:
    """The data set ``name`` under ``root``, split ``train``, ``val`` or ``test`` (see
    :data:`SPLITS` for where ``val`` comes from; the data set's ``val_source`` says it).

    ``synthetic`` reads the synthetic set, which has RAF-DB's layout (make it with
    :func:`ensure_synthetic` or ``python -m transfer_lib synth``).
    """
    if name in ("rafdb", "synthetic"):
        ds = RAFDB(root, split, transform)
        ds.name = name
        return ds
    if name == "ferplus":
        return FERPlus(root, split, transform)
    if name in ("affectnet7", "affectnet8"):
        return AffectNet(root, split, transform, num_classes=int(name[-1]))
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def num_classes(name: str) -> int:
    """Number of classes of data set ``name``."""
    return {"rafdb": 7, "synthetic": 7, "ferplus": 8, "affectnet7": 7, "affectnet8": 8}[name]


__all__ = [
    "AFFECTNET_CLASSES", "DATASETS", "FERPLUS_CLASSES", "FORMATS", "SPLITS", "AffectNet", "FERPlus", "RAFDB",
    "build_dataset", "ensure_synthetic", "eval_transform", "majority_label", "num_classes",
    "render_face", "train_transform",
]
