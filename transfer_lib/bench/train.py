"""Training speed of TransFER: fp32 eager baseline against the optimised path, with MFU.

Examples:
  python -m transfer_lib bench train --out benchmarks/results/train_gpu.json     # on a GPU
  python -m transfer_lib bench train --batch-sizes 64,128,256 --steps 20 --time-cap 40
  python -m transfer_lib bench train --configs optimised --batch-sizes 512,1024,2048 \\
      --append --out benchmarks/results/train_gpu.json        # a batch sweep, added to the file
  python -m transfer_lib bench train --configs optimised --batch-sizes 256 \\
      --profile-out profile.txt                        # top kernels of the compiled step
  python -m transfer_lib bench train --device cpu                                # tiny model

Configurations, each at every batch size, on synthetic GPU-resident batches (model throughput
only; `bench data` measures the input pipeline):
  baseline   fp32, eager, contiguous (NCHW) tensors
  amp        bf16 autocast + channels_last + cudnn.benchmark + fused SGD, eager
  optimised  the same + torch.compile of forward, loss and accuracy as one graph (fullgraph),
             mode --compile-mode (default "default")
  graphs     optimised in mode "reduce-overhead": the step replayed as CUDA graphs
A training step is the trainer's (transfer_lib.train.make_forward_loss): forward, cross-entropy
and accuracy, then backward and an SGD step (the paper's optimiser). Warmup steps are not
timed; the first step (which compiles) is reported on its own; timing is bracketed by
torch.cuda.synchronize; each configuration stops after --time-cap seconds. Within a
configuration the batch sizes run in the order given and stop at the first out-of-memory error,
or earlier when the peak memory measured at smaller batches, extrapolated linearly, would pass
92 % of the card's memory (recorded as "skipped"): a sweep ends cleanly at the largest batch
that fits, without compiling the ones that cannot.

MFU = training FLOPs per image (counted by torch.utils.flop_counter on forward + backward) x
images/s / the device's peak dense bf16 FLOP/s (table PEAK_BF16_TFLOPS; --peak-tflops overrides).
On a CPU the tiny model runs (the paper-size one would take minutes per step) and MFU is not
reported unless --peak-tflops is given.

--profile-out F runs a few more steps of one configuration (--profile-config, default the
first of --configs that compiles, else the first) at its first batch size under torch.profiler
and writes F: the step time, the share of it the GPU was busy, time by kernel family
(convolution, matmul, attention, normalisation, fused Triton, optimiser, copies) and the top
kernels and operators by GPU time (CPU time on a CPU).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

#: Peak dense bf16 tensor-core throughput, TFLOP/s, from the vendors' data sheets (no sparsity).
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "A100": 312.0,
    "T4": 65.0,  # fp16: no bf16 tensor cores
}
RAFDB_TRAIN_IMAGES = 12_271
PAPER_EPOCHS = 40
CONFIGS: dict[str, dict] = {
    "baseline": dict(amp=False, channels_last=False, compile=False, compile_mode=None),
    "amp": dict(amp=True, channels_last=True, compile=False, compile_mode=None),
    "optimised": dict(amp=True, channels_last=True, compile=True, compile_mode="default"),
    "graphs": dict(amp=True, channels_last=True, compile=True, compile_mode="reduce-overhead"),
}
#: Batches whose extrapolated peak memory passes this share of the card are not tried.
MEMORY_HEADROOM = 0.92


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.models.config import SIZES
    from transfer_lib.train import COMPILE_MODES

    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda if present, else cpu")
    parser.add_argument("--size", choices=SIZES, default=None,
                        help="model size (default: paper on cuda, tiny on cpu)")
    parser.add_argument("--batch-sizes", type=T.BATCH_SIZES, default=None, metavar="B1,B2",
                        help="in increasing order; default 64,128,256 on cuda, 8,16 on cpu")
    parser.add_argument("--configs", default="baseline,amp,optimised", metavar="C1,C2",
                        help=f"which of {', '.join(CONFIGS)} (default baseline,amp,optimised)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile mode of the optimised configuration")
    parser.add_argument("--steps", type=T.positive_int(10**6), default=None, metavar="N",
                        help="timed steps per configuration (default 20 cuda, 4 cpu)")
    parser.add_argument("--warmup", type=T.nonnegative_int(10**6), default=None, metavar="N",
                        help="untimed steps before timing (default 5 cuda, 1 cpu)")
    parser.add_argument("--time-cap", type=T.SECONDS, default=60.0, metavar="S",
                        help="seconds of timed steps per configuration at most (default 60)")
    parser.add_argument("--peak-tflops", type=T.positive_float(1e6), default=None,
                        help="peak dense bf16 TFLOP/s for MFU (default: from the device name)")
    parser.add_argument("--out", metavar="JSON", help="write the results here")
    parser.add_argument("--append", action="store_true",
                        help="keep the results already in --out (same device and model size) "
                             "and add these, e.g. a batch sweep after the main grid")
    parser.add_argument("--profile-out", metavar="TXT",
                        help="profile the training step with torch.profiler, write a summary")
    parser.add_argument("--profile-config", choices=tuple(CONFIGS), default=None,
                        help="configuration to profile (default: the first compiled one run)")
    parser.add_argument("--profile-steps", type=T.positive_int(10**4), default=5, metavar="N",
                        help="profiled steps (default 5)")


def peak_for(device_name: str) -> tuple[str | None, float | None]:
    """(table key, TFLOP/s) of the first entry of PEAK_BF16_TFLOPS found in the device name."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return key, tflops
    return None, None


