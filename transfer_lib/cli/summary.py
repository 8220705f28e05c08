"""Build a model, print its summary (parts, parameters, FLOPs) and run a forward pass.

Examples:
  python -m transfer_lib summary                     # the paper-size TransFER
  python -m transfer_lib summary --size tiny --variant vit_fer
"""

from __future__ import annotations

import argparse
import time

import torch

from transfer_lib.models.config import MSAD_MODES, SIZES, VARIANTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T

    parser.add_argument("--variant", choices=VARIANTS, default="transfer")
    parser.add_argument("--size", choices=SIZES, default="paper")
    parser.add_argument("--msad-mode", choices=MSAD_MODES, default=None)
    # at most 256: a forward pass of the paper-size model holds every activation in memory
    parser.add_argument("--batch-size", type=T.positive_int(256), default=2,
                        help="batch of the forward pass (1 to 256)")


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(model: torch.nn.Module, batch: int = 1) -> int:
    """Forward FLOPs (2 x multiply-adds) of ``batch`` images, counted by torch's FlopCounterMode.

    On a CPU the counter does not see inside ``scaled_dot_product_attention``, so the count
    leaves out the attention matmuls (QK^T and AV: 0.95 G per 112 x 112 image at the paper
    size); the paper-size model then counts 29.6 G, the figure usually quoted for TransFER. On a
    GPU (flash / memory-efficient kernels) they are counted: 30.56 G.
    """
    from torch.utils.flop_counter import FlopCounterMode

    s = model.config.input_size
    x = torch.zeros(batch, 3, s, s, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


def model_summary(model: torch.nn.Module) -> str:
    """A table of the model's top-level parts with parameter counts, and its facts."""
    c = model.config
    lines = [f"{type(model).__name__} variant={c.variant} input={c.input_size}x{c.input_size}"
             f" classes={c.num_classes}", f"{'part':<14}{'parameters':>14}"]
    for name, child in model.named_children():
        lines.append(f"{name:<14}{count_parameters(child):>14,}")
    direct = sum(p.numel() for n, p in model.named_parameters(recurse=False))
    if direct:
        lines.append(f"{'(own)':<14}{direct:>14,}")
    lines.append(f"{'total':<14}{count_parameters(model):>14,}")
    lines.append(f"forward FLOPs per image: {forward_flops(model) / 1e9:.2f} G")
    lines.append(f"normalise: mean={c.mean} std={c.std}")
    lines.append(f"classes: {', '.join(c.class_names)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from transfer_lib.models import build_model

    overrides = {"msad_mode": args.msad_mode} if args.msad_mode else {}
    model = build_model(args.variant, args.size, **overrides).eval()
    print(model_summary(model))
    s = model.config.input_size
    x = torch.randn(args.batch_size, 3, s, s)
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(x)
        elapsed = time.perf_counter() - start
    print(f"forward pass: input {tuple(x.shape)} -> logits {tuple(logits.shape)} "
          f"in {elapsed * 1000:.0f} ms on {torch.get_num_threads()} CPU threads")
    return 0
