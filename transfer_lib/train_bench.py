"""Training speed of TransFER: fp32 eager baseline against the optimised path, with MFU.

Examples:
  python -m transfer_lib bench train --out benchmarks/results/train_gpu.json     # on a GPU
  python -m transfer_lib bench train --batch-sizes 64,128,256 --steps 20 --time-cap 40
  python -m transfer_lib bench train --device cpu                                # tiny model

Configurations, each at every batch size, on synthetic GPU-resident batches (model throughput
only; `bench data` measures the input pipeline):
  baseline   fp32, eager, contiguous (NCHW) tensors
  amp        bf16 autocast + channels_last + cudnn.benchmark + fused SGD, eager
  optimised  the same + torch.compile
A training step is forward, cross-entropy, backward and an SGD step (the paper's optimiser).
Warmup steps are not timed; the first step (which compiles) is reported on its own; timing is
bracketed by torch.cuda.synchronize; each configuration stops after --time-cap seconds; an
out-of-memory error is recorded for that batch size and the benchmark goes on.

MFU = training FLOPs per image (counted by torch.utils.flop_counter on forward + backward) x
images/s / the device's peak dense bf16 FLOP/s (table PEAK_BF16_TFLOPS; --peak-tflops overrides).
On a CPU the tiny model runs (the paper-size one would take minutes per step) and MFU is not
reported unless --peak-tflops is given.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

#: Peak dense bf16 tensor-core throughput, TFLOP/s, from the vendors' data sheets (no sparsity).
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "A100": 312.0,
}
RAFDB_TRAIN_IMAGES = 12_271
PAPER_EPOCHS = 40
CONFIGS: dict[str, dict] = {
    "baseline": dict(amp=False, channels_last=False, compile=False),
    "amp": dict(amp=True, channels_last=True, compile=False),
    "optimised": dict(amp=True, channels_last=True, compile=True),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda if present, else cpu")
    parser.add_argument("--size", choices=("paper", "tiny"), default=None,
                        help="model size (default: paper on cuda, tiny on cpu)")
    parser.add_argument("--batch-sizes", default=None, metavar="B1,B2",
                        help="default 64,128,256 on cuda, 8,16 on cpu")
    parser.add_argument("--configs", default=",".join(CONFIGS), metavar="C1,C2",
                        help=f"which of {', '.join(CONFIGS)} (default all)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="timed steps per configuration (default 20 cuda, 4 cpu)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="untimed steps before timing (default 5 cuda, 1 cpu)")
    parser.add_argument("--time-cap", type=float, default=60.0, metavar="S",
                        help="seconds of timed steps per configuration at most (default 60)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak dense bf16 TFLOP/s for MFU (default: from the device name)")
    parser.add_argument("--out", metavar="JSON", help="write the results here")


def peak_for(device_name: str) -> tuple[str | None, float | None]:
    """(table key, TFLOP/s) of the first entry of PEAK_BF16_TFLOPS found in the device name."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return key, tflops
    return None, None