def training_flops_per_image(model: torch.nn.Module, device: torch.device, batch: int = 2) -> int:
    """Forward + backward FLOPs of one image (train mode, fp32), counted by FlopCounterMode."""
    import torch.nn.functional as F
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


def make_step(size: str, config: dict, batch: int, device: torch.device):
    """One training step of ``config`` at ``batch``: a function of no arguments that runs it on
    fixed random data (the trainer's forward/loss, then backward and SGD)."""
    from transfer_lib.models import build_model
    from transfer_lib.train import CUDA_GRAPH_MODES, compile_step, make_forward_loss
    from transfer_lib.train.model import update

    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model("transfer", size).to(device)
    fmt = torch.channels_last if config["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    fused = config["amp"] and cuda  # one kernel for the whole SGD update
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4,
                          fused=fused or None)
    if cuda:
        torch.backends.cudnn.benchmark = config["amp"]  # autotuned convolutions
    forward_loss = make_forward_loss(model, 0.0, device.type,
                                     torch.bfloat16 if config["amp"] else None)
    mode = config.get("compile_mode") or "default"
    if config["compile"]:
        forward_loss = compile_step(forward_loss, mode, fullgraph=True)
    graphs = config["compile"] and cuda and mode in CUDA_GRAPH_MODES
    s = model.config.input_size
    x = torch.randn(batch, 3, s, s, device=device).contiguous(memory_format=fmt)
    y = torch.randint(model.config.num_classes, (batch,), device=device)

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss, _ = forward_loss(x, y)
        update(opt, loss)

    return step


