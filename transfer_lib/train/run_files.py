"""The run directory's files: ``config.json``, ``metrics.jsonl``, ``last.pt``, ``best.pt`` and
``summary.json`` - what is written, what a resume reads back, and how a changed recipe is found.
(The lock that keeps two runs out of one directory is :mod:`transfer_lib.train.rundir`.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from transfer_lib.train.config import PROFILE_OVERRIDES, TrainConfig
from transfer_lib.train.rundir import RUN_FILES
from transfer_lib.utils.atomic import atomic_write_text
from transfer_lib.utils.errors import CheckpointError, TransferError
from transfer_lib.weights.checkpoint import load_checkpoint

#: TrainConfig fields that change how a run is executed but not what it computes.
_EXECUTION_FIELDS = ("out", "resume", "new_recipe", "from_scratch", "cache_dir", "progress", "device", "amp", "amp_dtype", "channels_last",
                     "compile", "compile_mode", "sync_every", "fast", "workers", "profile")


def _plain(d: dict) -> dict:
    """JSON-able, weights_only-loadable copy (tuples become lists)."""
    return json.loads(json.dumps(d, default=str))


def _read_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):  # overwritten by something else: finish the run again
        print(f"warning: {path} holds a {type(summary).__name__}, not a run summary; the run is "
              f"finished again from its last.pt", file=sys.stderr)
        return None
    return summary if summary.get("complete") else None


def _read_config(run_dir: Path) -> dict | None:
    """``run_dir/config.json`` as a dict, or None where it is missing or damaged."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("train"), dict) \
        and isinstance(saved.get("profile"), dict) else None


def saved_recipe(run_dir: Path) -> tuple[dict, str] | None:
    """The recipe a run in ``run_dir`` was trained with, ``({"train": ..., "profile": ...},
    source)``: from ``config.json`` (source ``"config.json"``), or, where that file is missing
    or damaged, from ``last.pt``, which records the same two dicts (``train_config``,
    ``profile``; source ``"last.pt"``). None where neither holds one (a damaged last.pt, or one
    written before checkpoints recorded their recipe)."""
    saved = _read_config(run_dir)
    if saved is not None:
        return saved, "config.json"
    recorded = last_recipe(run_dir / "last.pt")
    return None if recorded is None else (recorded, "last.pt")


def last_recipe(last: Path) -> dict | None:
    """The recipe a ``last.pt`` records, ``{"train": ..., "profile": ...}``, or None where it
    records none (missing, damaged, written by an older version, or no last.pt of a run)."""
    if not last.is_file():
        return None
    try:  # memory-mapped: only the two small dicts are read, not the weights
        ckpt = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a damaged last.pt: the resume itself says so
        return None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("train_config"), dict) \
            or not isinstance(ckpt.get("profile"), dict):
        return None
    return {"train": ckpt["train_config"], "profile": ckpt["profile"]}


def _recipe_differences(run_dir: Path, cfg: TrainConfig,
                        saved: tuple[dict, str] | None = None) -> list[str]:
    """What differs between the recipe a run in ``run_dir`` was trained with
    (:func:`saved_recipe`: its config.json, else its last.pt; or ``saved``, as that returns
    it) and ``cfg``'s."""
    saved = saved_recipe(run_dir) if saved is None else saved
    if saved is None:
        return []  # an older or foreign run directory: nothing to compare against
    saved = saved[0]
    wanted_train = _plain(cfg.to_dict())
    wanted_profile = _plain(cfg.profile_obj().to_dict())
    diffs = []
    for key, value in wanted_train.items():
        if key in _EXECUTION_FIELDS or key in PROFILE_OVERRIDES or key not in saved.get("train", {}):
            continue
        if saved["train"][key] != value:
            diffs.append(f"{key}: saved {saved['train'][key]!r}, asked {value!r}")
    for key, value in wanted_profile.items():
        if key in ("name", "description", "workers") or key not in saved.get("profile", {}):
            continue
        if saved["profile"][key] != value:
            diffs.append(f"{key}: saved {saved['profile'][key]!r}, asked {value!r}")
    return diffs


def _recipe_history(run_dir: Path, changed: list[str], start_epoch: int,
                    saved: tuple[dict, str] | None = None) -> list[dict]:
    """``config.json``'s ``history``: the recipes this run had before its current one (each the
    whole earlier ``config.json`` plus ``until_epoch``, when the next took over, and ``changed``),
    oldest first. A resume under the same recipe keeps it as it was. Where config.json is gone,
    the recipe ``saved`` in last.pt (:func:`saved_recipe`) stands for it."""
    saved_config = _read_config(run_dir)
    if saved_config is None:
        if not changed or saved is None or saved[1] != "last.pt":
            return []
        saved_config = {**saved[0], "recovered_from": "last.pt"}
    saved = saved_config
    history = list(saved.get("history") or [])
    if changed:
        history.append({**{k: v for k, v in saved.items() if k != "history"},
                        "until_epoch": start_epoch, "changed": changed})
    return history


