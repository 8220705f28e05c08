"""Write the synthetic expression data set in RAF-DB's layout.

Examples:
  python -m transfer_lib synth --out data/synthetic                  # the default embedded set
  python -m transfer_lib synth --out data/synth10k --train 8000 --test 2000 --balance uniform
  python -m transfer_lib synth --out data/s --train 3000 --test 700 --val 300
  python -m transfer_lib synth --out data/rel --task relational        # classes are relations

--task says what a class is: additive (the default: each expression a sum of local cues, with
occluders on 30 % of the images), relational (four classes with the same cues, told apart only by
which of brows, eyes and mouth disagrees with the other two; no occluders) or occlusion-shift (the
additive classes, no occluder in any image, so that `eval --occlusion` shows each part hidden
for the first time). The task is recorded in the set's synthetic.json.

The set has three splits: train, test and val (validation: drawn like train, with its own seeds,
by default as many images as test; the trainer picks best.pt on it). Adding val changed no train
or test image.

--out must be a new or empty folder, or a synthetic set written before (it holds synthetic.json),
which is replaced. Files this command did not write are never deleted: a folder holding any is
refused, or with --force the set is written there and those files are kept beside it (a RAF-DB
label file it did not write is refused even then). The set is drawn in a temporary folder next
to --out and swapped in when complete, so an interrupted run loses nothing.
"""

from __future__ import annotations

import argparse

from transfer_lib.data import synth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T

    images = T.nonnegative_int(T.MAX_IMAGES)
    parser.add_argument("--out", default="data/synthetic", help="output folder (gets basic/...)")
    parser.add_argument("--train", type=images, default=synth.DEFAULT_TRAIN, help="training images")
    parser.add_argument("--test", type=images, default=synth.DEFAULT_TEST, help="test images")
    parser.add_argument("--val", type=images, default=synth.DEFAULT_VAL, metavar="N",
                        help="validation images, drawn like the training images (default: as "
                             "many as --test; 0: none, the loader then carves val from train)")
    parser.add_argument("--seed", type=T.SEED, default=0)
    parser.add_argument("--task", choices=synth.TASKS, default="additive",
                        help="what a class is (see above; default additive)")
    parser.add_argument("--occlusion", type=T.PROBABILITY, default=None,
                        help="share of images with an occluder (0..1; default 0.3 for the "
                             "additive task, 0 for the others)")
    parser.add_argument("--part-occlusion", type=T.PROBABILITY, default=0.0,
                        help="share of train and val images with a random part under the "
                             "occlusion test's grey box (default 0)")
    parser.add_argument("--balance", choices=synth.BALANCES, default="rafdb",
                        help="class balance: RAF-DB's own imbalance or uniform (the "
                             "relational task is always uniform: its 4 classes equally often)")
    parser.add_argument("--workers", type=T.PROCESSES, default=None, help="processes (default: 2 or cores)")
    parser.add_argument("--force", action="store_true",
                        help="write into --out although it holds files this command did not write (they "
                             "are kept beside the set)")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_dir

    check_output_dir(args.out, "--out")  # before drawing, not at the end, naming --out
    synth.generate(args.out, train=args.train, test=args.test, val=args.val, seed=args.seed,
                   occlusion=args.occlusion, balance=args.balance, workers=args.workers,
                   progress=True, force=args.force, task=args.task,
                   part_occlusion=args.part_occlusion)
    return 0