def measure(size: str, config: dict, batch: int, device: torch.device, steps: int, warmup: int,
            time_cap: float, profile_out: str | Path | None = None, profile_steps: int = 5,
            header: str = "") -> dict:
    """Images/s of one configuration at one batch size (see the module docstring); with
    ``profile_out``, then a profile of ``profile_steps`` more steps (:func:`profile_step`)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = make_step(size, config, batch, device)
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
    if profile_out:
        try:
            text = profile_step(step, device, profile_steps, header + f"\ntimed: {_line(out)}")
        except Exception as err:  # noqa: BLE001 - the timing stands without the profile
            text = f"{header}\nprofiling failed: {type(err).__name__}: {err}\n"
        Path(profile_out).parent.mkdir(parents=True, exist_ok=True)
        Path(profile_out).write_text(text)
        out["profile"] = str(profile_out)
    return out


#: Kernel families for the profile summary: (name, substrings of the lower-cased kernel name).
#: The first match wins: inductor's generated kernels (named after the ops they fuse, e.g.
#: ``triton_red_fused_convolution_backward_...``) first, then convolutions (cuDNN's implicit
#: GEMMs) before plain matmuls.
KERNEL_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fused Triton", ("triton_",)),
    ("attention (SDPA)", ("flash", "fmha", "attention", "attn")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "cudnn", "implicit_gemm")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "matmul", "cublas")),
    ("normalisation", ("batch_norm", "batchnorm", "layer_norm", "layernorm", "welford", "bn_")),
    ("optimiser", ("adam", "sgd", "multi_tensor", "foreach")),
    ("copy / memset", ("memcpy", "memset", "copy")),
    ("other elementwise / reduce", ("elementwise", "reduce", "vectorized", "index")),
)


def kernel_family(name: str) -> str:
    """The family of a GPU kernel, by name (see KERNEL_FAMILIES); ``other`` if none matches."""
    low = name.lower()
    for family, keys in KERNEL_FAMILIES:
        if any(k in low for k in keys):
            return family
    return "other"


def kernel_summary(kernels, steps: int, wall: float, key: str = "self_device_time_total",
                   rows: int = 25) -> list[str]:
    """Lines on the GPU kernels of ``steps`` profiled steps that took ``wall`` seconds: busy
    share, time by family (:func:`kernel_family`) and the top ``rows`` kernels. ``kernels``:
    profiler averages with ``.key``, ``.count`` and the time ``key`` in microseconds."""
    busy_us = sum(getattr(e, key) for e in kernels)
    lines = [f"GPU busy (sum of kernel times) {busy_us / 1000 / steps:.2f} ms/step = "
             f"{100 * busy_us / 1e6 / max(wall, 1e-9):.1f} % of the wall time; "
             f"{sum(e.count for e in kernels) / steps:.0f} kernels/step"]
    families: dict[str, float] = {}
    for e in kernels:
        family = kernel_family(e.key)
        families[family] = families.get(family, 0.0) + getattr(e, key)
    lines += ["", f"{'kernel family':<30}{'ms/step':>10}{'share':>9}"]
    for family, us in sorted(families.items(), key=lambda kv: -kv[1]):
        lines.append(f"{family:<30}{us / 1000 / steps:>10.3f}{100 * us / max(busy_us, 1e-9):>8.1f}%")
    lines += ["", f"top {rows} kernels by GPU time:",
              f"{'ms/step':>9}{'share':>8}{'calls/step':>11}  kernel"]
    for e in sorted(kernels, key=lambda e: -getattr(e, key))[:rows]:
        us = getattr(e, key)
        lines.append(f"{us / 1000 / steps:>9.3f}{100 * us / max(busy_us, 1e-9):>7.1f}%"
                     f"{e.count / steps:>11.1f}  {e.key[:150]}")
    return lines


def profile_step(step, device: torch.device, steps: int = 5, header: str = "",
                 rows: int = 25) -> str:
    """Run ``step`` ``steps`` times under torch.profiler; return a short text summary."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step()  # nothing left to compile or autotune inside the window
    _sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    lines = [header.strip(), f"profiled {steps} steps: {1000 * wall / steps:.2f} ms/step (wall, "
             f"with profiler overhead)"]
    if cuda:
        key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") \
            else "self_cuda_time_total"
        kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
        lines += kernel_summary(kernels, steps, wall, key, rows)
        sort_by = key
    else:
        sort_by = "self_cpu_time_total"
    lines.append("")
    lines.append(f"top {rows} operators by {sort_by}:")
    lines.append(events.table(sort_by=sort_by, row_limit=rows, max_name_column_width=60))
    return "\n".join(lines) + "\n"


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _predicted_memory(previous: list[dict], batch: int) -> float | None:
    """Peak GiB at ``batch`` extrapolated from ok runs of the same configuration: a line through
    the two largest batches, or proportional to the batch from one (an over-estimate)."""
    points = sorted((r["batch_size"], r["peak_memory_gib"]) for r in previous
                    if r.get("status") == "ok" and "peak_memory_gib" in r)
    if not points:
        return None
    if len(points) == 1 or points[-1][0] == points[-2][0]:
        b, m = points[-1]
        return m * batch / b
    (b1, m1), (b2, m2) = points[-2:]
    return m2 + (m2 - m1) / (b2 - b1) * (batch - b2)


