"""Evaluate a checkpoint, or the authors' released weights, on a data set's test split.

Examples:
  python -m transfer_lib eval --data data/RAF-DB --checkpoint runs/paper/best.pt
  python -m transfer_lib eval --data data/RAF-DB --official weights/RAFa_2_6131_ep33_90p91.pdparams
  python -m transfer_lib eval --checkpoint runs/cpu-transfer-seed0/best.pt --tta flip --json m.json
  python -m transfer_lib eval --data data/synthetic --checkpoint RUN/last.pt --occlusion --json o.json

With the authors' checkpoint and the real RAF-DB test set (3,068 images) the accuracy is 90.91 %.
Without --data the synthetic set of the checkpoint's profile is used (data/synthetic).
Prints accuracy, mean class accuracy and a per-class table (each class with its index and its
label in the data set's own files: RAF-DB 1..7, AffectNet's code, FERPlus's column); --json
writes the same as JSON ("classes": [{"index", "name", "dataset_label"}], beside the keys of
earlier versions).

Which weights: a run's best.pt is the epoch with the highest accuracy on the *validation* split
(the data set's own validation list, or one carved from train: RAF-DB has none), never on the test
split; last.pt holds the final epoch. (A best.pt from before the validation split was chosen on the
test split, as the authors chose theirs - their file name says epoch 33 - and the output says
so.) The output says which one was scored ("checkpoint" in the JSON) and, with the run's
summary.json beside it, the run's best and final accuracy. --split val scores the split best.pt
was chosen on.

--occlusion evaluates the test faces with nothing hidden and with each part hidden in turn (brows,
eyes, nose, cheeks, mouth; --parts picks some): on the synthetic set every face is drawn again
from its own seed with the part hidden (cached under DATA/occlusion/), on any other data set a
grey box covers the part's region of the aligned face (transfer_lib.evaluate.occlusion). --json then
writes {"occlusion": {"none": {"accuracy": a, "mean_class_accuracy": m, "per_class_accuracy":
[...]}, "brows": {...}, ...}, ...} with fractions in [0, 1].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transfer_lib.evaluate import TTA_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.data import FORMATS

    parser.add_argument("--data", metavar="DIR",
                        help="data set root (default: the synthetic set, data/synthetic)")
    parser.add_argument("--dataset", choices=FORMATS, default="rafdb")
    parser.add_argument("--split", default="test",
                        help="split to evaluate: test (default), val (the one best.pt was chosen "
                             "on) or train")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="PATH", help="a .pt written by `train`")
    which.add_argument("--official", metavar="PDPARAMS",
                       help="the authors' released Paddle weights (.pdparams)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation: none | flip (mean of image and mirror)")
    parser.add_argument("--batch-size", type=T.BATCH_SIZE, default=128, metavar="N")
    parser.add_argument("--workers", type=T.WORKERS, default=0, metavar="N")
    parser.add_argument("--device", metavar="DEV", help="cuda | cpu (default: cuda if present)")
    parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON here")
    parser.add_argument("--occlusion", action="store_true",
                        help="evaluate with each facial part hidden in turn (and none hidden)")
    parser.add_argument("--parts", metavar="P1,P2",
                        help="with --occlusion: parts to hide (default all: "
                             "brows,eyes,nose,cheeks,mouth)")
    parser.add_argument("--render-workers", type=T.PROCESSES, default=None, metavar="N",
                        help="with --occlusion on the synthetic set: drawing processes (default 2)")


#: How the authors' released checkpoint was chosen, from its name (RAFa_2_6131_ep33_90p91).
OFFICIAL_SELECTION = {
    "kind": "authors", "epoch": 33,
    "note": "the authors' released checkpoint: its name (RAFa_2_6131_ep33_90p91) says epoch 33 "
            "of 40 at 90.91 %, i.e. chosen by its test accuracy (RAF-DB has no validation "
            "split of its own; this library's runs choose best.pt on one carved from train)",
}


def load_model(args: argparse.Namespace):
    """(model, source, selection): ``selection`` says which weights of a run these are."""
    from transfer_lib.utils.errors import CheckpointError, not_a_file

    if args.checkpoint:
        from transfer_lib.weights.checkpoint import describe_checkpoint, model_and_checkpoint

        model, ckpt = model_and_checkpoint(args.checkpoint)
        return model, args.checkpoint, describe_checkpoint(args.checkpoint, ckpt)
    if not Path(args.official).is_file():
        raise CheckpointError(f"{not_a_file('--official', args.official)}. Expected the authors' "
                              f"RAF-DB weights, RAFa_2_6131_ep33_90p91.pdparams (Paddle pickle).")
    from transfer_lib.weights.convert import load_official_transfer

    return load_official_transfer(args.official), args.official, dict(OFFICIAL_SELECTION)


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_file
    from transfer_lib.evaluate import (
        check_class_names,
        check_split,
        evaluate,
        format_metrics,
        load_eval_set,
    )
    from transfer_lib.evaluate.occlusion import parse_parts
    from transfer_lib.train.distributed import pick_device
    from transfer_lib.utils.errors import TransferError

    if not args.occlusion and (args.parts or args.render_workers is not None):
        raise TransferError("--parts and --render-workers go with --occlusion")
    if args.batch_size < 1:
        raise TransferError(f"--batch-size {args.batch_size} must be at least 1")
    if args.workers < 0:
        raise TransferError(f"--workers {args.workers} must be 0 (load in this process) or more")
    check_output_file(args.json, "--json", [("--checkpoint", args.checkpoint),
                                            ("--official", args.official), ("--data", args.data)])
    check_split(args.dataset, args.split)
    args.parts = parse_parts(args.parts) if args.occlusion else None  # bad names fail first
    device = pick_device(args.device)
    model, source, selection = load_model(args)
    model = model.to(device).eval()
    data = args.data
    if data is None:
        from transfer_lib.data.synth import ensure_synthetic

        data = str(ensure_synthetic())
    if args.occlusion:
        return _run_occlusion(args, model, source, data, device, selection)
    test_set = load_eval_set(data, args.dataset, model.config, args.split)
    check_class_names(model.config.class_names, test_set.classes, str(source), args.dataset)
    # fp32 on every device: the published 90.91 % is checked at full precision
    metrics = evaluate(model, test_set, device=device, batch_size=args.batch_size,
                       workers=args.workers, tta=args.tta)
    metrics.update(source=str(source), data=str(data), dataset=args.dataset, split=args.split,
                   checkpoint=selection)
    print(format_metrics(metrics, title=f"{source} on {args.dataset} {args.split} ({data})"))
    print(f"weights: {selection['note']}")
    if test_set.describe_left_out():
        print(test_set.describe_left_out())
    _write_json(args.json, metrics)
    return 0


def _write_json(path: str | None, result: dict) -> None:
    """``result`` as JSON at ``path`` (``--json``), if one was given, with the provenance of
    the machine that computed it; written atomically (a full disk leaves the old file whole)."""
    if path:
        from transfer_lib.utils.atomic import atomic_write_text
        from transfer_lib.utils.kernels import provenance

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**result, "provenance": provenance()}, indent=1))
        print(f"wrote {path}")


def _run_occlusion(args: argparse.Namespace, model, source, data: str, device,
                   selection: dict) -> int:
    from transfer_lib.data.labels import class_table, describe_class, label_kind
    from transfer_lib.evaluate.occlusion import evaluate_occlusion, format_occlusion

    result = evaluate_occlusion(model, data, args.dataset, split=args.split, parts=args.parts,
                                batch_size=args.batch_size, device=device, tta=args.tta,
                                workers=args.render_workers, progress=True)
    names = result["class_names"]
    result.update(source=str(source), checkpoint=selection, classes=class_table(names),
                  dataset_label_kind=label_kind(names))
    print(format_occlusion(result, title=f"{source} on {args.dataset} {args.split} ({data})"))
    print("classes (index, name, label in the data set's files): "
          + ", ".join(describe_class(names, i) for i in range(len(names))))
    print(f"weights: {selection['note']}")
    _write_json(args.json, result)
    return 0
