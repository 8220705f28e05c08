"""Several processes, one training run: the few pieces of ``torch.distributed`` the trainer uses.

Start with ``torchrun --nproc_per_node=N -m transfer_lib train ...``: torchrun sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` joins the group (NCCL on GPUs, gloo on
CPUs) and gives each process its device. Without those variables everything here is a no-op for a
single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, prints, evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str | None = None, local_rank: int = 0) -> torch.device:
    """``name`` ("cuda", "cpu", "cuda:1"...) or the best available: CUDA, else CPU."""
    from transfer_lib.utils.errors import TransferError

    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise TransferError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N "
                            f"(e.g. cuda:1), or leave it out") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TransferError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise TransferError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s), "
                                f"numbered from 0")
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group when started by torchrun; otherwise a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world <= 1:
        return DistContext(0, 1, 0, dev)
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    return DistContext(rank, world, local_rank, dev, here)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_object(ctx: DistContext, obj):
    """A list with every rank's ``obj`` (a one-element list in a single process)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on some rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup(ctx: DistContext) -> None:
    if ctx.initialised_here and dist.is_initialized():
        dist.destroy_process_group()