def bench(device: str | None = None, size: str | None = None, batch_sizes: list[int] | None = None,
          configs: list[str] | None = None, steps: int | None = None, warmup: int | None = None,
          time_cap: float = 60.0, peak_tflops: float | None = None, log=print,
          out: str | Path | None = None, compile_mode: str = "default", append: bool = False,
          profile_out: str | Path | None = None, profile_config: str | None = None,
          profile_steps: int = 5) -> dict:
    """Run the benchmark and return the results dict; with ``out``, write it there after every
    measurement too, so a run cut short by a time limit still leaves its figures."""
    from transfer_lib.cli.summary import forward_flops
    from transfer_lib.models import build_model
    from transfer_lib.train.distributed import pick_device
    from transfer_lib.utils.errors import TransferError

    dev = pick_device(device)
    cuda = dev.type == "cuda"
    size = size or ("paper" if cuda else "tiny")
    batch_sizes = batch_sizes or ([64, 128, 256] if cuda else [8, 16])
    configs = configs or ["baseline", "amp", "optimised"]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise TransferError(f"--configs: unknown {', '.join(bad)}; allowed: {', '.join(CONFIGS)}")
    table = {k: dict(v) for k, v in CONFIGS.items()}
    table["optimised"]["compile_mode"] = compile_mode
    steps = steps or (20 if cuda else 4)
    warmup = warmup if warmup is not None else (5 if cuda else 1)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # the baseline is true fp32
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak_key, peak = (None, peak_tflops) if peak_tflops else peak_for(name)
    if not cuda and peak_tflops is None:
        peak_key, peak = None, None
    results: list[dict] = []
    if append and out and Path(out).is_file():
        before = _earlier_results(out)
        if (before.get("device"), before.get("model_size")) != (name, size):
            raise TransferError(f"--append: {out} holds {before.get('model_size')} on "
                                f"{before.get('device')}, not {size} on {name}")
        results = list(before.get("results", []))
    total_gib = torch.cuda.mem_get_info(dev)[1] / 2**30 if cuda else None
    if profile_config is not None and profile_config not in configs:
        raise TransferError(f"--profile-config {profile_config} is not among --configs "
                            f"{','.join(configs)}: it would never run, so nothing would be "
                            f"profiled; add it to --configs or leave --profile-config out")
    if profile_out and profile_config is None:
        compiled = [c for c in configs if table[c]["compile"]]
        profile_config = (compiled or configs)[0]
    model = build_model("transfer", size).to(dev)
    train_flops = training_flops_per_image(model, dev)
    fwd_flops = forward_flops(model)
    del model
    _cleanup(dev)
    log(f"device {name}; model size {size}; training FLOPs/image {train_flops / 1e9:.1f} G "
        f"(forward {fwd_flops / 1e9:.1f} G); peak {peak or '?'} TFLOP/s ({peak_key or 'not in table'})")

    def record(r: dict) -> None:
        results.append(r)
        log(_line(r))
        if out:
            _write(out, _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key, steps,
                                  warmup, time_cap, results, total_gib, partial=True))

    profiled = False
    for cname in configs:
        stopped = None  # why the larger batches of this configuration are not tried
        for batch in batch_sizes:
            base = {"config": cname, "batch_size": batch, **table[cname]}
            if stopped:
                record({"status": "skipped", "reason": stopped, **base})
                continue
            predicted = _predicted_memory([r for r in results if r["config"] == cname], batch)
            if cuda and predicted is not None and predicted > MEMORY_HEADROOM * total_gib:
                stopped = (f"predicted peak {predicted:.1f} GiB > {MEMORY_HEADROOM:.0%} of "
                           f"{total_gib:.1f} GiB")
                record({"status": "skipped", "reason": stopped, **base})
                continue
            profiling = profile_out if cname == profile_config and not profiled else None
            try:
                if cuda:
                    torch._dynamo.reset()
                header = (f"training step of {cname} {table[cname]} at batch {batch}, model "
                          f"{size}, on {name}, torch {torch.__version__}")
                r = measure(size, table[cname], batch, dev, steps, warmup, time_cap,
                            profile_out=profiling, profile_steps=profile_steps, header=header)
            except Exception as err:  # noqa: BLE001 - record and go on
                r = {"status": "oom" if _is_oom(err) else "error", "batch_size": batch,
                     "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
                if r["status"] == "oom":
                    stopped = f"out of memory at batch {batch}"
            _cleanup(dev)
            r.update(base)
            profiled = profiled or (profiling is not None and r["status"] == "ok")
            if r["status"] == "ok":
                r["mfu"] = train_flops * r["images_per_second"] / (peak * 1e12) if peak else None
                r["est_hours_40_epochs_rafdb"] = (PAPER_EPOCHS * RAFDB_TRAIN_IMAGES
                                                  / r["images_per_second"] / 3600)
            record(r)
    if cuda:
        torch._dynamo.reset()
    result = _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key, steps, warmup,
                       time_cap, results, total_gib, partial=False)
    result["profiled"] = profiled
    if out:
        _write(out, result)
    return result


