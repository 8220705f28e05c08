"""Run a grid of training recipes in parallel processes and collect one JSON line per run.

Used to choose the ``cpu`` profile's recipe (issue 8): every run is ``train(profile="cpu", ...)``
with the overrides of one grid point, so what it measures is what the library trains.

    python benchmarks/recipe_sweep.py GRID.json --out runs/sweep --jobs 12 --device cuda
    python benchmarks/recipe_sweep.py GRID.json --out runs/sweep --jobs 1 --device cpu

GRID.json is a list of objects, each a set of TrainConfig overrides plus a ``name``; a key
``seeds`` (a list) expands one object into one run per seed. Results go to OUT/results.jsonl
(name, overrides, final and best accuracy, mean class accuracy, weakest class, the per-epoch
test accuracy curve, wall seconds, images/s, device); runs already complete are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def expand(grid: list[dict]) -> list[dict]:
    runs = []
    for point in grid:
        point = dict(point)
        seeds = point.pop("seeds", [0])
        for seed in seeds:
            runs.append({**point, "seed": seed, "name": f"{point['name']}-s{seed}"})
    return runs


def run_one(spec: dict, out: Path, device: str) -> dict:
    """Train one grid point in this process and return its result line."""
    import torch

    from transfer_lib.train import run_or_load

    spec = dict(spec)
    name = spec.pop("name")
    run_dir = out / name
    t0 = time.perf_counter()
    summary = run_or_load(run_dir, profile=spec.pop("profile", "cpu"), device=device,
                          progress=False, **spec)
    curve = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            m = json.loads(line)
            curve.append(round(100 * m.get("test_accuracy", float("nan")), 1))
    per_class = summary["per_class_accuracy"]
    values = list(per_class.values()) if isinstance(per_class, dict) else list(per_class)
    return {
        "name": name, "overrides": spec, "final_accuracy": summary["final_accuracy"],
        "best_accuracy": summary["best_accuracy"],
        "mean_class_accuracy": summary["mean_class_accuracy"], "weakest_class": min(values),
        "per_class_accuracy": per_class, "curve": curve, "wall_seconds": summary["wall_seconds"],
        "process_seconds": time.perf_counter() - t0,
        "images_per_second": summary["images_per_second"], "device": summary["device"],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grid")
    parser.add_argument("--out", default="runs/sweep")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one spec (JSON)
    args = parser.parse_args()
    out = Path(args.out)
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_one(json.loads(args.one), out, args.device)), flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    runs = expand(json.loads(Path(args.grid).read_text()))
    done = set()
    results = out / "results.jsonl"
    if results.exists():
        done = {json.loads(line)["name"] for line in results.read_text().splitlines() if line}
    todo = [r for r in runs if r["name"] not in done]
    print(f"{len(runs)} runs, {len(todo)} to do, {args.jobs} at a time", flush=True)
    active: list[tuple[subprocess.Popen, dict, float]] = []
    t0 = time.perf_counter()
    while todo or active:
        while todo and len(active) < args.jobs:
            spec = todo.pop(0)
            cmd = [sys.executable, __file__, args.grid, "--out", str(out), "--device", args.device,
                   "--threads", str(args.threads), "--one", json.dumps(spec)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            active.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True, env=env), spec, time.perf_counter()))
        time.sleep(0.5)
        for item in list(active):
            proc, spec, started = item
            if proc.poll() is None:
                continue
            active.remove(item)
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                print(f"FAILED {spec['name']}: {stderr.strip().splitlines()[-3:]}", flush=True)
                continue
            line = stdout.strip().splitlines()[-1]
            with open(results, "a") as f:
                f.write(line + "\n")
            r = json.loads(line)
            print(f"[{time.perf_counter() - t0:6.0f} s] {r['name']}: acc {100 * r['final_accuracy']:.1f} "
                  f"mca {100 * r['mean_class_accuracy']:.1f} min {100 * r['weakest_class']:.1f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
