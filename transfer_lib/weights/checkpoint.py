"""Checkpoints of this project: written atomically, loaded safely.

A checkpoint is a ``dict`` saved with ``torch.save``: ``{"model": state_dict, "config":
TransFERConfig.to_dict(), ...}`` plus, for training checkpoints, optimiser, scheduler, scaler and
RNG states and the epoch. Everything in it is a tensor or a plain type, so it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from transfer_lib.utils.atomic import atomic_path
from transfer_lib.utils.errors import CheckpointError


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``
    (:func:`transfer_lib.utils.atomic.atomic_path`: the temporary is created 0666 less the umask, like
    any new file, and removed when the save fails).

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def load_failure(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in one line, for an error message.

    Torch's own message for a refused file advises loading it again with ``weights_only=False``;
    for a malicious file that runs its payload, so that advice is never passed on: a refused file
    is described by the globals it asks for.
    """
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text or "Weights only" in text:
        names = list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", text)))
        what = (f"it asks to run {', '.join(names)}" if names
                else "it holds objects other than tensors and plain types")
        return (f"refused by safe (weights-only) loading: {what}. A weights file needs none of "
                f"that; do not load it any other way unless you wrote it yourself")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    hint: str | None = None) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``) with clear errors; ``hint`` replaces
    the default advice for a file that does not load."""
    path = Path(path)
    if path.is_dir():
        best = " (it holds best.pt)" if (path / "best.pt").is_file() else ""
        raise CheckpointError(
            f"checkpoint {path} is a folder{best}, not a checkpoint file: give the .pt file in "
            f"it, e.g. {path / 'best.pt'} or {path / 'last.pt'}")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Expected a .pt file written by "
            f"`python -m transfer_lib train` (RUN_DIR/best.pt or RUN_DIR/last.pt)."
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not our checkpoint"
        raise CheckpointError(
            f"{path} is not a checkpoint this project can load safely ({load_failure(err)}). "
            + (hint or "Expected a torch.save file of tensors and plain types written by `train`; "
                       "for the authors' Paddle weights use --official.")
        ) from None
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a transfer_lib checkpoint: expected a dict with 'model' and 'config', "
            f"found {keys}"
        )
    return obj


def model_from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model a checkpoint was trained as, load its weights, return it in eval mode."""
    return model_and_checkpoint(path, map_location)[0]


