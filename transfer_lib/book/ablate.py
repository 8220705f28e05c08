"""The paper's ablation, run for several seeds at one profile's scale, tested under occlusion, and
tabulated with paired intervals (chapters 7 and 9).

Examples:
  python -m transfer_lib ablate --profile cpu                      # every row, default seed plan
  python -m transfer_lib ablate --profile cpu --results book/results/ablation-cpu
  python -m transfer_lib ablate --profile smoke --seeds 1 --rows ir50,transfer
  python -m transfer_lib ablate --profile paper --data data/RAF-DB --out runs/ablate-paper \\
      --ir50 weights/backbone_ir50_ms1m_epoch120.pth --vit weights/vit_small_p16_224-15ec54c9.pth

Rows: the CNN baseline ``ir50`` (the stem, global average pooling, a linear head), the four of
the paper's Table 1 (vit_fer, local, local_mad, transfer), TransFER with the authors'-code MSAD
(transfer_token), and MAD replaced by Dropout, DropBlock or Spatial Dropout on the attention
maps (local_dropout, local_dropblock, local_spatial: the local_mad config with another map
regulariser).

Seeds: without --seeds, 5 seeds (0..4) for ir50 and the paper's four rows, 3 (0..2) for the
others (:data:`DEFAULT_SEEDS`); --seeds N runs seeds 0..N-1 for every row; --seeds
3,local=5,transfer=5 gives the named rows their own count and the others 3 (without the bare
number, the others keep the default plan).

Runs: one run directory per row and seed (OUT/ROW/seedS); runs already complete are skipped,
interrupted ones resume (``train.run_or_load``). After a run, its final weights (``last.pt``,
the weights that ``final_accuracy`` comes from) are evaluated with each facial part hidden
(:func:`transfer_lib.evaluate.occlusion.evaluate_occlusion`) and the result is kept in
OUT/ROW/seedS/occlusion.json, so tabulating again computes nothing.

Results: OUT/ablation.json and OUT/ablation.md (and PREFIX.json / PREFIX.md with --results
PREFIX): mean ± std over seeds of accuracy, mean class accuracy and accuracy with each part
hidden; for each consecutive pair of the paper's rows, the CNN against TransFER and MAD against
each other regulariser (:data:`COMPARISONS`) the paired difference over the seeds both rows have,
with a 95 % Student-t interval (:func:`paired_difference`); and a ``provenance`` record (command,
git commit, versions, machine, load average, wall seconds of every run). The only paper figure
shown is TransFER's published 90.91 % on RAF-DB, and only when the data set is the real RAF-DB:
the paper's ablation numbers are not known to us and are not invented.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: TransFER's published RAF-DB accuracy (the authors' evaluation log, docs/transfer-spec.md).
PAPER_TRANSFER_RAFDB = 90.91
#: Version of the layout of ablation.json (:func:`load_ablation` checks it).
SCHEMA = 2
#: The checkpoint whose occlusion test is recorded: the final weights, as ``final_accuracy``.
OCCLUSION_CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class AblationRow:
    name: str
    variant: str
    description: str
    msad_mode: str | None = None
    map_regulariser: str | None = None


ROWS: dict[str, AblationRow] = {r.name: r for r in (
    AblationRow("ir50", "ir50", "CNN baseline: the stem, global average pooling, a linear head"),
    AblationRow("vit_fer", "vit_fer", "(i) stem + projection + transformer, no LANets"),
    AblationRow("local", "local", "(ii) + local CNN (2 LANets), no MAD"),
    AblationRow("local_mad", "local_mad", "(iii) + MAD on the attention maps"),
    AblationRow("transfer", "transfer", "(iv) + MSAD, head mode (the paper) = TransFER",
                msad_mode="head"),
    AblationRow("transfer_token", "transfer", "TransFER, MSAD token mode (the authors' code)",
                msad_mode="token"),
    AblationRow("local_dropout", "local_mad", "local CNN, Dropout instead of MAD",
                map_regulariser="dropout"),
    AblationRow("local_dropblock", "local_mad", "local CNN, DropBlock instead of MAD",
                map_regulariser="dropblock"),
    AblationRow("local_spatial", "local_mad", "local CNN, Spatial Dropout instead of MAD",
                map_regulariser="spatial"),
)}
#: The rows of the paper's Table 1, in order.
PAPER_ROWS: tuple[str, ...] = ("vit_fer", "local", "local_mad", "transfer")
#: Seeds per row when --seeds is not given: 5 for the CNN and the paper's rows, 3 for the others.
DEFAULT_SEEDS: dict[str, int] = {name: 5 if name == "ir50" or name in PAPER_ROWS else 3
                                 for name in ROWS}


@dataclass(frozen=True)
class Comparison:
    """A paired comparison: the difference ``to`` minus ``before``, seed by seed."""

    before: str
    to: str
    what: str


#: The ablations chapter 7 runs live at a GPU profile (at cpu and smoke it shows the committed
#: ones): ``seeds`` a row, the ``rows``, and TrainConfig overrides. At `gpu` (a Colab T4) the CNN
#: and the paper's four rows, 3 seeds of 6 epochs: benchmarks/book_gpu_estimate.py puts the whole
#: book at 15-26 minutes on a T4 at 35-15 % utilisation with this plan, and at 22-43 minutes with
#: every row at 2 seeds of 10 epochs (two seeds give an interval 12.7 standard errors wide).
BOOK_ABLATIONS: dict[str, dict] = {
    "paper": dict(seeds=3, rows=tuple(ROWS)),  # the authors' recipe, 40 epochs a run
    "gpu": dict(seeds=3, rows=("ir50", *PAPER_ROWS), epochs=6),
}

#: The paired comparisons tabulated: each consecutive pair of the paper's rows, the CNN against
#: TransFER, and MAD against each other regulariser (positive: the ``to`` row is better).
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("vit_fer", "local", "(i) -> (ii): + LANets"),
    Comparison("local", "local_mad", "(ii) -> (iii): + MAD"),
    Comparison("local_mad", "transfer", "(iii) -> (iv): + MSAD"),
    Comparison("ir50", "transfer", "CNN baseline -> TransFER"),
    Comparison("local_dropout", "local_mad", "Dropout -> MAD"),
    Comparison("local_dropblock", "local_mad", "DropBlock -> MAD"),
    Comparison("local_spatial", "local_mad", "Spatial Dropout -> MAD"),
)
#: Metrics shown in the paired table of ablation.md (ablation.json has every per-run metric).
SHOWN_METRICS: tuple[str, ...] = ("accuracy", "mean_class_accuracy", "occluded_accuracy",
                                  "drop_mean")
METRIC_NAMES: dict[str, str] = {
    "accuracy": "accuracy", "mean_class_accuracy": "mean class accuracy",
    "occluded_accuracy": "accuracy, a part hidden (mean over parts)",
    "drop_mean": "drop when a part is hidden (mean over parts)",
}


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def _t_central_mass(t: float, df: int) -> float:
    """P(-t < T < t) for Student's t with ``df`` (integer) degrees of freedom, t >= 0.

    The closed form for integer df (Abramowitz & Stegun 26.7.3 and 26.7.4), with
    theta = atan(t / sqrt(df)): a finite sum of powers of cos(theta).
    """
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        term = total = 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)  # c + 2/3 c^3 + 2*4/(3*5) c^5 + ... up to c^(df-2)
    for k in range(1, (df - 3) // 2 + 1):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (0.5 < q < 1) of Student's t with ``df`` degrees of freedom, e.g.
    ``t_quantile(0.975, 4) = 2.776...``. Exact to ~1e-12: the closed-form distribution for
    integer df, inverted by bisection (no scipy needed)."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"q={q} must lie in (0.5, 1)")
    if int(df) != df or df < 1:
        raise ValueError(f"df={df} must be a positive integer")
    df = int(df)
    target = 2 * q - 1
    lo, hi = 0.0, 1.0
    while _t_central_mass(hi, df) < target:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central_mass(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """The differences ``a[i] - b[i]`` (pairs from the same seed) summarised with a Student-t
    interval: ``{"n", "mean", "sd", "low", "high"}``.

    mean ± t_{(1+confidence)/2, n-1} * sd / sqrt(n), with sd the sample standard deviation
    (n - 1). With fewer than 2 pairs, ``sd``, ``low`` and ``high`` are None (no interval).
    """
    if len(a) != len(b):
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "low": None, "high": None}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "low": None, "high": None}
    sd = statistics.stdev(diffs)
    half = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def verdict(diff: dict) -> str:
    """Plain words for a :func:`paired_difference`: where its interval lies relative to 0."""
    if diff.get("low") is None:
        return "no interval (fewer than 2 seeds)"
    if diff["low"] > 0:
        return "interval above 0"
    if diff["high"] < 0:
        return "interval below 0"
    return "interval includes 0"


def prediction_interval(values: Sequence[float], confidence: float = 0.99,
                        bounds: tuple[float, float] | None = (0.0, 100.0)) -> tuple[float, float]:
    """Where one more draw of the same distribution lands with probability ``confidence``,
    from the draws ``values`` (normal, unknown variance): mean ± t · sd · sqrt(1 + 1/n), clipped
    to ``bounds``. With 5 seeds and 99 % the half-width is 5.04 sd."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a prediction interval needs at least 2 values, got {n}")
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t_quantile((1 + confidence) / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def check_rerun(live: float, committed: dict[int, float], seed: int, provenance: dict | None,
                confidence: float = 0.99, exact_tolerance: float = 1e-6,
                bounds: tuple[float, float] | None = (0.0, 100.0),
                committed_provenance: dict | None = None) -> dict:
    """Check a live rerun of ``seed`` against the committed runs ``{seed: value}``, as its
    kernels allow: with the pinned kernels on x86 (:func:`transfer_lib.utils.kernels.reproduces_committed`)
    it must equal the committed value (to ``exact_tolerance``); otherwise it is another draw and
    must land inside the committed seeds' ``confidence`` prediction interval
    (:func:`prediction_interval`). Returns ``{"mode", "ok", "low", "high", "why", "message"}``."""
    from transfer_lib.utils.kernels import reproduces_committed

    exact, why = (reproduces_committed(provenance, committed_provenance) if provenance
                  else (False, "this run records no provenance, so it is taken as another draw"))
    if exact:
        then = committed[seed]
        ok = abs(live - then) <= exact_tolerance
        return {"mode": "exact", "ok": ok, "low": then, "high": then, "why": why,
                "message": f"live {live:.4f}, committed seed {seed} {then:.4f}: "
                           + ("the same" if ok else f"differs by {live - then:+.4f}")}
    low, high = prediction_interval(list(committed.values()), confidence, bounds)
    ok = low <= live <= high
    return {"mode": "distribution", "ok": ok, "low": low, "high": high, "why": why,
            "message": f"live {live:.4f}; the {len(committed)} committed seeds' "
                       f"{round(100 * confidence)} % prediction interval [{low:.4f}, {high:.4f}]: "
                       + ("inside" if ok else "outside")}


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


# ---------------------------------------------------------------------------------------------
# Rows and seeds
# ---------------------------------------------------------------------------------------------
def parse_rows(text: str | Sequence[str]) -> list[str]:
    from transfer_lib.utils.errors import TransferError

    names = [r.strip() for r in (text.split(",") if isinstance(text, str) else text) if r.strip()]
    bad = [r for r in names if r not in ROWS]
    if bad or not names:
        raise TransferError(f"--rows: unknown row(s) {', '.join(bad) or '(none given)'}; "
                            f"allowed: {', '.join(ROWS)}")
    return names


def parse_seeds(spec: int | str | None) -> tuple[int | None, dict[str, int]]:
    """``--seeds``: N, or ROW=N items with at most one bare N (for the rows not named), as
    ``(N or None, {row: N})``. ``"3,local=5"`` gives ``(3, {"local": 5})``."""
    from transfer_lib.utils.errors import TransferError

    if spec is None or isinstance(spec, int):
        every, per_row = spec, {}
    else:
        every, per_row = None, {}
        for item in (i.strip() for i in str(spec).split(",")):
            name, eq, count = item.rpartition("=")
            if not count.strip().lstrip("-").isdigit() or (eq and not name.strip()) or \
                    (not eq and every is not None) or name.strip() in per_row:
                raise TransferError(
                    f"--seeds {spec}: expected N, or ROW=N items with at most one bare N for the "
                    "rows not named (e.g. --seeds 3,local=5,transfer=5)")
            if eq:
                per_row[name.strip()] = int(count)
            else:
                every = int(count)
        unknown = [r for r in per_row if r not in ROWS]
        if unknown:
            raise TransferError(f"--seeds {spec}: unknown row(s) {', '.join(unknown)}; allowed: "
                                f"{', '.join(ROWS)}")
    for name, n in ((None, every), *per_row.items()):
        if n is not None and n < 1:
            raise TransferError(f"--seeds {spec}: {name + ' ' if name else ''}must have at least "
                                "1 seed")
    return every, per_row


def seed_plan(rows: Sequence[str] | None = None,
              seeds: int | str | None = None) -> dict[str, list[int]]:
    """The seeds each row runs, 0..N-1: N = ``seeds`` for every row; when ``seeds`` is None,
    N = :data:`DEFAULT_SEEDS` of the row (5 for ir50 and the paper's rows, 3 otherwise); or a
    ``--seeds`` text with counts per row (:func:`parse_seeds`), e.g. ``"3,local=5"``."""
    from transfer_lib.utils.errors import TransferError

    names = parse_rows(rows if rows is not None else list(ROWS))
    every, per_row = parse_seeds(seeds)
    if set(per_row) - set(names):
        raise TransferError(f"--seeds {seeds}: names row(s) "
                            f"{', '.join(r for r in per_row if r not in names)} that --rows "
                            f"does not run ({', '.join(names)})")
    return {name: list(range(per_row.get(name, every if every is not None
                                         else DEFAULT_SEEDS[name])))
            for name in names}


# ---------------------------------------------------------------------------------------------
# One run: train (or load), then its occlusion test
# ---------------------------------------------------------------------------------------------
def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_occlusion(run_dir: str | os.PathLike, data_root: str | os.PathLike | None = None,
                  dataset: str = "rafdb", device: str | None = None,
                  progress: bool = False) -> dict:
    """The occlusion test of the final weights of ``run_dir`` (``last.pt``), from
    ``run_dir/occlusion.json`` when it was made from the same checkpoint file and data root,
    else computed (:func:`~transfer_lib.evaluate.occlusion.evaluate_occlusion`) and written there.

    ``data_root`` defaults to the one the run trained on (its ``config.json``). Returns the
    evaluate_occlusion dict plus ``checkpoint``, ``checkpoint_sha1`` and ``epoch``.
    """
    from transfer_lib.evaluate.occlusion import evaluate_occlusion, synthetic_marker
    from transfer_lib.train.distributed import pick_device
    from transfer_lib.utils.atomic import atomic_write_text, remove_stale_temporaries
    from transfer_lib.utils.errors import CheckpointError
    from transfer_lib.weights.checkpoint import model_from_checkpoint

    run_dir = Path(run_dir)
    ckpt = run_dir / OCCLUSION_CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt} not found: the occlusion test needs the run's final "
                              f"weights; train the run first (or resume it)")
    if data_root is None:
        try:
            data_root = json.loads((run_dir / "config.json").read_text())["data_root"]
        except (OSError, ValueError, KeyError):
            raise CheckpointError(f"{run_dir}/config.json does not name the run's data root; "
                                  f"pass data_root") from None
    cache = run_dir / "occlusion.json"
    sha1 = _sha1(ckpt)
    try:
        saved = json.loads(cache.read_text())
        same = (saved.get("checkpoint_sha1"), saved.get("data"), saved.get("dataset"),
                saved.get("synthetic")) == (sha1, str(data_root), dataset,
                                            synthetic_marker(data_root))
        if same:  # the same weights on the same faces
            return saved
    except (OSError, ValueError):
        pass
    # what a killed test left: .occlusion.json.PID.XXXXXXXX.tmp, an earlier .occlusion.PID.json
    remove_stale_temporaries(run_dir, [cache.name],
                             legacy=[r"^\.occlusion\.(?P<pid>[1-9][0-9]*)\.json$"])
    device = pick_device(device)
    model = model_from_checkpoint(ckpt, map_location=device)
    import torch

    epoch = torch.load(ckpt, map_location="cpu", weights_only=True).get("epoch")
    result = evaluate_occlusion(model, data_root, dataset, device=device, progress=progress)
    result.update(checkpoint=OCCLUSION_CHECKPOINT, checkpoint_sha1=sha1, epoch=epoch)
    atomic_write_text(cache, json.dumps(result, indent=1))
    return result


