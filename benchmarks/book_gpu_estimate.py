"""How long the whole book takes at the `gpu` profile on a T4-class GPU, estimated without one.

    python benchmarks/book_gpu_estimate.py [--json F] [--render-sample 300]
    python benchmarks/book_gpu_estimate.py --rows all --seeds 2 --epochs 10   # another plan

Issue 8 asks for the `gpu` book (a GPU without RAF-DB, Colab's T4) in at most 30 minutes,
estimated from measured FLOPs. The estimate adds up what the chapters run at `gpu`:

* GPU work, from FLOPs counted on this CPU (``FlopCounterMode``; the attention matmuls, which
  a CPU count misses, added as 4 N^2 D a block forward) at a T4's 65 TFLOP/s fp16 peak and an
  assumed utilisation (15, 25 and 35 %): chapter 6's training (the `gpu` recipe: small model,
  20 epochs, evaluation every 3), chapter 7's live ablation (``ablate.BOOK_ABLATIONS["gpu"]``
  unless --rows/--seeds/--epochs say otherwise; each run evaluated and tested with each part
  hidden), and a pass over the test set for each of chapter 8's measured runs;
* CPU work, timed here: drawing the synthetic faces (the RAF-DB-sized set of chapter 2, and the
  test faces re-drawn with each part hidden for the occlusion test), from the rate at which
  this machine draws a sample of them;
* the chapters whose work does not depend on the profile (1, 3, 4, 5, 10, 11), at the seconds
  `make run` measured for them on this CPU (the results page, "How long the commands take"), and for the others what
  they spend besides training and drawing faces (imports, plots, tables), as `make run` measured
  it too.

It prints one table and, with --json, writes the figures. It is an estimate: a measurement on a
lent T4 replaces it (benchmarks/gpu_check.sh records `t4_estimate` beside the trainer's MFU).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from transfer_lib.bench.train import training_flops_per_image
from transfer_lib.book.ablate import BOOK_ABLATIONS, PAPER_ROWS, ROWS, machine
from transfer_lib.cli.summary import forward_flops
from transfer_lib.data.synth import PARTS, generate
from transfer_lib.models import build_model
from transfer_lib.train.profiles import get_profile
from transfer_lib.utils.atomic import atomic_write_text

T4_PEAK_TFLOPS = 65.0  # dense fp16 tensor cores; a T4 has no bf16 (the trainer picks fp16)
UTILISATIONS = (0.15, 0.25, 0.35)
BUDGET_MINUTES = 30.0
#: seconds of the chapters whose work is the same at every profile, as `make run` measured them
#: on the 2-core AMD EPYC (jupyter-book's "Executed notebook in" lines, the results page)
FIXED_CHAPTER_SECONDS = {"01_preface": 11.8, "03_stem": 10.7, "04_local_cnn": 12.0,
                         "05_msad": 14.5, "10_engineering": 21.0, "11_claims": 7.2}
#: the same run's seconds of the other chapters less their training or face drawing (chapter 2:
#: 39.9 s less 3,700 faces at about 150 a second; chapter 6: 733 s less 710 s of training;
#: chapter 7: 89 s less the 72 s rerun; chapters 8 and 9: all of it, 22 and 25 s)
OVERHEAD_SECONDS = {"02_data": 15.0, "06_transfer": 23.0, "07_ablations": 17.0,
                    "08_attention": 22.0, "09_beyond": 25.0}


def attention_flops(model: torch.nn.Module) -> int:
    """Forward FLOPs of the attention matmuls (QK^T and AV) of one image: 4 N^2 D a block."""
    c = model.config
    if getattr(model, "transformer", None) is None:  # the CNN row
        return 0
    n = c.num_tokens + 1  # with the class token
    return 4 * n * n * c.embed_dim * c.depth


def flops_of(row: str, size: str) -> tuple[int, int]:
    """(training, forward) FLOPs per image of an ablation row at ``size``."""
    r = ROWS[row]
    switches = {k: v for k, v in (("msad_mode", r.msad_mode),
                                  ("map_regulariser", r.map_regulariser)) if v is not None}
    model = build_model(r.variant, size, **switches)
    att = attention_flops(model)
    train = training_flops_per_image(model, torch.device("cpu")) + 3 * att
    return train, forward_flops(model) + att


def render_rate(sample: int) -> float:
    """Synthetic faces drawn a second on this machine (the generator's default processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(os.path.join(tmp, "s"), train=sample, test=0)
        return sample / (time.perf_counter() - start)


def estimate(render_sample: int = 300, rows=None, seeds=None, epochs=None) -> dict:
    gpu = get_profile("gpu")
    plan = BOOK_ABLATIONS["gpu"]
    rows = list(rows or plan["rows"])
    seeds, epochs = seeds or plan["seeds"], epochs or plan.get("epochs", gpu.epochs)
    n_train, n_test = gpu.synthetic_train, gpu.synthetic_test
    evals = lambda epochs, every: len(set(range(every, epochs + 1, every)) | {epochs})  # noqa: E731
    work: dict[str, float] = {}  # chapter -> GPU TFLOP
    train_fl, fwd_fl = flops_of("transfer", gpu.size)
    work["06_transfer"] = (gpu.epochs * n_train * train_fl
                           + evals(gpu.epochs, gpu.eval_every) * n_test * fwd_fl) / 1e12
    ablation = 0.0
    per_row = {}
    for row in rows:
        t, f = flops_of(row, gpu.size)
        per_row[row] = {"train_gflops": t / 1e9, "forward_gflops": f / 1e9}
        per_run = (epochs * n_train * t
                   + (evals(epochs, gpu.eval_every) + 1 + len(PARTS)) * n_test * f)
        ablation += seeds * per_run
    work["07_ablations"] = ablation / 1e12
    # chapter 8: one pass over the test set for each run of the paper's rows
    work["08_attention"] = sum(r in PAPER_ROWS for r in rows) * seeds * n_test * fwd_fl / 1e12
    # chapter 9: chapter 6's model on the test set with nothing and each part hidden
    work["09_beyond"] = (1 + len(PARTS)) * n_test * fwd_fl / 1e12
    rate = render_rate(render_sample)
    cpu = {"02_data": (n_train + n_test) / rate,  # the RAF-DB-sized synthetic set
           "07_ablations": len(PARTS) * n_test / rate}  # the test faces, each part hidden
    table = {}
    for u in UTILISATIONS:
        seconds = {ch: tflop / (T4_PEAK_TFLOPS * u) for ch, tflop in work.items()}
        for extra in (cpu, OVERHEAD_SECONDS):  # added to the chapter's GPU seconds
            for ch, s in extra.items():
                seconds[ch] = seconds.get(ch, 0.0) + s
        seconds.update(FIXED_CHAPTER_SECONDS)
        table[f"{round(100 * u)} %"] = {"seconds": seconds,
                                        "minutes": sum(seconds.values()) / 60}
    return {
        "what": "the gpu-profile book on a T4, estimated (benchmarks/book_gpu_estimate.py)",
        "t4_peak_tflops": T4_PEAK_TFLOPS, "budget_minutes": BUDGET_MINUTES,
        "images": {"train": n_train, "test": n_test},
        "ablation_plan": {"rows": rows, "seeds": seeds, "epochs": epochs},
        "gpu_tflop": work, "per_row_small": per_row,
        "cpu_render_faces_per_second": rate, "cpu_seconds": cpu,
        "fixed_chapter_seconds": FIXED_CHAPTER_SECONDS, "overhead_seconds": OVERHEAD_SECONDS,
        "by_utilisation": table,
        "machine": {**machine(), "load_average": os.getloadavg()[0]},
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--render-sample", type=int, default=300,
                        help="faces drawn to time the generator (default 300)")
    parser.add_argument("--rows", help="chapter 7's rows, comma-separated, or 'all' "
                        "(default: ablate.BOOK_ABLATIONS['gpu'])")
    parser.add_argument("--seeds", type=int, help="seeds a row (default: the same)")
    parser.add_argument("--epochs", type=int, help="epochs a run (default: the same)")
    args = parser.parse_args(argv)
    rows = None if not args.rows else list(ROWS) if args.rows == "all" else args.rows.split(",")
    unknown = [r for r in rows or [] if r not in ROWS]
    if unknown:
        parser.error(f"--rows: {', '.join(unknown)} not among {', '.join(ROWS)}")
    result = estimate(args.render_sample, rows, args.seeds, args.epochs)
    plan = result["ablation_plan"]
    print(f"chapter 7 at gpu: {', '.join(plan['rows'])}; {plan['seeds']} seeds of "
          f"{plan['epochs']} epochs")
    print("GPU work (TFLOP): " + ", ".join(f"{k} {v:,.0f}"
                                            for k, v in result["gpu_tflop"].items()))
    print(f"faces drawn on this CPU: {result['cpu_render_faces_per_second']:.0f} a second "
          f"(load average {result['machine']['load_average']:.1f})")
    chapters = sorted({c for r in result["by_utilisation"].values() for c in r["seconds"]})
    print(f"{'chapter':16}" + "".join(f"{k + ' MFU':>12}" for k in result["by_utilisation"]))
    for ch in chapters:
        print(f"{ch:16}" + "".join(f"{r['seconds'].get(ch, 0) / 60:>11.1f}m"
                                   for r in result["by_utilisation"].values()))
    print(f"{'whole book':16}" + "".join(f"{r['minutes']:>11.1f}m"
                                         for r in result["by_utilisation"].values())
          + f"   (budget {BUDGET_MINUTES:.0f} min)")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
