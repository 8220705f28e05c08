"""The JSON and the closing table of ``benchmarks/gpu_check.sh`` (run by it, not by hand).

  python benchmarks/gpu_check_collect.py run RUN_DIR OUT.json --kind e2e|gpu [--bench B.json]
      [--command "..."]     one training run -> OUT.json: summary, metrics, config, last epoch
                            (images/s, share of the epoch spent waiting for data), for e2e the
                            ratio to `bench train` at the same batch, for gpu a T4 estimate
  python benchmarks/gpu_check_collect.py pick B.json    the configuration to sweep: the fastest
                            of optimised / graphs, else amp
  python benchmarks/gpu_check_collect.py report OUT_DIR the closing table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: A T4's dense fp16 tensor-core peak and the share of it assumed reachable (profiles.py).
T4_PEAK_TFLOPS = 65.0
T4_UTILISATION = (0.25, 0.35)


def _load(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _metrics(run: Path) -> list[dict]:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def _split_sizes(data_root: str | None) -> dict:
    """Training and test images of a data set in RAF-DB's layout, from its label file."""
    try:
        text = (Path(data_root) / "basic" / "EmoLabel" / "list_patition_label.txt").read_text()
    except (OSError, TypeError):
        return {}
    names = [line.split()[0] for line in text.splitlines() if line.strip()]
    return {"train": sum(n.startswith("train") for n in names),
            "test": sum(n.startswith("test") for n in names)}


def _bench_at(bench: dict | None, batch: int | None) -> dict:
    """images/s of each configuration of ``bench`` at ``batch``."""
    if not bench or batch is None:
        return {}
    return {r["config"]: r["images_per_second"] for r in bench.get("results", [])
            if r.get("status") == "ok" and r["batch_size"] == batch}


def _flops(size: str, device: str) -> tuple[int, int]:
    """(training, forward) FLOPs per image of TransFER at ``size``, counted on ``device`` (on a
    GPU the flash-attention matmuls are counted too)."""
    import torch

    from transfer_lib.bench.train import training_flops_per_image
    from transfer_lib.cli.summary import forward_flops
    from transfer_lib.models import build_model

    dev = torch.device(device)
    model = build_model("transfer", size).to(dev)
    return training_flops_per_image(model, dev), forward_flops(model)


def collect_run(run: Path, out: Path, kind: str, bench_path: Path | None = None,
                command: str = "") -> dict:
    config = _load(run / "config.json") or {}
    summary = _load(run / "summary.json")
    metrics = _metrics(run)
    last = metrics[-1] if metrics else None
    rec: dict = {"kind": kind, "command": command, "complete": bool(summary),
                 "summary": summary, "metrics": metrics, "config": config}
    if last is not None:
        share = last["data_wait_seconds"] / max(last["train_seconds"], 1e-9)
        rec["last_epoch"] = {k: last.get(k) for k in ("epoch", "images_per_second",
                                                      "train_seconds", "data_wait_seconds")}
        rec["last_epoch"]["data_wait_share"] = share
    train_cfg, prof = config.get("train", {}), config.get("profile", {})
    batch = prof.get("batch_size")
    if kind == "e2e" and last is not None:
        at = _bench_at(_load(bench_path) if bench_path else None, batch)
        rec["bench_at_same_batch"] = at
        rec["e2e_over_bench"] = {k: last["images_per_second"] / v for k, v in at.items()}
    if kind == "gpu" and config:
        from transfer_lib.train.profiles import get_profile

        device = config.get("device", "cpu")
        epochs = get_profile(prof.get("name", "gpu")).epochs  # the recipe's, not an override
        sizes = _split_sizes(config.get("data_root"))
        train_flops, fwd_flops = _flops(prof.get("size", "small"), device)
        epoch_flops = sizes.get("train", 0) * train_flops + sizes.get("test", 0) * fwd_flops
        t4 = {"peak_tflops": T4_PEAK_TFLOPS, "images": sizes,
              "train_flops_per_image": train_flops, "forward_flops_per_image": fwd_flops,
              "epoch_tflop": epoch_flops / 1e12, "epochs": epochs,
              "seconds_per_epoch": {}, "seconds_per_run": {}}
        utilisations = {f"{round(100 * u)} %": u for u in T4_UTILISATION}
        if last is not None and device.startswith("cuda"):
            from transfer_lib.bench.train import peak_for

            name = (summary or {}).get("device", "")
            _, peak = peak_for(name)
            if peak:
                mfu = train_flops * last["images_per_second"] / (peak * 1e12)
                rec["trainer_mfu"] = mfu
                utilisations["as on this GPU"] = mfu
        for label, u in utilisations.items():
            per_epoch = epoch_flops / (T4_PEAK_TFLOPS * 1e12 * u)
            t4["seconds_per_epoch"][label] = per_epoch
            t4["seconds_per_run"][label] = per_epoch * epochs
        rec["t4_estimate"] = t4
    rec["amp_dtype"] = train_cfg.get("amp_dtype")
    out.write_text(json.dumps(rec, indent=1))
    return rec