def run_metrics(summary: dict, occlusion: dict | None) -> dict[str, float]:
    """The figures of one run, in %: ``accuracy`` and ``mean_class_accuracy`` (the run's final
    evaluation, ``summary.json``) and, with an occlusion test, ``occluded_none`` (its fp32
    re-evaluation, nothing hidden), ``occluded_<part>`` (accuracy with the part hidden),
    ``drop_<part>`` (none minus part), ``occluded_accuracy`` and ``drop_mean`` (means over
    the parts)."""
    m = {"accuracy": 100 * summary["final_accuracy"],
         "mean_class_accuracy": 100 * summary["mean_class_accuracy"]}
    if occlusion is not None:
        table = occlusion["occlusion"]
        none = 100 * table["none"]["accuracy"]
        parts = [c for c in table if c != "none"]
        m["occluded_none"] = none
        for p in parts:
            m[f"occluded_{p}"] = 100 * table[p]["accuracy"]
            m[f"drop_{p}"] = none - m[f"occluded_{p}"]
        if parts:
            m["occluded_accuracy"] = statistics.fmean(m[f"occluded_{p}"] for p in parts)
            m["drop_mean"] = statistics.fmean(m[f"drop_{p}"] for p in parts)
    return m


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_config(result_or_profile, row: str, seed: int, data: str | None = None,
               dataset: str = "rafdb", progress: bool = False, **train_overrides):
    """The TrainConfig of ``row`` at ``seed``: for a profile name with the given data and
    overrides, or for an ablation result (its profile, data and overrides)."""
    from transfer_lib.train import TrainConfig

    if isinstance(result_or_profile, dict):
        res = result_or_profile
        profile, data, dataset = res["profile"], res["data_arg"], res["dataset"]
        train_overrides = {**res["provenance"]["train_overrides"], **train_overrides}
    else:
        profile = result_or_profile
    profile = train_overrides.pop("profile", profile)  # e.g. a smoke-scale rerun of a cpu run
    r = ROWS[parse_rows([row])[0]]
    if r.variant == "ir50":  # the CNN has no transformer for ViT-Small's weights
        train_overrides = {k: v for k, v in train_overrides.items() if k != "vit"}
    return TrainConfig(profile=profile, variant=r.variant, msad_mode=r.msad_mode,
                       map_regulariser=r.map_regulariser, seed=seed, data=data, dataset=dataset,
                       progress=progress, **train_overrides)