def _load_last(last_path: Path, best_path: Path, device: torch.device) -> dict:
    """``last.pt`` for a resume; a damaged one is refused with what can still be done."""
    best = (f"{best_path} (the best weights, without optimiser state) can be evaluated with "
            f"`eval --checkpoint {best_path}` but not resumed from" if best_path.is_file()
            else f"there is no {best_path.name} to fall back on")
    return load_checkpoint(last_path, map_location=device, hint=(
        f"Cannot resume: {last_path} is truncated or damaged (a full disk, or a copy cut short). "
        f"Restore an earlier copy of it (a backup, Drive's version history) and --resume again, "
        f"or start a new --out; {best}."))


#: What a resume reads from ``last.pt`` besides the model: a file without them (a best.pt, a
#: weights file) holds no training to go on with.
RESUME_STATE = ("optimizer", "scaler", "rng", "epoch", "global_step", "best_accuracy",
                "wall_seconds")


def check_resume_state(ckpt: dict, last_path: Path) -> None:
    """Refuse a ``last.pt`` without the training state a resume needs (:data:`RESUME_STATE`):
    a best.pt or a weights file copied over it (it failed with a KeyError)."""
    missing = [k for k in RESUME_STATE if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{last_path} holds weights but no training state to resume from (no "
            f"{', '.join(missing)}): it is a best.pt or a weights file, not a run's last.pt. Put "
            f"the run's own last.pt back, or start a new --out; the weights can be evaluated with "
            f"`eval --checkpoint {last_path}`. Nothing was changed.")


def _saved_model_config(saved) -> dict | None:
    """A checkpoint's model config completed with the fields added since (``from_dict``'s
    defaults for old files), comparable with ``to_dict()``; None if it cannot be read."""
    from transfer_lib.models.config import TransFERConfig

    try:
        return TransFERConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError):
        return None


def write_config(run_dir: Path, record: dict) -> None:
    """``config.json``: everything the run was started with, resolved (written atomically)."""
    atomic_write_text(run_dir / "config.json", json.dumps(record, indent=1, default=str))


def keep_metrics_until(run_dir: Path, start_epoch: int) -> None:
    """Drop the ``metrics.jsonl`` lines of epochs that will be run again (after a resume)."""
    metrics_path = run_dir / "metrics.jsonl"
    kept = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                if json.loads(line)["epoch"] <= start_epoch:
                    kept.append(line)
            except (ValueError, KeyError):
                continue
    atomic_write_text(metrics_path, "".join(k + "\n" for k in kept))


def append_metrics(run_dir: Path, epoch_log: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(epoch_log) + "\n")


#: The split best.pt is chosen on (``summary.json``'s ``best_selected_on``; ``last.pt`` and
#: ``best.pt`` record it too). Runs written before the validation split chose it on the test
#: split: their summary's ``best_selected_on`` is :data:`BEST_SELECTED_ON_TEST`'s sentence.
BEST_SELECTED_ON = "validation"
#: What ``best_selected_on`` means, in a sentence (``summary.json``'s ``best_selection``).
BEST_SELECTION = ("best.pt is the evaluated epoch with the highest accuracy on the validation "
                  "split (the first such epoch; val_source says where that split comes from); "
                  "best_accuracy and best_mean_class_accuracy are that epoch's test figures, "
                  "best_val_accuracy its validation accuracy; final_accuracy and "
                  "mean_class_accuracy are the last epoch's test figures (last.pt). The test "
                  "split chooses nothing")
#: How runs written before the validation split chose best.pt (their summaries say so).
BEST_SELECTED_ON_TEST = ("test split: best.pt is the evaluated epoch with the highest test "
                         "accuracy (RAF-DB has no validation split; the authors chose theirs "
                         "the same way, their file name says epoch 33 of 40), so best_accuracy "
                         "is optimistic; final_accuracy is the last epoch's (last.pt)")


def _best_epoch(run_dir: Path, epochs: int, final: dict) -> dict:
    """The ``metrics.jsonl`` line of the epoch best.pt holds: the first with the highest
    validation accuracy, as the trainer keeps it. Lines without one (epochs of a run resumed
    from before the validation split) are not candidates; a file with none at all picks by test
    accuracy, as such runs did. The final metrics when no line was evaluated. The line's
    ``selected_on`` says which split chose it."""
    try:
        text = (run_dir / "metrics.jsonl").read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError):
        lines = []
    for key, split in (("val_accuracy", BEST_SELECTED_ON), ("test_accuracy", "test")):
        scored = [m for m in lines if isinstance(m, dict) and key in m]
        if scored:
            best = max(scored, key=lambda m: (m[key], -m.get("epoch", 0)))
            return {**best, "selected_on": split}
    return {"epoch": epochs, "test_accuracy": final.get("accuracy"),
            "mean_class_accuracy": final.get("mean_class_accuracy"), "selected_on": None}