def _earlier_results(out: str | Path) -> dict:
    """The results file ``--append`` adds to, checked: a file that is not this command's JSON
    (a dict with a ``results`` list) raises TransferError, and is left as it is."""
    from transfer_lib.utils.errors import TransferError

    try:
        before = json.loads(Path(out).read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise TransferError(f"--append: {out} is not JSON ({err}), so not a file `bench train "
                            f"--out` wrote; give another --out, or leave --append out to "
                            f"replace it") from None
    if not isinstance(before, dict) or not isinstance(before.get("results", []), list):
        raise TransferError(f"--append: {out} is JSON but not results of `bench train` (a dict "
                            f"with a 'results' list); give another --out, or leave --append out "
                            f"to replace it")
    return before


def _write(path: str | Path, result: dict) -> None:
    from transfer_lib.utils.atomic import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1))  # a temporary of its own a process


def _assemble(name, dev, size, train_flops, fwd_flops, peak, peak_key, steps, warmup, time_cap,
              results, total_gib, partial) -> dict:
    cuda = dev.type == "cuda"
    best = {}
    for cname in dict.fromkeys(r["config"] for r in results):
        ok = [r for r in results if r["config"] == cname and r["status"] == "ok"]
        if ok:
            best[cname] = max(ok, key=lambda r: r["images_per_second"])
    summary = {k: {"batch_size": v["batch_size"], "images_per_second": v["images_per_second"],
                   "mfu": v.get("mfu"), "peak_memory_gib": v.get("peak_memory_gib"),
                   "est_hours_40_epochs_rafdb": v["est_hours_40_epochs_rafdb"]}
               for k, v in best.items()}
    ratio = fastest_ratio = None
    if "baseline" in best and "optimised" in best:
        ratio = best["optimised"]["images_per_second"] / best["baseline"]["images_per_second"]
    fastest = max(best, key=lambda k: best[k]["images_per_second"], default=None)
    if "baseline" in best:
        fastest_ratio = best[fastest]["images_per_second"] / best["baseline"]["images_per_second"]
    return {
        "device": name, "device_type": dev.type, "torch": torch.__version__, "model_size": size,
        "device_memory_gib": total_gib,
        "note": None if cuda else "CPU: the tiny model, fp32 kernels; bf16/compile figures on a "
                                  "CPU say nothing about a GPU",
        "data": "synthetic GPU-resident batches (model throughput; see `bench data`)",
        "train_flops_per_image": train_flops, "forward_flops_per_image": fwd_flops,
        "peak_bf16_tflops": peak, "peak_source": peak_key or ("--peak-tflops" if peak else None),
        "steps": steps, "warmup": warmup, "time_cap_s": time_cap,
        "results": results, "best": summary, "optimised_over_baseline": ratio,
        "fastest": fastest, "fastest_over_baseline": fastest_ratio,
        "rafdb_train_images": RAFDB_TRAIN_IMAGES, "epochs_for_estimate": PAPER_EPOCHS,
        "partial": partial,
    }