def run_one(run_dir: str | os.PathLike, cfg, occlusion: bool = True,
            progress: bool = False) -> dict:
    """Train (or load, or resume) the run ``cfg`` in ``run_dir``, then its occlusion test.

    Returns the run's record: ``seed``, ``run_dir``, ``metrics`` (:func:`run_metrics`),
    ``per_class_accuracy``, ``best_accuracy``, ``epochs``, ``wall_seconds`` (training, from
    summary.json), ``trained`` (True when this call trained it), ``loadavg_before`` /
    ``loadavg_after`` (of the call that trained it, from run_dir/provenance.json, when known),
    ``occlusion_checkpoint`` and ``occlusion_method``.
    """
    from transfer_lib.train import run_or_load

    run_dir = Path(run_dir)
    try:  # complete runs are loaded by run_or_load, not trained
        saved = json.loads((run_dir / "summary.json").read_text())
        trained = not (isinstance(saved, dict) and saved.get("complete"))
    except (OSError, ValueError):
        trained = True
    before, started = _loadavg(), _now()
    summary = run_or_load(run_dir, cfg)
    if trained:
        (run_dir / "provenance.json").write_text(json.dumps(
            {"loadavg_before": before, "loadavg_after": _loadavg(), "started": started,
             "finished": _now(), "wall_seconds": summary.get("wall_seconds")}, indent=1))
    try:
        prov = json.loads((run_dir / "provenance.json").read_text())
    except (OSError, ValueError):
        prov = {}
    occ = None
    if occlusion:
        occ = run_occlusion(run_dir, dataset=cfg.dataset, device=cfg.device, progress=progress)
    return {
        "seed": cfg.seed, "run_dir": str(run_dir), "metrics": run_metrics(summary, occ),
        "per_class_accuracy": summary.get("per_class_accuracy"),
        "best_accuracy": 100 * summary["best_accuracy"], "epochs": summary.get("epochs"),
        "wall_seconds": summary.get("wall_seconds"), "device": summary.get("device"),
        "trained": trained, "loadavg_before": prov.get("loadavg_before"),
        "loadavg_after": prov.get("loadavg_after"),
        "occlusion_checkpoint": occ["checkpoint"] if occ else None,
        "occlusion_method": occ["method"] if occ else None,
        "occlusion_seconds": occ.get("seconds") if occ else None,
        "provenance": summary.get("provenance"),  # the kernels it ran with (None: older runs)
    }


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------
def _project_root() -> Path:
    from transfer_lib.train.profiles import project_root

    return project_root()