def model_and_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """(:func:`model_from_checkpoint`'s model, the checkpoint dict it came from)."""
    from transfer_lib.models import TransFERConfig, model_from_config

    ckpt = load_checkpoint(path, map_location)
    try:
        if not isinstance(ckpt["config"], dict):
            raise ValueError(f"its config is a {type(ckpt['config']).__name__}, not a dict")
        config = TransFERConfig.from_dict(ckpt["config"])
        model = model_from_config(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} holds a model config this version of transfer_lib cannot build ({err}). "
            f"It was written by another version, or edited: evaluate it with the version that "
            f"trained it, or train again."
        ) from None
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except (RuntimeError, TypeError, AttributeError) as err:  # shapes that do not fit the config
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise CheckpointError(
            f"{path}: the weights do not fit the model its own config describes "
            f"({'; '.join(lines[:3]) or type(err).__name__}). The file was edited or pieced "
            f"together from two runs: use the RUN_DIR/best.pt or last.pt a run wrote."
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its own config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    check_finite_weights(model.state_dict(), path)
    return model.to(map_location).eval(), ckpt


def check_finite_weights(state: dict, source: str | os.PathLike) -> None:
    """Raise CheckpointError when a floating-point tensor of ``state`` (a state_dict) holds NaN
    or inf: such a model predicts NaN for every image. ``source`` names the file."""
    floating = [(name, v) for name, v in state.items()
                if torch.is_tensor(v) and (v.is_floating_point() or v.is_complex())]
    bad = [(name, int((~torch.isfinite(v)).sum()), v.numel()) for name, v in floating
           if not bool(torch.isfinite(v).all())]
    if bad:
        listed = ", ".join(f"{name} ({n} of {total} values)" for name, n, total in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(
            f"{source}: {len(bad)} of its {len(floating)} weight tensors hold NaN or infinite "
            f"values ({listed}{more}), so every prediction would be NaN. The training that wrote "
            f"it diverged or the file was damaged: use another checkpoint of the run, or train "
            f"again (a lower --lr)."
        )


def _percent(value) -> str:
    """A checkpoint's recorded accuracy (a fraction) as "12.34 %", or "not recorded" where the
    file holds none or no number (an edited file)."""
    try:
        return f"{100 * float(value):.2f} %"
    except (TypeError, ValueError):
        return "not recorded"


def describe_checkpoint(path: str | os.PathLike, ckpt: dict) -> dict:
    """Which weights of a run ``ckpt`` (loaded from ``path``) holds, for the reader of a score.

    ``kind`` is ``best`` (best.pt: the epoch with the highest *validation* accuracy; a best.pt
    written before the validation split was chosen on the test split, and says so), ``last``
    (last.pt: the latest epoch, the final weights of a complete run) or ``other``;
    ``selected_on`` is the split that chose a best.pt (``validation`` or ``test``). With the
    run's ``summary.json`` beside the file, the run's best and final figures are added. ``note``
    says it in a sentence.
    """
    path = Path(path)
    epoch = ckpt.get("epoch")
    info: dict = {}
    if "optimizer" in ckpt:
        kind, what = "last", f"last.pt-style training checkpoint, epoch {epoch}"
    elif "accuracy" in ckpt and ckpt.get("selected_on") == "validation":
        kind = "best"
        info["selected_on"] = "validation"
        from transfer_lib.data.base import describe_val_source

        what = (f"the run's best.pt: epoch {epoch}, chosen as the epoch with the highest "
                f"validation accuracy ({_percent(ckpt.get('val_accuracy'))}; val: "
                f"{describe_val_source(ckpt.get('val_source'))}), never on the test split (its "
                f"test accuracy then: {_percent(ckpt['accuracy'])})")
    elif "accuracy" in ckpt:
        kind = "best"
        info["selected_on"] = "test"
        what = (f"the run's best.pt: epoch {epoch}, chosen as the epoch with the highest test "
                f"accuracy ({_percent(ckpt['accuracy'])}) - on the test split itself, by "
                f"a version of this library from before the validation split (the authors did "
                f"the same: their file name says epoch 33), so its score on that split is "
                f"optimistic")
    else:
        kind, what = "other", "weights without a record of how they were chosen"
    info = {"kind": kind, "epoch": epoch, **info}
    try:
        import json

        summary = json.loads((path.parent / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None

    def number(key: str, optional: bool = False) -> bool:
        value = summary.get(key)
        return (optional and value is None) or (
            isinstance(value, (int, float)) and not isinstance(value, bool))

    # a summary.json not of this run (copied beside it, edited, another tool's) is passed over
    if (isinstance(summary, dict) and summary.get("complete") and number("best_accuracy")
            and number("final_accuracy") and number("best_val_accuracy", optional=True)):
        info.update(run_best_accuracy=summary.get("best_accuracy"),
                    run_best_epoch=summary.get("best_epoch"),
                    run_final_accuracy=summary.get("final_accuracy"),
                    run_final_epoch=summary.get("final_epoch", summary.get("epochs")))
        best_epoch = f" (epoch {info['run_best_epoch']})" if info["run_best_epoch"] else ""
        if summary.get("best_selected_on") == "validation":
            info.update(run_best_selected_on="validation",
                        run_best_val_accuracy=summary.get("best_val_accuracy"))
            val = info["run_best_val_accuracy"]
            what += (f". The run: best.pt{best_epoch} test {100 * info['run_best_accuracy']:.2f} %"
                     + (f" (validation {100 * val:.2f} %)" if val is not None else "")
                     + f", final {100 * info['run_final_accuracy']:.2f} % (epoch "
                     f"{info['run_final_epoch']}, last.pt)")
        else:
            what += (f". The run: best {100 * info['run_best_accuracy']:.2f} %{best_epoch}, final "
                     f"{100 * info['run_final_accuracy']:.2f} % (epoch {info['run_final_epoch']}, "
                     f"last.pt)")
    info["note"] = what
    return info