def _line(r: dict) -> str:
    if r["status"] != "ok":
        why = r.get("error") or r.get("reason") or ""
        return f"{r.get('config', ''):<10} batch {r['batch_size']:>4}: {r['status']} {why}"
    mfu = f"{100 * r['mfu']:5.1f} %" if r.get("mfu") is not None else "   - "
    mem = f"{r['peak_memory_gib']:6.1f} GiB" if "peak_memory_gib" in r else ""
    hours = (f"  40 epochs {r['est_hours_40_epochs_rafdb']:6.2f} h"
             if "est_hours_40_epochs_rafdb" in r else "")
    return (f"{r.get('config', ''):<10} batch {r['batch_size']:>4}: {r['images_per_second']:9.1f} img/s "
            f"{r['step_ms']:8.1f} ms/step  MFU {mfu}  first step {r['first_step_seconds']:6.1f} s"
            f"{hours} {mem}")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.utils.errors import TransferError

    try:
        batch_sizes = ([int(b) for b in args.batch_sizes.split(",") if b.strip()]
                       if args.batch_sizes else None)
    except ValueError:
        raise TransferError(f"--batch-sizes {args.batch_sizes!r}: expected integers like 64,128,256") from None
    if batch_sizes is not None and (not batch_sizes or min(batch_sizes) < 1):
        raise TransferError(f"--batch-sizes {args.batch_sizes!r}: expected positive integers")
    if args.profile_config is not None and not args.profile_out:
        raise TransferError("--profile-config picks what --profile-out profiles: give "
                            "--profile-out TXT too")
    if args.append and not args.out:
        raise TransferError("--append adds to the file of --out: give --out JSON")
    from transfer_lib.cli import check_output_file

    check_output_file(args.out, "--out")
    check_output_file(args.profile_out, "--profile-out", [("--out", args.out)])
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    result = bench(args.device, args.size, batch_sizes, configs, args.steps, args.warmup,
                   args.time_cap, args.peak_tflops, out=args.out, compile_mode=args.compile_mode,
                   append=args.append, profile_out=args.profile_out,
                   profile_config=args.profile_config, profile_steps=args.profile_steps)
    ratio = result["fastest_over_baseline"]
    for k, v in result["best"].items():
        mfu = f", MFU {100 * v['mfu']:.1f} %" if v.get("mfu") is not None else ""
        print(f"best {k}: {v['images_per_second']:.1f} img/s at batch {v['batch_size']}{mfu}, "
              f"40 epochs of {RAFDB_TRAIN_IMAGES} images in {v['est_hours_40_epochs_rafdb']:.2f} h")
    if ratio is not None:
        print(f"fastest ({result['fastest']}) / baseline: {ratio:.2f}x")
    if args.profile_out:
        if result["profiled"]:
            print(f"wrote {args.profile_out}")
        else:
            print(f"error: nothing was profiled, {args.profile_out} not written: the "
                  f"{args.profile_config or 'profiled'} configuration did not run to the end "
                  f"(see its status above)", file=sys.stderr)
            return 1
    if args.out:
        print(f"wrote {args.out}")
    return 0
