"""Which label of its data set's own files each class index stands for.

A model's output ``i`` is class ``config.class_names[i]``; the data sets number their classes
differently, and a reader checking a prediction against a label file needs that number:

* RAF-DB (and the synthetic set, which uses RAF-DB's files): index ``i`` is label ``i + 1`` of
  ``list_patition_label.txt`` (1 Surprise ... 7 Neutral);
* AffectNet: index ``i`` is ``expression`` code ``i`` of the csv lists (0 Neutral ... 7 Contempt);
* FERPlus: index ``i`` is the ``i``-th vote column of ``fer2013new.csv`` (``neutral`` ...
  ``contempt``).

The data set is recognised from the class names and their order (the one source of truth:
:data:`~transfer_lib.models.config.RAFDB_CLASSES`, :data:`~transfer_lib.data.affectnet.
AFFECTNET_CLASSES`, :data:`~transfer_lib.data.ferplus.FERPLUS_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Sequence

from transfer_lib.data.affectnet import AFFECTNET_CLASSES
from transfer_lib.data.ferplus import FERPLUS_CLASSES, VOTE_COLUMNS
from transfer_lib.models.config import RAFDB_CLASSES


def dataset_labels(class_names: Sequence[str]) -> tuple[str, list] | None:
    """(what the labels are, one label per class index) for classes of a known data set, else
    None. E.g. ``("RAF-DB label", [1, 2, ..., 7])``."""
    names = tuple(class_names)
    if names == RAFDB_CLASSES:
        return "RAF-DB label", list(range(1, len(names) + 1))
    if len(names) in (7, 8) and names == AFFECTNET_CLASSES[:len(names)]:
        return "AffectNet expression", list(range(len(names)))
    if names == FERPLUS_CLASSES:
        return "FERPlus column", list(VOTE_COLUMNS[:len(names)])
    return None


def class_table(class_names: Sequence[str]) -> list[dict]:
    """One row per class, in the model's output order: ``{"index": i, "name": ...,
    "dataset_label": RAF-DB's number / AffectNet's code / FERPlus's column, or None}``."""
    found = dataset_labels(class_names)
    return [{"index": i, "name": name, "dataset_label": found[1][i] if found else None}
            for i, name in enumerate(class_names)]


def label_kind(class_names: Sequence[str]) -> str | None:
    """What ``dataset_label`` is for these classes (``"RAF-DB label"``, ...), or None."""
    found = dataset_labels(class_names)
    return found[0] if found else None


def describe_class(class_names: Sequence[str], index: int) -> str:
    """``"3 Happiness (RAF-DB label 4)"``: the index, the name and the data set's own label."""
    found = dataset_labels(class_names)
    own = f" ({found[0]} {found[1][index]})" if found else ""
    return f"{index} {class_names[index]}{own}"
