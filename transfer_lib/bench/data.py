"""Images per second: the per-image DataLoader against the fast path, in one run.

The standard path is ``DataLoader(dataset with train_transform, num_workers=cores)``; the fast
path is :func:`~transfer_lib.data.fast.build_cache` + :class:`~transfer_lib.data.fast.FastLoader`
with :class:`~transfer_lib.data.fast.BatchAugment` on CUDA when there is one, else the CPU.
Without ``--data`` it uses the embedded synthetic set (:func:`ensure_synthetic`).

Example: python -m transfer_lib bench data --seconds 20 --json benchmarks/data_bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from transfer_lib.data import build_dataset, ensure_synthetic, train_transform
from transfer_lib.data.fast import BatchAugment, FastLoader, build_cache
from transfer_lib.models.config import TransFERConfig
from transfer_lib.utils.errors import TransferError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="RAF-DB-layout folder (default: synthetic)")
    parser.add_argument("--dataset", default=None,
                        help="data set name for --data (default rafdb)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="time per path")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DataLoader workers of the standard path (default: cores)")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--json", default=None, help="also write the figures to this file")


def _rate(batches, seconds: float, sync) -> tuple[float, int]:
    """Images per second over ``seconds`` of ``batches`` (re-iterated for each epoch; an
    iterable, not a one-shot generator), after one warm-up batch; ``sync`` before each clock
    read (``torch.cuda.synchronize`` on CUDA)."""
    it = iter(batches)
    next(it)  # warm-up: workers started, first batch decoded
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(batches)  # a new epoch
            continue
        n += len(x)
    sync()
    rate = n / (time.perf_counter() - t0)
    if hasattr(it, "close"):
        it.close()  # stops the fast loader's threads before the next path is timed
    del it
    gc.collect()
    return rate, n


class _ToDevice:
    """Re-iterable: each epoch of ``loader`` with its batches copied to ``device``."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_file

    check_output_file(args.json, "--json")  # before the minutes of measuring, not after
    if args.data is None and args.dataset not in (None, "rafdb"):
        # it measured the synthetic set under the name asked for, without a word
        raise TransferError(f"--dataset {args.dataset} needs --data DIR (its root): without "
                            f"--data the synthetic set, in RAF-DB's layout, is measured")
    config = TransFERConfig()
    name = (args.dataset or "rafdb") if args.data else "synthetic"
    root = args.data or ensure_synthetic()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    ds = build_dataset(name, root, "train", transform=train_transform(config))
    if len(ds) < args.batch_size:  # no whole batch to time: StopIteration, with a traceback
        raise TransferError(f"--batch-size {args.batch_size} is more than the {len(ds)} training "
                            f"images of {root}: give --batch-size {len(ds)} or less, or a larger "
                            f"data set")
    std_loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0,
                            pin_memory=device.type == "cuda")

    std, n_std = _rate(_ToDevice(std_loader, device), args.seconds, sync)
    del std_loader  # its persistent workers go before the fast path is timed
    gc.collect()

    cache = build_cache(build_dataset(name, root, "train"), args.cache_dir)
    fast_loader = FastLoader(cache, args.batch_size, shuffle=True, drop_last=True, device=device,
                             augment=BatchAugment(config, train=True))
    fast, n_fast = _rate(fast_loader, args.seconds, sync)
    machine = (torch.cuda.get_device_name(0) if device.type == "cuda" else
               f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})")
    result = dict(machine=machine, device=str(device), dataset=name, images=len(ds),
                  batch_size=args.batch_size, input_size=config.input_size, workers=args.workers,
                  standard_images_per_s=round(std, 1), fast_images_per_s=round(fast, 1),
                  ratio=round(fast / std, 2), torch=torch.__version__,
                  load_average=[round(v, 2) for v in os.getloadavg()])
    print(f"machine: {machine}; data: {name} ({len(ds)} train images), batch {args.batch_size}, "
          f"{config.input_size} px")
    print(f"standard DataLoader ({args.workers} workers): {std:8.1f} images/s ({n_std} images)")
    print(f"fast path ({device}):{'':16}{fast:8.1f} images/s ({n_fast} images)")
    print(f"ratio: {fast / std:.2f}x (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores: "
          "other jobs slow both paths)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        from transfer_lib.utils.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0
