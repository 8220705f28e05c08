"""Train TransFER (or an ablation row) and write a run directory.

Examples:
  python -m transfer_lib train --profile smoke --out runs/smoke       # seconds, synthetic data
  python -m transfer_lib train --profile cpu                          # tiny model, minutes on a CPU
  python -m transfer_lib train --profile paper --data data/RAF-DB \\
      --ir50 weights/backbone_ir50_ms1m_epoch120.pth \\
      --vit weights/vit_small_p16_224-15ec54c9.pth --out runs/paper    # the authors' recipe
  python -m transfer_lib train --profile paper --from-scratch --epochs 1   # no weights (a test)
  python -m transfer_lib train --out runs/paper --resume              # continue after a crash
  torchrun --nproc_per_node=4 -m transfer_lib train --profile paper --data data/RAF-DB \\
      --ir50 weights/backbone_ir50_ms1m_epoch120.pth --vit weights/vit_small_p16_224-15ec54c9.pth

Without --data the synthetic set is generated under data/ on first use and reused.
RUN_DIR gets config.json, metrics.jsonl, last.pt, best.pt and, when complete, summary.json.
One run at a time uses a RUN_DIR (a second is refused while the first runs; a killed run's lock
goes with its process). --resume refuses a changed recipe and lists the changes; --new-recipe
goes on anyway and config.json keeps the earlier recipe under "history".
On CUDA the fast input pipeline is on by default (--no-fast: the per-image DataLoader); on a
CPU it is off (--fast turns it on); config.json and the metrics record which one ran.
Profiles (transfer_lib/train/profiles.py): smoke, cpu, paper, gpu; options below override their fields.
The paper profile needs --ir50 and --vit (face.evoLVe's IR-50 on MS-Celeb-1M; timm's ViT-Small):
without them it stops (exit 2) unless --from-scratch is given. Its augmentation is the authors'
as they ran it: PaddleClas's RandAugment (--randaugment paddle) and their RandomErasing applied
to the HWC array, which in effect erases nothing (--erasing authors).
On a GPU add --compile (and --compile-mode reduce-overhead for CUDA graphs).
"""

from __future__ import annotations

import argparse
import json
import os

