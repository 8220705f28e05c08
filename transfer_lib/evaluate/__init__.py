"""Evaluation: accuracy, mean class accuracy, per-class accuracy and the confusion matrix.

One function, :func:`evaluate`, serves the trainer (every epoch), ``python -m transfer_lib eval``,
``ablate`` and the book, so every figure in the project is computed the same way:

    >>> metrics = evaluate(model, test_set)            # a Dataset of (image tensor, label)
    >>> metrics["accuracy"], metrics["mean_class_accuracy"]

``accuracy`` is the share of correct predictions (what the paper reports); ``mean_class_accuracy``
is the mean of the per-class recalls, which matters on RAF-DB, where Happiness is 39 % of the test
set and Fear 2 %. ``confusion_matrix[i][j]`` counts images of true class i predicted as j.
``classes`` names each class index with its data set's own label (RAF-DB 1..7, AffectNet's code,
FERPlus's column; :mod:`transfer_lib.data.labels`), and the text report prints both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from transfer_lib.data.base import WorkerLoader
from transfer_lib.utils.errors import TransferError

TTA_MODES: tuple[str, ...] = ("none", "flip")


def metrics_from_confusion(confusion: torch.Tensor, class_names: Sequence[str]) -> dict:
    """Accuracy, mean class accuracy and per-class accuracy from a (C, C) confusion matrix."""
    from transfer_lib.data.labels import class_table, label_kind

    confusion = confusion.to(torch.int64).cpu()
    total = int(confusion.sum())
    correct = int(confusion.diag().sum())
    support = confusion.sum(dim=1)
    per_class = {}
    recalls = []
    for i, name in enumerate(class_names):
        if int(support[i]) == 0:
            per_class[name] = None  # no test image of this class: no recall to report
            continue
        r = float(confusion[i, i]) / float(support[i])
        per_class[name] = r
        recalls.append(r)
    return {
        "accuracy": correct / total if total else 0.0,
        "mean_class_accuracy": sum(recalls) / len(recalls) if recalls else 0.0,
        "per_class_accuracy": per_class,
        "support": {name: int(support[i]) for i, name in enumerate(class_names)},
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
        "classes": class_table(class_names),
        "dataset_label_kind": label_kind(class_names),
        "num_samples": total,
    }


def check_class_names(model_names: Sequence[str], data_names: Sequence[str], source: str = "the model",
                      dataset: str = "the data set") -> None:
    """Refuse (TransferError) to score a model on a data set whose classes are other classes or
    in another order: the same count is not enough (AffectNet-7 and RAF-DB both have 7). A model
    without class names of its own (``class_0``, ...) is checked by count only."""
    model_names, data_names = tuple(model_names), tuple(data_names)
    if len(model_names) != len(data_names):
        raise TransferError(
            f"{source} predicts {len(model_names)} classes but {dataset} has {len(data_names)}: "
            f"evaluate on the data set the model was trained for")
    generic = model_names == tuple(f"class_{i}" for i in range(len(model_names)))
    if not generic and model_names != data_names:
        raise TransferError(
            f"{source} was trained on other classes than {dataset}'s: it predicts "
            f"({', '.join(model_names)}), {dataset} labels ({', '.join(data_names)}). Its scores "
            f"would be read in the wrong order: evaluate on the data set the model was trained "
            f"for (--dataset).")


def _as_batches(data, batch_size: int, workers: int) -> Iterable:
    if isinstance(data, Dataset):
        return WorkerLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                            persistent_workers=False)
    return data  # a DataLoader or any iterable of (images, labels) batches


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Dataset | DataLoader | Iterable, *,
             device: str | torch.device | None = None, batch_size: int = 128, workers: int = 0,
             tta: str | None = None, amp_dtype: torch.dtype | None = None,
             channels_last: bool = False, class_names: Sequence[str] | None = None) -> dict:
    """Evaluate ``model`` on ``data`` (a Dataset of (image tensor, label), or batches of them).

    tta: ``None``/``"none"``, or ``"flip"`` to average the softmax of each image and its mirror.
    amp_dtype: e.g. ``torch.bfloat16`` to run under autocast on a GPU. Returns the dict of
    :func:`metrics_from_confusion` plus ``tta``. The model is left in eval mode.
    """
    tta = tta or "none"
    if tta not in TTA_MODES:
        raise TransferError(f"--tta {tta!r} is not one of {', '.join(TTA_MODES)}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    names = list(class_names or model.config.class_names)
    if class_names is None and isinstance(data, Dataset) and hasattr(data, "classes"):
        check_class_names(names, data.classes, dataset=getattr(data, "name", "the data set"))
    n = len(names)
    confusion = torch.zeros(n, n, dtype=torch.int64, device=device)
    model.eval()
    for images, labels in _as_batches(data, batch_size, workers):
        images = images.to(device, non_blocking=True)
        labels = torch.as_tensor(labels).to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            probs = model(images).float().softmax(dim=1)
            if tta == "flip":
                probs = (probs + model(images.flip(-1)).float().softmax(dim=1)) / 2
        preds = probs.argmax(dim=1)
        if labels.numel() and int(labels.max()) >= n:
            raise TransferError(
                f"a label {int(labels.max())} is out of range for a model with {n} classes "
                f"({', '.join(names)}): evaluate on the data set the model was trained for"
            )
        confusion += torch.bincount(labels * n + preds, minlength=n * n).reshape(n, n)
    metrics = metrics_from_confusion(confusion, names)
    metrics["tta"] = tta
    return metrics


def format_metrics(metrics: dict, title: str | None = None) -> str:
    """A plain-text report: accuracy, mean class accuracy and a per-class table."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"accuracy             {100 * metrics['accuracy']:6.2f} %  "
                 f"({metrics['num_samples']} images)")
    lines.append(f"mean class accuracy  {100 * metrics['mean_class_accuracy']:6.2f} %")
    from transfer_lib.data.labels import class_table, label_kind

    names = list(metrics["per_class_accuracy"])
    kind = metrics.get("dataset_label_kind", label_kind(names))
    rows = metrics.get("classes") or class_table(names)
    label = kind or "label"
    lines.append(f"{'index':>5}  {'class':<12}{label:>16}{'accuracy':>10}{'images':>8}")
    for row in rows:
        acc = metrics["per_class_accuracy"][row["name"]]
        shown = "-" if acc is None else f"{100 * acc:.2f}"
        own = "-" if row["dataset_label"] is None else str(row["dataset_label"])
        lines.append(f"{row['index']:>5}  {row['name']:<12}{own:>16}{shown:>10}"
                     f"{metrics['support'][row['name']]:>8}")
    lines.append("index: the model's output; " + (f"{kind}: the class's label in the data set's "
                                                  f"own files" if kind else
                                                  "classes of no known data set"))
    return "\n".join(lines)


def check_split(dataset: str, split: str) -> None:
    """Refuse (TransferError) a split that ``dataset`` does not have, naming the ones it has."""
    from transfer_lib.data import SPLITS

    if split not in SPLITS.get(dataset, (split,)):
        raise TransferError(f"--split {split}: {dataset} has the splits "
                            f"{', '.join(SPLITS[dataset])}")


def load_eval_set(data: str | os.PathLike, dataset: str, config, split: str = "test"):
    """The ``split`` of ``dataset`` under ``data`` with the eval transform of ``config``."""
    from transfer_lib.data import build_dataset
    from transfer_lib.data.transforms import eval_transform

    check_split(dataset, split)
    if not os.path.exists(data):
        from transfer_lib.data.synth import interrupted_note

        raise TransferError(f"data set folder not found: {data}. Expected the root of {dataset} "
                            f"in its distributed layout (see docs: datasets as distributed)."
                            + interrupted_note(data))
    return build_dataset(dataset, data, split, transform=eval_transform(config))
