"""Why runs stall, and whether a fix stops it: short-budget runs of every ablation row, resumable.

A run *stalls* when its final mean class accuracy is at most 30 % (chance: 14.3 %), fixed before
any run of this study. The budget is the committed 3-epoch ablation's (``book/results/
ablation-cpu.json``: the cpu recipe cut to 3 epochs, 1 of warmup), where 19 of its 37 runs
stall. Each run is the ablation's row and seed rerun through ``transfer_lib.book.ablate.rerun`` with
the arm's changes, pinned kernels (so it repeats on any x86 CPU), and is appended to the JSONL
file as soon as it ends; a rerun of the command skips the runs already there.

    python benchmarks/stall_study.py --arm head_normal --rows all --seeds 0,1,2 \\
        --out runs/stall --jsonl book/results/stall-study.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import transfer_lib  # noqa: F401  (pins the kernels before torch loads)
from transfer_lib.book.ablate import ROWS, git_state, load_ablation, rerun
from transfer_lib.utils.kernels import provenance

STALL_AT = 30.0  # mean class accuracy (%) at or below which a run stalled
BUDGET = Path(__file__).resolve().parents[1] / "book" / "results" / "ablation-cpu.json"
#: arm -> TrainConfig changes on top of the committed 3-epoch ablation's recipe
ARMS: dict[str, dict] = {
    "current": {},
    "head_normal": {"model_overrides": {"head_init": "normal"}},
    # amendment 1: and MAD / the map regulariser / MSAD off during the 1-epoch warmup
    "head_normal_late_drop": {"model_overrides": {"head_init": "normal"},
                              "regularise_from_epoch": 1},
}


def done(jsonl: Path) -> set[tuple[str, str, int]]:
    if not jsonl.is_file():
        return set()
    return {(r["arm"], r["row"], r["seed"]) for r in map(json.loads, jsonl.read_text().splitlines())
            if r}


def table(jsonl: Path, arm: str, seeds: list[int]) -> str:
    """Markdown: per row, the committed (before) and the arm's (after) mean class accuracy of
    each seed, and the stall counts."""
    before = load_ablation(BUDGET)
    after = {(r["row"], r["seed"]): r for r in map(json.loads, jsonl.read_text().splitlines())
             if r and r["arm"] == arm}
    lines = ["| row | before: mean class accuracy (%) by seed | stalls | after | stalls |",
             "| --- | --- | --- | --- | --- |"]
    tb = ta = nb = na = 0
    for r in before["rows"]:
        runs = {run["seed"]: run["metrics"]["mean_class_accuracy"] for run in r["runs"]}
        b = [runs[s] for s in seeds if s in runs]
        a = [after[(r["row"], s)]["mean_class_accuracy"] for s in seeds if (r["row"], s) in after]
        sb, sa = sum(v <= STALL_AT for v in b), sum(v <= STALL_AT for v in a)
        tb, ta, nb, na = tb + sb, ta + sa, nb + len(b), na + len(a)
        lines.append(f"| `{r['row']}` | {' / '.join(f'{v:.1f}' for v in b)} | {sb} of {len(b)} | "
                     f"{' / '.join(f'{v:.1f}' for v in a) or '-'} | {sa} of {len(a)} |")
    lines.append(f"| all | | **{tb} of {nb}** | | **{ta} of {na}** |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", action="store_true",
                   help="print the before/after table of --arm from --jsonl and stop")
    p.add_argument("--arm", choices=ARMS, required=True)
    p.add_argument("--budget", default=str(BUDGET),
                   help="the ablation results whose recipe the runs take (default: the 3-epoch one)")
    p.add_argument("--rows", default="all")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="runs/stall")
    p.add_argument("--jsonl", default="book/results/stall-study.jsonl")
    a = p.parse_args()
    rows = list(ROWS) if a.rows == "all" else a.rows.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    jsonl = Path(a.jsonl)
    if a.table:
        print(table(jsonl, a.arm, seeds))
        return 0
    budget = load_ablation(a.budget)
    for row in rows:
        for seed in seeds:
            if (a.arm, row, seed) in done(jsonl):
                continue
            out = Path(a.out) / a.arm / f"{row}-seed{seed}"
            t0 = time.perf_counter()
            record = rerun(budget, row, seed, out, **ARMS[a.arm])
            m = record["metrics"]
            line = {"arm": a.arm, "changes": ARMS[a.arm], "row": row, "seed": seed,
                    "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
                    "stalled": m["mean_class_accuracy"] <= STALL_AT,
                    "wall_seconds": time.perf_counter() - t0, "budget": Path(a.budget).name,
                    "git": git_state(),
                    "provenance": record.get("provenance") or provenance()}
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            with open(jsonl, "a") as f:
                f.write(json.dumps(line) + "\n")
            print(f"{a.arm} {row} seed {seed}: mean class accuracy "
                  f"{m['mean_class_accuracy']:.1f} %{' STALLED' if line['stalled'] else ''} "
                  f"({line['wall_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