def pick_sweep_config(bench_path: Path) -> str:
    bench = _load(bench_path) or {}
    best = bench.get("best", {})
    compiled = [c for c in ("optimised", "graphs") if c in best]
    if compiled:
        return max(compiled, key=lambda c: best[c]["images_per_second"])
    return "amp" if "amp" in best else "baseline"


def report(out_dir: Path) -> str:
    lines = ["", "=" * 30 + " summary " + "=" * 30]
    bench = _load(out_dir / "train_bench.json")
    if bench:
        lines.append(f"bench train, {bench['model_size']} model on {bench['device']} "
                     f"({bench.get('device_memory_gib') or 0:.0f} GiB), torch {bench['torch']}:")
        for r in bench["results"]:
            if r["status"] == "ok":
                mfu = f"{100 * r['mfu']:5.1f} %" if r.get("mfu") is not None else "  -  "
                mem = f"{r['peak_memory_gib']:5.1f} GiB" if "peak_memory_gib" in r else ""
                lines.append(f"  {r['config']:<10} batch {r['batch_size']:>5}: "
                             f"{r['images_per_second']:8.0f} img/s  MFU {mfu}  {mem}  "
                             f"first step {r['first_step_seconds']:.0f} s")
            else:
                why = r.get("error") or r.get("reason") or ""
                lines.append(f"  {r['config']:<10} batch {r['batch_size']:>5}: {r['status']} "
                             f"{why[:90]}")
    for name, title in (("e2e_paper.json", "trainer, paper profile + compile"),
                        ("gpu_profile.json", "trainer, gpu profile"),
                        ("gpu_profile_fp16.json", "trainer, gpu profile in fp16 + GradScaler")):
        rec = _load(out_dir / name)
        if not rec:
            lines.append(f"{title}: no result")
            continue
        last = rec.get("last_epoch")
        s = rec.get("summary") or {}
        text = f"{title} ({rec.get('amp_dtype')}): "
        if last:
            text += (f"epoch {last['epoch']} {last['images_per_second']:.0f} img/s, data wait "
                     f"{100 * last['data_wait_share']:.1f} % of {last['train_seconds']:.1f} s")
        if s:
            text += (f"; accuracy {100 * s['final_accuracy']:.1f} %, mean class "
                     f"{100 * s['mean_class_accuracy']:.1f} %, {s['wall_seconds']:.0f} s wall")
        else:
            text += "; incomplete"
        lines.append(text)
        if rec.get("e2e_over_bench"):
            lines.append("  over bench at the same batch: " + ", ".join(
                f"{k} {v:.2f}" for k, v in rec["e2e_over_bench"].items()))
        if rec.get("t4_estimate"):
            t4 = rec["t4_estimate"]
            mfu = f"trainer MFU here {100 * rec['trainer_mfu']:.1f} %; " if "trainer_mfu" in rec else ""
            lines.append(f"  {mfu}T4 estimate ({t4['epoch_tflop']:.0f} TFLOP an epoch): " + ", ".join(
                f"{k}: {v:.1f} s/epoch, {v * (t4['epochs'] or 0) / 60:.1f} min/run"
                for k, v in t4["seconds_per_epoch"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--kind", choices=("e2e", "gpu"), required=True)
    p.add_argument("--bench", type=Path)
    p.add_argument("--command", default="")
    p = sub.add_parser("pick")
    p.add_argument("bench", type=Path)
    p = sub.add_parser("report")
    p.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.what == "run":
        collect_run(args.run_dir, args.out, args.kind, args.bench, args.command)
        print(f"wrote {args.out}")
    elif args.what == "pick":
        print(pick_sweep_config(args.bench))
    else:
        print(report(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