def git_state() -> dict | None:
    """``{"commit", "dirty"}`` of the checkout holding this package (dirty: tracked files
    changed), or None outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=_project_root(), capture_output=True,
                                  text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine() -> dict:
    """The CPU model, core count, torch's thread count, the platform, any CUDA device and the
    kernels' provenance (:func:`transfer_lib.utils.kernels.provenance`)."""
    import torch

    from transfer_lib.utils.kernels import provenance

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "provenance": provenance(),
    }


def ablate_command(profile: str, seeds: int | str | None, rows: Sequence[str],
                   out: str | Path | None, results: str | Path | None, data: str | None, dataset: str, occlusion: bool,
                   train_overrides: dict) -> str:
    """The ``python -m transfer_lib ablate ...`` command that runs this ablation again.
    Overrides the command line has no flag for are listed after a ``#``."""
    cmd = ["python", "-m", "transfer_lib", "ablate", "--profile", profile]
    if seeds is not None:
        cmd += ["--seeds", str(seeds)]
    if list(rows) != list(ROWS):
        cmd += ["--rows", ",".join(rows)]
    for flag, value in (("--out", out), ("--results", results), ("--data", data)):
        if value is not None:
            cmd += [flag, str(value)]
    if dataset != "rafdb":
        cmd += ["--dataset", dataset]
    rest = dict(train_overrides)
    for key, flag in (("epochs", "--epochs"), ("warmup_epochs", "--warmup-epochs"),
                      ("eval_every", "--eval-every"), ("max_steps", "--max-steps"),
                      ("device", "--device"), ("ir50", "--ir50"), ("vit", "--vit")):
        if rest.get(key) is not None:
            cmd += [flag, str(rest.pop(key))]
    if rest.pop("from_scratch", False):
        cmd.append("--from-scratch")
    if not occlusion:
        cmd.append("--no-occlusion")
    text = shlex.join(cmd)
    return text + (f"  # and TrainConfig overrides {rest}" if rest else "")