def training_flops_per_image(model: torch.nn.Module, device: torch.device, batch: int = 2) -> int:
    """Forward + backward FLOPs of one image (train mode, fp32), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    s = model.config.input_size
    x = torch.randn(batch, 3, s, s, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    model.train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() // batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def measure(size: str, config: dict, batch: int, device: torch.device, steps: int, warmup: int,
            time_cap: float) -> dict:
    """Images/s of one configuration at one batch size (see the module docstring)."""
    from transfer_lib.models import build_model

    torch.manual_seed(0)
    model = build_model("transfer", size).to(device)
    fmt = torch.channels_last if config["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    fused = config["amp"] and device.type == "cuda"  # one kernel for the whole SGD update
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4,
                          fused=fused or None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config["amp"]  # autotuned convolutions
    net = torch.compile(model) if config["compile"] else model
    s = model.config.input_size
    x = torch.randn(batch, 3, s, s, device=device).contiguous(memory_format=fmt)
    y = torch.randint(model.config.num_classes, (batch,), device=device)
    amp = config["amp"]

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    _sync(device)
    done, t0 = 0, time.perf_counter()
    chunk = max(1, min(5, steps))
    while done < steps:
        for _ in range(min(chunk, steps - done)):
            step()
        _sync(device)
        done += min(chunk, steps - done)
        if time.perf_counter() - t0 > time_cap:
            break
    elapsed = time.perf_counter() - t0
    out = {"status": "ok", "batch_size": batch, "timed_steps": done,
           "first_step_seconds": first, "step_ms": 1000 * elapsed / done,
           "images_per_second": done * batch / elapsed}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench(device: str | None = None, size: str | None = None, batch_sizes: list[int] | None = None,
          configs: list[str] | None = None, steps: int | None = None, warmup: int | None = None,
          time_cap: float = 60.0, peak_tflops: float | None = None, log=print,
          out: str | Path | None = None) -> dict:
    """Run the benchmark and return the results dict; with ``out``, write it there after every
    measurement too, so a run cut short by a time limit still leaves its figures."""
    from transfer_lib.distributed import pick_device
    from transfer_lib.errors import TransferError
    from transfer_lib.models import build_model
    from transfer_lib.summary import forward_flops

    dev = pick_device(device)
    cuda = dev.type == "cuda"
    size = size or ("paper" if cuda else "tiny")
    batch_sizes = batch_sizes or ([64, 128, 256] if cuda else [8, 16])
    configs = configs or list(CONFIGS)
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise TransferError(f"--configs: unknown {', '.join(bad)}; allowed: {', '.join(CONFIGS)}")
    steps = steps or (20 if cuda else 4)
    warmup = warmup if warmup is not None else (5 if cuda else 1)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # the baseline is true fp32
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak_key, peak = (None, peak_tflops) if peak_tflops else peak_for(name)
    if not cuda and peak_tflops is None:
        peak_key, peak = None, None
    model = build_model("transfer", size).to(dev)
    train_flops = training_flops_per_image(model, dev)
    fwd_flops = forward_flops(model)
    del model
    _cleanup(dev)
    log(f"device {name}; model size {size}; training FLOPs/image {train_flops / 1e9:.1f} G "
        f"(forward {fwd_flops / 1e9:.1f} G); peak {peak or '?'} TFLOP/s ({peak_key or 'not in table'})")
    results = []
    for cname in configs:
        for batch in batch_sizes:
            try:
                if cuda:
                    torch._dynamo.reset()
                r = measure(size, CONFIGS[cname], batch, dev, steps, warmup, time_cap)
            except Exception as err:  # noqa: BLE001 - record and go on
                r = {"status": "oom" if _is_oom(err) else "error", "batch_size": batch,
                     "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
            _cleanup(dev)
            r["config"] = cname
            r.update(CONFIGS[cname])
            if r["status"] == "ok":
                r["mfu"] = train_flops * r["images_per_second"] / (peak * 1e12) if peak else None
                r["est_hours_40_epochs_rafdb"] = (PAPER_EPOCHS * RAFDB_TRAIN_IMAGES
                                                  / r["images_per_second"] / 3600)
            results.append(r)
            log(_line(r))
            if out:
                _write(out, _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key,
                                      steps, warmup, time_cap, results, configs, partial=True))
    result = _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key, steps, warmup,
                       time_cap, results, configs, partial=False)
    if out:
        _write(out, result)
    return result


def _write(path: str | Path, result: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


def _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key, steps, warmup, time_cap,
              results, configs, partial) -> dict:
    cuda = dev.type == "cuda"
    best = {}
    for cname in configs:
        ok = [r for r in results if r["config"] == cname and r["status"] == "ok"]
        if ok:
            best[cname] = max(ok, key=lambda r: r["images_per_second"])
    summary = {k: {"batch_size": v["batch_size"], "images_per_second": v["images_per_second"],
                   "mfu": v.get("mfu"), "est_hours_40_epochs_rafdb": v["est_hours_40_epochs_rafdb"]}
               for k, v in best.items()}
    ratio = None
    if "baseline" in best and "optimised" in best:
        ratio = best["optimised"]["images_per_second"] / best["baseline"]["images_per_second"]
    return {
        "device": name, "device_type": dev.type, "torch": torch.__version__, "model_size": size,
        "note": None if cuda else "CPU: the tiny model, fp32 kernels; bf16/compile figures on a "
                                  "CPU say nothing about a GPU",
        "data": "synthetic GPU-resident batches (model throughput; see `bench data`)",
        "train_flops_per_image": train_flops, "forward_flops_per_image": fwd_flops,
        "peak_bf16_tflops": peak, "peak_source": peak_key or ("--peak-tflops" if peak else None),
        "steps": steps, "warmup": warmup, "time_cap_s": time_cap,
        "results": results, "best": summary, "optimised_over_baseline": ratio,
        "rafdb_train_images": RAFDB_TRAIN_IMAGES, "epochs_for_estimate": PAPER_EPOCHS,
        "partial": partial,
    }


def _line(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['config']:<10} batch {r['batch_size']:>4}: {r['status']} {r.get('error', '')}"
    mfu = f"{100 * r['mfu']:5.1f} %" if r.get("mfu") is not None else "   - "
    mem = f"{r['peak_memory_gib']:6.1f} GiB" if "peak_memory_gib" in r else ""
    return (f"{r['config']:<10} batch {r['batch_size']:>4}: {r['images_per_second']:9.1f} img/s "
            f"{r['step_ms']:8.1f} ms/step  MFU {mfu}  first step {r['first_step_seconds']:6.1f} s"
            f"  40 epochs {r['est_hours_40_epochs_rafdb']:6.2f} h {mem}")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.errors import TransferError

    try:
        batch_sizes = ([int(b) for b in args.batch_sizes.split(",") if b.strip()]
                       if args.batch_sizes else None)
    except ValueError:
        raise TransferError(f"--batch-sizes {args.batch_sizes!r}: expected integers like 64,128,256") from None
    if batch_sizes is not None and (not batch_sizes or min(batch_sizes) < 1):
        raise TransferError(f"--batch-sizes {args.batch_sizes!r}: expected positive integers")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    result = bench(args.device, args.size, batch_sizes, configs, args.steps, args.warmup,
                   args.time_cap, args.peak_tflops, out=args.out)
    ratio = result["optimised_over_baseline"]
    for k, v in result["best"].items():
        mfu = f", MFU {100 * v['mfu']:.1f} %" if v.get("mfu") is not None else ""
        print(f"best {k}: {v['images_per_second']:.1f} img/s at batch {v['batch_size']}{mfu}, "
              f"40 epochs of {RAFDB_TRAIN_IMAGES} images in {v['est_hours_40_epochs_rafdb']:.2f} h")
    if ratio is not None:
        print(f"optimised / baseline: {ratio:.2f}x")
    if args.out:
        print(f"wrote {args.out}")
    return 0