from transfer_lib.models.config import MAP_REGULARISERS, MSAD_MODES, PROJ_INITS, SIZES, VARIANTS
from transfer_lib.train.profiles import (
    BALANCES,
    ERASINGS,
    OPTIMISERS,
    PROFILE_NAMES,
    RANDAUGMENTS,
    SCHEDULES,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.data import FORMATS
    from transfer_lib.train import AMP_DTYPES, COMPILE_MODES

    g = parser.add_argument_group("data")
    g.add_argument("--data", metavar="DIR", help="data set root (default: the synthetic set)")
    g.add_argument("--dataset", choices=FORMATS, default="rafdb")
    g.add_argument("--workers", type=T.WORKERS, metavar="N", help="data loader processes")
    g.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="the fast input pipeline: images decoded once into a uint8 cache, whole "
                        "batches augmented on the training device (default: on for CUDA, off "
                        "on CPU; --fast forces it on a CPU)")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="where --fast caches the decoded images (default: $TRANSFER_CACHE, else "
                        "DATA/../cache; on Colab a local folder such as /content/cache)")
    g = parser.add_argument_group("recipe (defaults from --profile)")
    g.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="smoke | cpu | paper | gpu (default: $TRANSFER_PROFILE, else on a GPU "
                        "paper with RAF-DB found and gpu without, else cpu)")
    g.add_argument("--variant", choices=VARIANTS)
    g.add_argument("--size", choices=SIZES)
    g.add_argument("--epochs", type=T.EPOCHS, metavar="N")
    g.add_argument("--batch-size", type=T.BATCH_SIZE, metavar="N",
                   help="global batch (split over ranks)")
    g.add_argument("--lr", type=T.LEARNING_RATE, metavar="LR", help="peak learning rate")
    g.add_argument("--optimiser", choices=OPTIMISERS)
    g.add_argument("--weight-decay", type=T.nonnegative_float(10.0), metavar="WD")
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--milestones", type=T.MILESTONES, metavar="E1,E2",
                   help="epochs of the step schedule, in increasing order, e.g. 15,30")
    g.add_argument("--warmup-epochs", type=T.EPOCHS_FLOAT, metavar="E",
                   help="linear warmup, in epochs")
    g.add_argument("--regularise-from-epoch", type=T.nonnegative_int(T.MAX_EPOCHS),
                   metavar="E", help="MAD (or the map regulariser in its place) and MSAD drop "
                                     "from this epoch on, 0-based (default 0: from the first "
                                     "step, as the authors; 1 after a 1-epoch warmup; --epochs "
                                     "or more: they never drop)")
    g.add_argument("--label-smoothing", type=T.PROBABILITY, metavar="EPS",
                   help="0 to 1; 0: plain cross-entropy")
    g.add_argument("--randaugment", choices=RANDAUGMENTS,
                   help="with the paper augmentation: paddle (default: PaddleClas's, as the "
                        "authors ran it: 14 ops, magnitude 5 of 10, grey fill) | torchvision "
                        "(torchvision's RandAugment(2, 5))")
    g.add_argument("--erasing", choices=ERASINGS,
                   help="RandomErasing with the paper augmentation: authors (default: their "
                        "RandomErasing given the HWC array, as their pipeline does: a few values "
                        "of the top row at most, in effect off) | config (a rectangle, p 0.5, "
                        "area 0.02-0.4, as their config reads) | off")
    g.add_argument("--proj-init", choices=PROJ_INITS,
                   help="the projection's init: paddle (Kaiming-normal, zero bias: the authors'; "
                        "paper and gpu profiles) | torch (PyTorch's default; cpu and smoke)")
    g.add_argument("--balance", choices=BALANCES,
                   help="none: each image once an epoch; sampler: class-balanced sampling")
    g.add_argument("--grad-clip", type=T.nonnegative_float(), metavar="NORM",
                   help="clip the gradient's global norm (0: off)")
    g.add_argument("--eval-every", type=T.EPOCHS, metavar="K", help="evaluate every K epochs")
    g.add_argument("--msad-mode", choices=MSAD_MODES, help="head (the paper) | token (authors' code)")
    g.add_argument("--map-regulariser", choices=MAP_REGULARISERS)
    g.add_argument("--ir50", metavar="PATH", help="face.evoLVe IR-50 weights for the stem")
    g.add_argument("--vit", metavar="PATH", help="timm ViT-Small weights for the transformer")
    g.add_argument("--from-scratch", action="store_true",
                   help="let the paper profile train without --ir50 / --vit (refused otherwise: "
                        "its SGD at 1e-4 does not learn from random weights)")
    g = parser.add_argument_group("run")
    g.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/PROFILE-VARIANT-seedS)")
    g.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    g.add_argument("--new-recipe", action="store_true",
                   help="with --resume: go on although the recipe changed (config.json keeps the "
                        "earlier one under 'history'); without it a changed recipe is refused")
    g.add_argument("--seed", type=T.SEED, default=0)
    g.add_argument("--max-steps", type=T.STEPS, metavar="N",
                   help="at most N batches per epoch (tests)")
    g.add_argument("--device", metavar="DEV", help="cuda | cpu | cuda:1 (default: cuda if present)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA)")
    g.add_argument("--amp-dtype", choices=tuple(AMP_DTYPES), default=None,
                   help="bf16, or fp16 with a GradScaler (default: bf16 where the GPU has bf16 "
                        "tensor cores, fp16 on older GPUs such as the T4)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the forward pass, loss and accuracy as one graph")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="torch.compile mode (implies --compile); reduce-overhead and "
                        "max-autotune capture CUDA graphs (default: default)")
    g.add_argument("--sync-every", type=T.STEPS, metavar="K",
                   help="read the loss on the host every K steps (default: 25 on CUDA, 1 on CPU)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from transfer_lib.train import TrainConfig
    from transfer_lib.train.profiles import active_profile
    from transfer_lib.utils.errors import TransferError

    milestones = None
    if args.milestones is not None:
        try:
            milestones = tuple(int(m) for m in args.milestones.split(",") if m.strip())
        except ValueError:
            raise TransferError(f"--milestones {args.milestones!r}: expected epochs like 15,30") from None
    try:
        profile = args.profile or active_profile().name
    except ValueError as err:
        raise TransferError(str(err)) from None
    return TrainConfig(
        profile=profile, data=args.data, dataset=args.dataset, out=args.out,
        variant=args.variant, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimiser=args.optimiser, weight_decay=args.weight_decay,
        schedule=args.schedule, milestones=milestones, eval_every=args.eval_every,
        warmup_epochs=args.warmup_epochs,
        regularise_from_epoch=args.regularise_from_epoch, label_smoothing=args.label_smoothing,
        balance=args.balance, grad_clip=args.grad_clip, randaugment=args.randaugment,
        erasing=args.erasing, proj_init=args.proj_init, from_scratch=args.from_scratch,
        workers=args.workers, msad_mode=args.msad_mode, map_regulariser=args.map_regulariser,
        ir50=args.ir50, vit=args.vit, seed=args.seed, resume=args.resume,
        new_recipe=args.new_recipe,
        max_steps=args.max_steps, device=args.device, amp=args.amp, amp_dtype=args.amp_dtype,
        channels_last=args.channels_last, compile=args.compile or args.compile_mode is not None,
        compile_mode=args.compile_mode, sync_every=args.sync_every, fast=args.fast,
        cache_dir=args.cache_dir,
        progress=args.progress,
    )


def never_drops_note(args: argparse.Namespace, config) -> str | None:
    """With ``--regularise-from-epoch`` at or beyond the run's last epoch, a line on stderr
    (rank 0) saying that the dropping regularisers never drop in this run (allowed: a control
    without them); returns it, or None."""
    import sys

    if args.regularise_from_epoch is None:
        return None
    try:
        epochs = config.profile_obj().epochs
    except (KeyError, ValueError, TypeError):  # a bad recipe: train() says what is wrong
        return None
    if args.regularise_from_epoch < epochs:
        return None
    line = (f"note: --regularise-from-epoch {args.regularise_from_epoch} is not below the run's "
            f"{epochs} epochs (0-based: the last is {epochs - 1}): MAD (or the map regulariser) "
            f"and MSAD never drop in this run")
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, file=sys.stderr, flush=True)
    return line


def run(args: argparse.Namespace, callbacks=None) -> int:
    """Train as ``args`` say and print the summary (rank 0). ``callbacks``: as
    :func:`transfer_lib.train.train` takes them, for a script that wraps this command."""
    from transfer_lib.train import train

    config = config_from_args(args)
    never_drops_note(args, config)
    summary = train(config, callbacks=callbacks)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    keys = ("best_accuracy", "best_epoch", "final_accuracy", "final_epoch", "mean_class_accuracy",
            "epochs", "wall_seconds", "device", "run_dir")
    if summary.get("best_selected_on") == "validation":
        from transfer_lib.data.base import describe_val_source

        val = summary.get("best_val_accuracy")
        print(f"best.pt: epoch {summary.get('best_epoch')}, chosen on the validation split ("
              + (f"accuracy {val:.4f}; " if val is not None else "")
              + f"val: {describe_val_source(summary.get('val_source'))}); best_accuracy is its "
              f"test accuracy")
    else:
        print(f"best.pt: epoch {summary.get('best_epoch')}, chosen on the "
              f"{summary.get('best_selected_on')}")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    return 0