# ---------------------------------------------------------------------------------------------
# The ablation
# ---------------------------------------------------------------------------------------------
def _row_stats(runs: list[dict]) -> dict[str, dict]:
    names = [k for k in runs[0]["metrics"] if all(k in r["metrics"] for r in runs)]
    stats = {}
    for k in names:
        values = [r["metrics"][k] for r in runs]
        mean, std = _mean_std(values)
        stats[k] = {"values": values, "mean": mean, "std": std, "n": len(values)}
    return stats


def compare(rows: dict[str, dict], comparisons: Sequence[Comparison] = COMPARISONS,
            confidence: float = 0.95) -> list[dict]:
    """The paired differences (``to`` minus ``before``) of every metric both rows have, over
    the seeds both rows ran; ``rows`` maps a row name to its entry in ablation.json's ``rows``.
    Comparisons with a row that did not run are left out."""
    out = []
    for c in comparisons:
        if c.before not in rows or c.to not in rows:
            continue
        by_seed = [{r["seed"]: r["metrics"] for r in rows[name]["runs"]} for name in (c.before, c.to)]
        seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
        if not seeds:
            continue
        metrics = [k for k in by_seed[1][seeds[0]]
                   if all(k in by_seed[i][s] for i in (0, 1) for s in seeds)]
        diffs = {}
        for k in metrics:
            d = paired_difference([by_seed[1][s][k] for s in seeds],
                                  [by_seed[0][s][k] for s in seeds], confidence)
            d["verdict"] = verdict(d)
            diffs[k] = d
        out.append({"before": c.before, "to": c.to, "what": c.what, "seeds": seeds,
                    "confidence": confidence, "differences": diffs})
    return out


def ablate(profile: str = "cpu", seeds: int | str | None = None, rows: Sequence[str] | str | None = None,
           out: str | Path | None = None, data: str | None = None, dataset: str = "rafdb",
           progress: bool = True, *, results: str | Path | None = None, occlusion: bool = True,
           command: str | None = None, **train_overrides) -> dict:
    """Run (or load) every row x seed, test each under occlusion, and return the ablation dict;
    writes OUT/ablation.json and OUT/ablation.md, and ``results``.json / .md when given.

    ``seeds``: None for the default plan (:func:`seed_plan`), N for seeds 0..N-1 in every
    row, or a ``--seeds`` text with counts per row (``"3,local=5"``). ``train_overrides`` are TrainConfig fields applied to every run (e.g. epochs,
    max_steps, device). ``command``: the command line to record (default: the equivalent
    ``python -m transfer_lib ablate ...``). See :func:`load_ablation` for the layout.
    """
    t0 = time.perf_counter()
    plan = seed_plan(rows if rows is not None else list(ROWS), seeds)
    names = list(plan)
    out_given = out
    out = Path(out or f"runs/ablate-{profile}")
    prov = {
        "command": command or ablate_command(profile, seeds, names, out_given, results, data,
                                             dataset, occlusion, train_overrides),
        "argv": _cli_argv(),
        "git": git_state(), "python": platform.python_version(), "torch": _torch_version(),
        "machine": machine(), "started": _now(), "loadavg_start": _loadavg(),
        "train_overrides": dict(train_overrides),
    }
    real_rafdb = data is not None and dataset == "rafdb"
    table: dict[str, dict] = {}
    for name in names:
        row = ROWS[name]
        runs = []
        for seed in plan[name]:
            run_dir = out / name / f"seed{seed}"
            if progress:
                print(f"[ablate] {name} seed {seed} -> {run_dir}", flush=True)
            cfg = run_config(profile, name, seed, data, dataset, progress, **train_overrides)
            runs.append(run_one(run_dir, cfg, occlusion=occlusion, progress=progress))
        stats = _row_stats(runs)
        entry = {
            "row": name, "description": row.description, "variant": row.variant,
            "msad_mode": row.msad_mode, "map_regulariser": row.map_regulariser,
            "seeds": plan[name], "runs": runs, "stats": stats,
            "paper_accuracy": PAPER_TRANSFER_RAFDB if (real_rafdb and name == "transfer") else None,
        }
        for k in ("accuracy", "mean_class_accuracy", "occluded_accuracy"):  # flat, for tables
            if k in stats:
                entry.update({k: stats[k]["values"], f"{k}_mean": stats[k]["mean"],
                              f"{k}_std": stats[k]["std"]})
        table[name] = entry
    prov.update(finished=_now(), loadavg_end=_loadavg(), wall_seconds=time.perf_counter() - t0,
                runs=[{"row": n, "seed": r["seed"], "wall_seconds": r["wall_seconds"],
                       "trained_by_this_command": r["trained"], "loadavg_before": r["loadavg_before"],
                       "loadavg_after": r["loadavg_after"], "device": r["device"],
                       "occlusion_seconds": r["occlusion_seconds"]}
                      for n in names for r in table[n]["runs"]])
    prov["runs_wall_seconds"] = sum(r["wall_seconds"] or 0.0 for r in prov["runs"])
    from transfer_lib.evaluate.occlusion import PARTS

    result = {
        "schema": SCHEMA, "profile": profile, "dataset": dataset,
        "data": data or "synthetic (transfer_lib.data.synth)", "data_arg": data,
        "units": "percent", "seed_plan": plan, "occlusion": occlusion,
        "occlusion_checkpoint": OCCLUSION_CHECKPOINT if occlusion else None,
        "parts": list(PARTS) if occlusion else [],
        "rows": list(table.values()), "comparisons": compare(table),
        "out": str(out), "provenance": prov,
    }
    write_results(result, out / "ablation")
    if results is not None:
        write_results(result, results)
    return result