def provenance() -> dict:
    from transfer_lib.utils.kernels import provenance as _provenance

    return _provenance()


def _write_summary(cfg, prof, mc, ctx, run_dir, model, test_loader, metrics, best_acc, wall,
                   amp_dtype, channels_last, epoch_log, pipeline="per-image",
                   val_source: str | None = None, split_sizes: dict | None = None) -> dict:
    """``summary.json``: the final epoch's test figures (``final_accuracy``,
    ``mean_class_accuracy``, per class, confusion matrix), best.pt's epoch with its validation
    accuracy (``best_val_accuracy``, which chose it) and its test figures (``best_accuracy`` =
    ``best_test_accuracy``, ``best_mean_class_accuracy``), and how the run was made."""
    from transfer_lib.evaluate import evaluate

    if metrics is None:  # resumed after the last epoch's checkpoint: evaluate again
        metrics = evaluate(model, test_loader, device=ctx.device, amp_dtype=amp_dtype,
                           channels_last=channels_last)
    device = ctx.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    best = _best_epoch(run_dir, prof.epochs, metrics)
    selected_on = best["selected_on"] or BEST_SELECTED_ON
    summary = {
        "complete": True,
        "best_accuracy": best.get("test_accuracy"),  # best.pt's test accuracy (chosen on val)
        "best_test_accuracy": best.get("test_accuracy"),
        "best_epoch": best.get("epoch"),
        "best_mean_class_accuracy": best.get("mean_class_accuracy"),
        "best_val_accuracy": best.get("val_accuracy"),
        "best_val_mean_class_accuracy": best.get("val_mean_class_accuracy"),
        "best_selected_on": selected_on if selected_on == BEST_SELECTED_ON
        else BEST_SELECTED_ON_TEST,
        "best_selection": BEST_SELECTION if selected_on == BEST_SELECTED_ON
        else BEST_SELECTED_ON_TEST,
        "val_source": val_source,
        "split_sizes": split_sizes,
        "final_accuracy": metrics["accuracy"],
        "final_epoch": prof.epochs,
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "confusion_matrix": metrics["confusion_matrix"],
        "class_names": metrics["class_names"],
        "epochs": prof.epochs,
        "wall_seconds": wall,
        "images_per_second": epoch_log.get("images_per_second"),
        "pipeline": pipeline,
        "device": f"{device} ({name})" + (f" x{ctx.world_size}" if ctx.distributed else ""),
        "world_size": ctx.world_size,
        "profile": prof.name,
        "variant": mc.variant,
        "size": prof.size,
        "msad_mode": mc.msad_mode,
        "map_regulariser": mc.map_regulariser,
        "seed": cfg.seed,
        "dataset": cfg.dataset,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "run_dir": str(run_dir),
        "provenance": provenance(),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return summary


#: The files a run writes in its directory, replacing any of the same name (last.pt aside: a
#: folder holding one is a run's, which only --resume goes on with).
RUN_FILE_NAMES: tuple[str, ...] = tuple(n for n in RUN_FILES if n != "last.pt")


def check_no_foreign_run_files(run_dir: Path) -> None:
    """Refuse a run directory (without last.pt) holding files of a run's names that no run
    wrote: a project's own config.json or notes in metrics.jsonl were replaced without a word.
    A config.json of a run (one stopped before its first checkpoint) makes the folder a run's."""
    if not run_dir.is_dir() or _read_config(run_dir) is not None:
        return
    theirs = [name for name in RUN_FILE_NAMES if (run_dir / name).exists()]
    if theirs:
        raise TransferError(
            f"--out {run_dir} holds {', '.join(theirs)}, which no run of this command wrote "
            f"(no last.pt, no config.json of a run): a run there would replace "
            f"{'them' if len(theirs) > 1 else 'it'}. Choose another --out (a new folder), or "
            f"move {'them' if len(theirs) > 1 else 'it'} away. Nothing was changed.")


def check_last_is_the_runs(run_dir: Path, last_path: Path, cfg: TrainConfig) -> None:
    """Refuse to resume from a ``last.pt`` that records another recipe than the one asked for,
    which config.json agrees with: another run's last.pt copied in (it was resumed from
    silently, under this run's name), or one written before a --new-recipe change took
    effect (--new-recipe goes on from it)."""
    recorded = last_recipe(last_path)
    if recorded is None:  # damaged or older: the resume itself says so, or cannot tell
        return
    differ = _recipe_differences(run_dir, cfg, (recorded, last_path.name))
    if differ:
        raise TransferError(
            f"{last_path} records another recipe than {run_dir / 'config.json'} and this "
            f"resume ({'; '.join(differ)}): it is another run's last.pt, or one written before "
            f"a --new-recipe change. Put this run's own last.pt back, pass --new-recipe to go "
            f"on from it under the recipe asked for, or choose another --out. Nothing was "
            f"changed.")