def _cli_argv() -> list[str] | None:
    """This process's arguments when it is ``python -m transfer_lib ablate ...`` (or the
    ``transfer`` script), else None (a library call: the book, tests)."""
    prog = Path(sys.argv[0])
    ours = (prog.name == "__main__.py" and prog.parent.name == "transfer_lib") or \
        prog.name == "transfer"
    return sys.argv[1:] if ours and sys.argv[1:2] == ["ablate"] else None


def _torch_version() -> str:
    import torch

    return torch.__version__


def _prefix(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".md") else path


def write_results(result: dict, prefix: str | Path) -> tuple[Path, Path]:
    """Write ``prefix``.json and ``prefix``.md (``prefix`` may end in .json or .md)."""
    prefix = _prefix(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(markdown_table(result))
    return paths


def load_ablation(path: str | Path) -> dict:
    """An ablation written by :func:`ablate` (``path``: the .json, or its prefix, e.g.
    ``book/results/ablation-cpu``).

    Layout (figures in %): ``profile``, ``dataset``, ``data``, ``seed_plan`` {row: [seeds]},
    ``parts``, ``rows`` (one per row: ``row``, ``description``, ``seeds``, ``runs`` (per seed:
    ``seed``, ``run_dir``, ``metrics`` {accuracy, mean_class_accuracy, occluded_<part>,
    drop_<part>, occluded_accuracy, drop_mean, occluded_none}, ``wall_seconds``, ...),
    ``stats`` {metric: {values, mean, std, n}}, and ``accuracy`` / ``accuracy_mean`` /
    ``accuracy_std`` (likewise mean_class_accuracy, occluded_accuracy)), ``comparisons`` (per
    pair: ``before``, ``to``, ``what``, ``seeds``, ``differences`` {metric: {n, mean, sd, low,
    high, verdict}}) and ``provenance``.
    """
    return read_results(path, SCHEMA, "ablation",
                        f"python -m transfer_lib ablate --results {_prefix(path)}")


def read_results(path: str | Path, schema: int, what: str, command: str) -> dict:
    """The results file ``path`` (or its prefix) + ``.json`` of a command of this library
    (``what``: "ablation", "attention"), checked to hold layout version ``schema``; a missing,
    damaged or outdated file is a DataError that names ``command``, which writes it."""
    from transfer_lib.utils.errors import DataError

    p = _prefix(path)
    p = p.with_name(p.name + ".json")
    try:
        result = json.loads(p.read_text())
    except OSError:
        raise DataError(f"{what} results not found: {p}. Write them with `{command}`") from None
    except ValueError as err:
        raise DataError(f"{p} is not valid JSON ({err})") from None
    if not isinstance(result, dict) or result.get("schema") != schema:
        found = result.get("schema") if isinstance(result, dict) else type(result).__name__
        raise DataError(f"{p} has layout version {found}, this library reads {schema}: "
                        f"run the {what} command in its provenance again")
    return result


def describe_seed_plan(plan: dict[str, list[int]]) -> str:
    """A seed plan in words, rows grouped by their seeds in the plan's order:
    ``"seeds 0-4 for ir50 and local; 0-2 for local_dropout"``."""
    from transfer_lib.book.viz import word_list

    groups: dict[tuple[int, ...], list[str]] = {}
    for row, seeds in plan.items():
        groups.setdefault(tuple(seeds), []).append(row)

    def span(seeds: tuple[int, ...]) -> str:
        if len(seeds) > 2 and seeds == tuple(range(seeds[0], seeds[-1] + 1)):
            return f"{seeds[0]}-{seeds[-1]}"
        return word_list(map(str, seeds))

    return "seeds " + "; ".join(f"{span(seeds)} for {word_list(rows)}"
                                for seeds, rows in groups.items())


def describe_provenance(result: dict, source: str) -> str:
    """A few lines saying where the ablation ``result`` comes from (``source``: e.g. "committed,
    book/results/ablation-cpu.json"): profile, data, train overrides, the command, git commit,
    torch, machine, load average, and how long its runs took, for a chapter to print."""
    prov = result.get("provenance") or {}
    over = prov.get("train_overrides") or {}
    mach = prov.get("machine") or {}
    commit = ((prov.get("git") or {}).get("commit") or "unknown")[:12]
    lines = [f"ablation {source}",
             f"  profile {result['profile']}, data {result['data']}, overrides {over or 'none'}",
             f"  command: {prov.get('command', 'unknown')}",
             f"  commit {commit}, torch {prov.get('torch', 'unknown')}, "
             f"{mach.get('cpu', 'unknown machine')} ({mach.get('cpu_count', '?')} cores, "
             f"{mach.get('torch_threads', '?')} threads), load average "
             f"{prov.get('loadavg_start')} -> {prov.get('loadavg_end')}"]
    walls = [r["wall_seconds"] for r in prov.get("runs", []) if r.get("wall_seconds") is not None]
    if walls:
        lines.append(f"  {len(walls)} runs, {sum(walls) / 60:.0f} min of training: "
                     f"{min(walls):.0f} to {max(walls):.0f} s a run")
    return "\n".join(lines)


def run_table(result: dict) -> list[dict]:
    """One record per run of the ablation ``result``, in its row order: ``row``, ``seed`` and
    every metric the run recorded (accuracies in %), e.g. for ``pandas.DataFrame(run_table(r))``."""
    return [{"row": r["row"], "seed": run["seed"], **run["metrics"]}
            for r in result["rows"] for run in r["runs"]]


def seed_values(result: dict, row: str, metric: str = "accuracy") -> dict[int, float]:
    """``{seed: value}`` of ``metric`` for every run of ``row`` in the ablation ``result``; a
    TransferError names the rows or the metrics recorded when ``row`` or ``metric`` is absent."""
    from transfer_lib.utils.errors import TransferError

    entry = next((r for r in result["rows"] if r["row"] == row), None)
    if entry is None:
        raise TransferError(f"row {row!r} is not in this ablation; rows: "
                            f"{', '.join(r['row'] for r in result['rows'])}")
    values = {}
    for run in entry["runs"]:
        if metric not in run["metrics"]:
            raise TransferError(f"metric {metric!r} not recorded; recorded: "
                                f"{', '.join(run['metrics'])}")
        values[run["seed"]] = run["metrics"][metric]
    return values


def paired_results(pairs: dict, names: tuple[str, str] = ("with", "without"),
                   metrics: Sequence[str] = ("accuracy", "mean_class_accuracy")) -> list[dict]:
    """Two ablation results compared run for run: ``pairs`` maps a label (e.g. a budget) to
    ``(result_a, result_b, rows)``; one record per label, row and metric with the seeds both ran,
    each side's mean (keys ``names``), the paired difference a - b, its 95 % interval and
    :func:`verdict`. Appendix 12 compares pretrained with from-scratch runs this way."""
    out = []
    for label, (res_a, res_b, rows) in pairs.items():
        for row in rows:
            for metric in metrics:
                a, b = seed_values(res_a, row, metric), seed_values(res_b, row, metric)
                seeds = sorted(set(a) & set(b))
                d = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
                out.append({"budget": label, "row": row, "metric": metric, "seeds": len(seeds),
                            names[0]: sum(a[s] for s in seeds) / len(seeds),
                            names[1]: sum(b[s] for s in seeds) / len(seeds),
                            "difference": d["mean"],
                            "95 % interval": f"[{d['low']:+.1f}, {d['high']:+.1f}]",
                            "verdict": verdict(d)})
    return out


def find_comparison(result: dict, before: str, to: str) -> dict | None:
    """The paired comparison ``to`` minus ``before`` of the ablation ``result`` (an entry of its
    ``comparisons``), or None when a row of the pair was not run there."""
    return next((c for c in result["comparisons"] if (c["before"], c["to"]) == (before, to)),
                None)


def committed_figure(result: dict | str | Path, row: str, seed: int,
                     metric: str = "accuracy") -> float:
    """The figure (in %) that ``result`` (a dict or a path for :func:`load_ablation`) holds for
    ``row`` at ``seed``, e.g. to check that a rerun (:func:`rerun`) lands within 1 point."""
    from transfer_lib.utils.errors import TransferError

    if not isinstance(result, dict):
        result = load_ablation(result)
    values = seed_values(result, row, metric)
    if seed not in values:
        raise TransferError(f"row {row} has no seed {seed}; seeds: {sorted(values)}")
    return values[seed]


def rerun(result: dict | str | Path, row: str, seed: int, out: str | Path,
          occlusion: bool = False, progress: bool = False, **changes) -> dict:
    """Run ``row`` at ``seed`` again as the ablation ``result`` ran it (profile, data, train
    overrides), in ``out`` (a complete run there is loaded, not retrained). Returns the run's
    record; compare ``record["metrics"]["accuracy"]`` with :func:`committed_figure`.
    ``changes`` are TrainConfig fields to change (e.g. device)."""
    if not isinstance(result, dict):
        result = load_ablation(result)
    cfg = run_config(result, row, seed, progress=progress, **changes)
    return run_one(out, cfg, occlusion=occlusion, progress=progress)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def _pm(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if stat.get("std") is not None \
        else f"{stat['mean']:.2f}"


def markdown_table(result: dict) -> str:
    """The ablation as markdown: the rows (mean ± std over seeds), the paired differences with
    their 95 % intervals and a verdict, and the occlusion table; figures in %."""
    real = result["data"] != "synthetic (transfer_lib.data.synth)" and result["dataset"] == "rafdb"
    rows = result["rows"]
    occl = any("occluded_accuracy" in r.get("stats", {}) for r in rows)
    prov = result.get("provenance", {})
    over = prov.get("train_overrides") or {}
    lines = [
        f"Ablation at profile `{result['profile']}` on {result['data']} ({result['dataset']})"
        + (f", train overrides {', '.join(f'{k}={v}' for k, v in over.items())}" if over else "")
        + "; figures in %, mean ± std over seeds (sample std; none with one seed).",
        "",
        "| row | what | seeds | accuracy | mean class accuracy"
        + (" | accuracy, a part hidden (mean over parts)" if occl else "") + " | paper |",
        "| --- | --- | --- | --- | ---" + (" | ---" if occl else "") + " | --- |",
    ]
    for r in rows:
        s = r.get("stats", {})
        paper = f"{r['paper_accuracy']:.2f}" if r.get("paper_accuracy") is not None else "—"
        lines.append(f"| `{r['row']}` | {r['description']} | {len(r['runs'])} | "
                     f"{_pm(s.get('accuracy'))} | {_pm(s.get('mean_class_accuracy'))}"
                     + (f" | {_pm(s.get('occluded_accuracy'))}" if occl else "")
                     + f" | {paper} |")
    lines += ["", "Paper column: only TransFER's published RAF-DB accuracy (90.91 %)"
              + ("" if real else ", shown only on the real RAF-DB, not on this data set")
              + ". The paper's ablation figures are not reproduced here; its claim is "
              "qualitative: accuracy rises from (i) to (iv), and MAD beats Dropout, DropBlock "
              "and Spatial Dropout."]
    comps = result.get("comparisons") or []
    if comps:
        conf = round(100 * comps[0].get("confidence", 0.95))
        lines += ["", f"Paired differences, later row minus earlier row over the seeds both "
                  f"ran (points), with the {conf} % Student-t interval mean ± t(n-1) · sd / √n:",
                  "", f"| comparison | metric | n | difference | {conf} % interval | verdict |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for c in comps:
            for k in SHOWN_METRICS:
                d = c["differences"].get(k)
                if d is None:
                    continue
                interval = ("—" if d["low"] is None
                            else f"[{d['low']:+.2f}, {d['high']:+.2f}]")
                lines.append(f"| `{c['before']}` → `{c['to']}` ({c['what']}) | "
                             f"{METRIC_NAMES.get(k, k)} | {d['n']} | {d['mean']:+.2f} | "
                             f"{interval} | {d['verdict']} |")
    if occl:
        parts = result.get("parts") or []
        lines += ["", "Occlusion: test accuracy with nothing hidden (final weights, fp32) and "
                  "with one part hidden, mean ± std over seeds:", "",
                  "| row | none | " + " | ".join(parts) + " | mean over parts |",
                  "| --- | --- " + "| --- " * len(parts) + "| --- |"]
        for r in rows:
            s = r.get("stats", {})
            if "occluded_none" not in s:
                continue
            lines.append(f"| `{r['row']}` | {_pm(s['occluded_none'])} | "
                         + " | ".join(_pm(s.get(f"occluded_{p}")) for p in parts)
                         + f" | {_pm(s.get('occluded_accuracy'))} |")
    if prov:
        git = prov.get("git") or {}
        mach = prov.get("machine") or {}
        lines += ["", f"Provenance: `{prov.get('command')}`; commit "
                  f"{(git.get('commit') or 'unknown')[:12]}"
                  + (" (tree with uncommitted changes)" if git.get("dirty") else "")
                  + f"; torch {prov.get('torch')}, python {prov.get('python')}; "
                  f"{mach.get('cpu')}, {mach.get('cpu_count')} cores, "
                  f"{mach.get('torch_threads')} torch threads; load average (1, 5, 15 min) "
                  f"{prov.get('loadavg_start')} at the start, {prov.get('loadavg_end')} at the "
                  f"end; {len(prov.get('runs', []))} runs ("
                  f"{sum(bool(r.get('trained_by_this_command')) for r in prov.get('runs', []))} "
                  f"trained by this command, the others loaded), "
                  f"{prov.get('runs_wall_seconds', 0.0) / 60:.1f} min of training in all."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.data import FORMATS
    from transfer_lib.train.profiles import PROFILE_NAMES

    parser.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                        help="scale of every run (default: $TRANSFER_PROFILE, else cpu/paper)")
    parser.add_argument("--seeds", type=T.Counts(T.positive_int(1000)), default=None,
                        metavar="N|ROW=N,...",
                        help="seeds 0..N-1 for every row, or per row: 3,local=5 (default: 5 "
                             "for ir50 and the paper's rows, 3 for the others)")
    parser.add_argument("--rows", default=",".join(ROWS), metavar="R1,R2",
                        help=f"rows to run (default all): {', '.join(ROWS)}")
    parser.add_argument("--out", metavar="DIR", help="run directories (default runs/ablate-PROFILE)")
    parser.add_argument("--results", metavar="PREFIX",
                        help="also write PREFIX.json and PREFIX.md (e.g. book/results/ablation-cpu)")
    parser.add_argument("--data", metavar="DIR", help="data set root (default: the synthetic set)")
    parser.add_argument("--dataset", choices=FORMATS, default="rafdb")
    parser.add_argument("--epochs", type=T.EPOCHS, metavar="N",
                        help="override the profile's epochs")
    parser.add_argument("--warmup-epochs", type=T.EPOCHS_FLOAT, metavar="E",
                        help="override the profile's warmup (with a shorter --epochs budget)")
    parser.add_argument("--eval-every", type=T.EPOCHS, metavar="K",
                        help="evaluate every K epochs (the last epoch is always evaluated)")
    parser.add_argument("--max-steps", type=T.STEPS, metavar="N",
                        help="at most N batches per epoch")
    parser.add_argument("--device", metavar="DEV")
    parser.add_argument("--ir50", metavar="PATH",
                        help="face.evoLVe IR-50 weights for every row's stem (paper profile)")
    parser.add_argument("--vit", metavar="PATH",
                        help="timm ViT-Small weights for the rows with a transformer (paper profile)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="let the paper profile train without --ir50 / --vit")
    parser.add_argument("--no-occlusion", dest="occlusion", action="store_false",
                        help="skip the occlusion test of every run")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _seeds_arg(text: str) -> int | str:
    """--seeds: an int when it is one number (as before), else the per-row text, which
    :func:`seed_plan` checks (its errors reach the user as every other bad argument's)."""
    return int(text) if text.strip().isdigit() else text.strip()


def run(args: argparse.Namespace) -> int:
    from transfer_lib.train.profiles import active_profile
    from transfer_lib.utils.errors import TransferError

    try:
        profile = args.profile or active_profile().name
    except ValueError as err:
        raise TransferError(str(err)) from None
    overrides = {k: v for k, v in (("epochs", args.epochs), ("warmup_epochs", args.warmup_epochs),
                                   ("eval_every", args.eval_every), ("max_steps", args.max_steps),
                                   ("device", args.device), ("ir50", args.ir50),
                                   ("vit", args.vit)) if v is not None}
    if args.from_scratch:
        overrides["from_scratch"] = True
    result = ablate(profile, args.seeds, parse_rows(args.rows), args.out, args.data, args.dataset,
                    progress=args.progress, results=args.results, occlusion=args.occlusion,
                    **overrides)
    print(markdown_table(result))
    written = [f"{result['out']}/ablation.md and ablation.json"]
    if args.results:
        written.append(f"{_prefix(args.results)}.md and .json")
    print(f"wrote {' and '.join(written)}")
    return 0
