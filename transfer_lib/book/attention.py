"""Where the ablation's models look, and how different their two LANet maps are (chapter 8).

Examples:
  python -m transfer_lib attention --runs runs/ablate-cpu --out book/results/attention-cpu
  python -m transfer_lib attention --runs runs/ablate-smoke --rows local,local_mad --seeds 2

Input: the run directories of an ablation (``transfer_lib.book.ablate``), RUNS/ROW/seedS. Every row
with attention is read (all but the CNN baseline ``ir50``); the final weights (``last.pt``, the
ones the ablation reports) are loaded with ``weights_only=True``; nothing is trained.

For every run, over the whole test split of the run's data set:

* the **overlap** of the two LANet maps A_1 and A_2 of each face: the intersection over union
  of their top positions (the round(kappa N) largest of the N = H W, kappa = 25 % by default,
  :func:`top_overlap`); 1 when both maps pick the same positions, 0 when they pick disjoint
  ones; :func:`chance_overlap` is its expectation for two independent random choices;
* the **correlation** of A_1 and A_2 over the N positions (Pearson, :func:`map_correlation`);
* with more than two branches, the mean over the pairs of branches; rows without LANets
  (``vit_fer``) have neither;
* the accuracy of the weights (a check that the right checkpoint was read).

Each run's figures are means over the test faces; each row gets mean ± std over its seeds,
and the steps that add MAD or MSAD (:data:`COMPARISONS`) a paired difference over the seeds
both rows ran, with a 95 % Student-t interval (:func:`transfer_lib.book.ablate.paired_difference`).

For a handful of test faces (the first of each class in :data:`FIGURE_CLASSES`), the maps
themselves: A_i, the fused map (their maximum) and the attention rollout's cls row
(:func:`rollout_map`), for every run, in OUT.npz (float16, with the faces as uint8 pixels at
the model's input size): kilobytes, enough to draw the chapter's figure without the runs.

Results: OUT.json (layout in :func:`load_attention`), OUT.npz and OUT.md, with a
``provenance`` record (command, git commit, versions, machine, load average, wall seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from transfer_lib.book.ablate import (
    ROWS,
    Comparison,
    _loadavg,
    _mean_std,
    _now,
    _pm,
    _sha1,
    _torch_version,
    compare,
    git_state,
    machine,
    parse_rows,
    read_results,
)
from transfer_lib.utils.errors import CheckpointError, DataError, TransferError

#: Version of the layout of the results file (:func:`load_attention` checks it).
SCHEMA = 1
#: The checkpoint read by default: the final weights, as the ablation's ``final_accuracy``.
CHECKPOINT = "last.pt"
#: Share of the positions that make a map's top region (kappa).
TOP_FRACTION = 0.25
#: Classes whose first test face goes into the maps file (the chapter's figure).
FIGURE_CLASSES: tuple[str, ...] = ("Happiness", "Surprise", "Anger", "Sadness")
#: The measures of the two LANet maps, and their names in words.
MEASURES: dict[str, str] = {
    "overlap": "overlap of the top regions (IoU)",
    "correlation": "correlation of the maps",
}
#: The paired comparisons: the steps that add MAD and MSAD, and MAD against the other map
#: regularisers (positive: the ``to`` row's maps overlap / correlate more).
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("local", "local_mad", "(ii) -> (iii): + MAD"),
    Comparison("local_mad", "transfer", "(iii) -> (iv): + MSAD"),
    Comparison("local", "transfer", "(ii) -> (iv): + MAD and MSAD"),
    Comparison("local_dropout", "local_mad", "Dropout -> MAD"),
    Comparison("local_dropblock", "local_mad", "DropBlock -> MAD"),
    Comparison("local_spatial", "local_mad", "Spatial Dropout -> MAD"),
)


# ---------------------------------------------------------------------------------------------
# The measures
# ---------------------------------------------------------------------------------------------
def top_count(positions: int, fraction: float = TOP_FRACTION) -> int:
    """How many of ``positions`` make the top region: round(fraction * positions), at least 1."""
    if not 0.0 < fraction < 1.0:
        raise TransferError(f"--top {fraction}: the share of positions must lie in (0, 1), "
                            f"e.g. 0.25")
    return max(1, round(fraction * positions))


def top_mask(maps: torch.Tensor, fraction: float = TOP_FRACTION) -> torch.Tensor:
    """(..., H, W) maps -> (..., H * W) bools marking each map's round(fraction H W) largest
    positions. Ties go to the lower position index (a stable sort), so the mask is the same on
    every machine."""
    flat = maps.flatten(-2).float()  # (..., N)
    t = top_count(flat.shape[-1], fraction)
    order = torch.argsort(flat, dim=-1, descending=True, stable=True)[..., :t]
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, order, True)


def top_overlap(a: torch.Tensor, b: torch.Tensor,
                fraction: float = TOP_FRACTION) -> torch.Tensor:
    """The intersection over union of the top regions of maps ``a`` and ``b`` (..., H, W):
    |T_a & T_b| / |T_a | T_b|, shape (...). 1: the same positions; 0: disjoint."""
    ta, tb = top_mask(a, fraction), top_mask(b, fraction)
    inter = (ta & tb).sum(-1).float()
    return inter / (ta | tb).sum(-1).float()


def map_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of maps ``a`` and ``b`` (..., H, W) over their positions, shape
    (...); NaN where either map is constant (no correlation is defined)."""
    a = a.flatten(-2).double()
    b = b.flatten(-2).double()
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    r = (a * b).sum(-1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan"))).float()


def chance_overlap(positions: int, top: int) -> float:
    """The expected :func:`top_overlap` of two top regions of ``top`` positions out of
    ``positions`` drawn independently and uniformly: sum over c of P(c) c / (2 top - c), with
    the intersection size c hypergeometric, P(c) = C(top, c) C(positions - top, top - c) /
    C(positions, top)."""
    if not 1 <= top <= positions:
        raise ValueError(f"top={top} must lie in 1..positions={positions}")
    total = math.comb(positions, top)
    return sum(math.comb(top, c) * math.comb(positions - top, top - c) / total
               * c / (2 * top - c) for c in range(top + 1))


def branch_diversity(lanet_maps: torch.Tensor,
                     fraction: float = TOP_FRACTION) -> dict[str, torch.Tensor]:
    """(n, B, H, W) LANet maps -> ``{"overlap", "correlation"}``, each (n,): the measures of
    each face's maps, the mean over the B (B - 1) / 2 pairs of branches."""
    n, branches = lanet_maps.shape[:2]
    if branches < 2:
        raise ValueError(f"the diversity of maps needs at least 2 branches, got {branches}")
    pairs = [(i, j) for i in range(branches) for j in range(i + 1, branches)]
    overlap = torch.stack([top_overlap(lanet_maps[:, i], lanet_maps[:, j], fraction)
                           for i, j in pairs]).mean(0)
    corr = torch.stack([map_correlation(lanet_maps[:, i], lanet_maps[:, j])
                        for i, j in pairs]).mean(0)
    return {"overlap": overlap, "correlation": corr}


def rollout_map(attentions: Sequence[torch.Tensor], grid: int) -> torch.Tensor:
    """The cls token's row of the attention rollout (:func:`transfer_lib.book.viz.attention_rollout`,
    heads averaged, residual 0.5 A + 0.5 I) without its own column: (n, grid, grid)."""
    from transfer_lib.book.viz import attention_rollout

    return attention_rollout(attentions)[:, 0, 1:].reshape(-1, grid, grid)


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------
def _run_data_root(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "config.json").read_text())["data_root"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(f"{run_dir}/config.json does not name the run's data root; "
                              f"pass --data") from None


def figure_faces(targets: Sequence[int], class_names: Sequence[str],
                 wanted: Sequence[str] = FIGURE_CLASSES) -> list[int]:
    """Indices of the first test face of each class in ``wanted`` (classes without a test face
    are left out; when none is found, the first ``len(wanted)`` faces)."""
    firsts = []
    for name in wanted:
        if name in class_names:
            k = list(class_names).index(name)
            hit = next((i for i, t in enumerate(targets) if t == k), None)
            if hit is not None:
                firsts.append(hit)
    return firsts or list(range(min(len(wanted), len(targets))))


def _test_set(data_root: str, dataset: str, config):
    from transfer_lib.evaluate import load_eval_set

    return load_eval_set(data_root, dataset, config)


def face_pixels(data, indices: Sequence[int], size: int) -> np.ndarray:
    """The faces ``indices`` of ``data`` as the model sees them before normalisation:
    (faces, size, size, 3) uint8 (short side to ``size``, centre crop, as the eval transform)."""
    from torchvision.transforms import v2

    shrink = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    return np.stack([np.asarray(shrink(data.load_image(i)).convert("RGB"), dtype=np.uint8)
                     for i in indices])


def measure_run(run_dir: str | Path, checkpoint: str = CHECKPOINT, data: str | None = None,
                dataset: str = "rafdb", faces: Sequence[int] | None = None,
                fraction: float = TOP_FRACTION, batch_size: int = 128,
                device: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The measures of one run over the test split, and the maps of the faces ``faces``
    (indices into the test split; default :func:`figure_faces`).

    Returns ``(record, maps)``: ``record`` has ``run_dir``, ``checkpoint``, ``checkpoint_sha1``,
    ``epoch``, ``data``, ``num_samples``, ``faces`` and ``metrics`` {``accuracy`` (%),
    ``overlap``, ``correlation`` (means over the faces; only for rows with LANets),
    ``tied_share`` (share of faces where a map ties at the edge of its top region),
    ``undefined_correlation`` (faces with a constant map, left out of the mean)};
    ``maps`` has ``rollout`` (faces, H, W) and, with LANets, ``lanet`` (faces, B, H, W) and
    ``fused`` (faces, H, W), as float32 arrays.
    """
    from transfer_lib.train.distributed import pick_device
    from transfer_lib.weights.checkpoint import load_checkpoint, model_from_checkpoint

    run_dir = Path(run_dir)
    ckpt = run_dir / checkpoint
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt} not found: expected a finished run of the ablation "
                              f"(RUNS/ROW/seedS/{checkpoint}); run `python -m transfer_lib "
                              f"ablate` first")
    device = pick_device(device)
    model = model_from_checkpoint(ckpt, map_location=device)
    config = model.config
    if config.variant == "ir50":
        raise TransferError(f"{run_dir} is the CNN baseline (ir50): it has no attention to "
                            f"measure")
    data_root = data or _run_data_root(run_dir)
    test = _test_set(data_root, dataset, config)
    if faces is None:
        faces = figure_faces(test.targets, test.classes)
    if len(set(faces)) != len(faces) or not all(0 <= i < len(test) for i in faces):
        raise TransferError(f"faces {list(faces)}: expected distinct indices in 0..{len(test) - 1}")
    g, t = config.token_grid, top_count(config.token_grid ** 2, fraction)
    has_pairs = config.use_lanet and config.num_branches >= 2
    sums = {"overlap": 0.0, "correlation": 0.0}
    defined = tied = correct = 0
    maps: dict[str, list] = {"lanet": [], "fused": [], "rollout": []}
    wanted = set(faces)
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False)
    start = 0
    with torch.no_grad():
        for images, labels in loader:
            out = model.forward_with_details(images.to(device))
            correct += int((out.logits.argmax(1).cpu() == labels).sum())
            rollout = rollout_map(out.attentions, g).cpu()  # (n, H, W)
            lanet = out.lanet_maps.float().cpu() if config.use_lanet else None  # (n, B, H, W)
            if has_pairs:
                div = branch_diversity(lanet, fraction)
                sums["overlap"] += float(div["overlap"].sum())
                ok = ~torch.isnan(div["correlation"])
                sums["correlation"] += float(div["correlation"][ok].sum())
                defined += int(ok.sum())
                if t < g * g:  # a tie at the edge makes the top region a matter of order
                    top = lanet.flatten(-2).sort(-1, descending=True).values  # (n, B, N)
                    tied += int((top[..., t - 1] == top[..., t]).any(-1).sum())
            for i in (i for i in range(len(labels)) if start + i in wanted):
                maps["rollout"].append(rollout[i])
                if lanet is not None:
                    maps["lanet"].append(lanet[i])
                    maps["fused"].append(out.fused_map[i, 0].float().cpu())
            start += len(labels)
    n = len(test)
    metrics: dict = {"accuracy": 100 * correct / n}
    if has_pairs:
        metrics["overlap"] = sums["overlap"] / n
        if defined:
            metrics["correlation"] = sums["correlation"] / defined
        metrics["undefined_correlation"] = n - defined
        metrics["tied_share"] = tied / n
    # the maps were gathered in test-set order; put them in the order of ``faces``
    back = np.argsort(sorted(range(len(faces)), key=lambda k: faces[k]))
    arrays = {k: np.stack([v.numpy() for v in vs])[back] for k, vs in maps.items() if vs}
    epoch = load_checkpoint(ckpt).get("epoch")
    record = {
        "run_dir": str(run_dir), "checkpoint": checkpoint, "checkpoint_sha1": _sha1(ckpt),
        "epoch": epoch, "data": str(data_root), "num_samples": n, "faces": list(faces),
        "grid": g, "input_size": config.input_size, "metrics": metrics,
    }
    return record, arrays


# ---------------------------------------------------------------------------------------------
# An ablation's runs
# ---------------------------------------------------------------------------------------------
def find_runs(runs: str | Path, rows: Sequence[str] | None = None,
              seeds: int | None = None) -> dict[str, list[int]]:
    """The rows (in :data:`transfer_lib.book.ablate.ROWS` order, all but ``ir50``) and seeds that
    have a run directory under ``runs`` (RUNS/ROW/seedS); ``seeds``: only seeds 0..N-1."""
    runs = Path(runs)
    if not runs.is_dir():
        raise DataError(f"--runs {runs}: no such folder. Expected the run directories of an "
                        f"ablation (RUNS/ROW/seedS), e.g. runs/ablate-cpu written by `python -m "
                        f"transfer_lib ablate --profile cpu`")
    asked = parse_rows(rows) if rows is not None else [r for r in ROWS if r != "ir50"]
    if "ir50" in asked:
        raise TransferError("--rows: ir50 (the CNN baseline) has no attention maps; leave it "
                            "out")
    if seeds is not None and seeds < 1:
        raise TransferError(f"--seeds {seeds}: must be at least 1")
    found: dict[str, list[int]] = {}
    for name in asked:
        have = sorted(int(p.name[4:]) for p in (runs / name).glob("seed*")
                      if p.name[4:].isdigit() and p.is_dir())
        if seeds is not None:
            have = [s for s in have if s < seeds]
        if have:
            found[name] = have
        elif rows is not None:
            raise DataError(f"--rows {name}: no run directory {runs / name}/seedS")
    if not found:
        raise DataError(f"{runs} holds no run directory ROW/seedS of a row with attention "
                        f"({', '.join(asked)})")
    return found


def attention_command(runs: str | Path, out: str | Path | None, rows: Sequence[str] | None,
                      seeds: int | None, checkpoint: str, data: str | None, dataset: str,
                      fraction: float) -> str:
    """The ``python -m transfer_lib attention ...`` command that measures these runs again."""
    cmd = ["python", "-m", "transfer_lib", "attention", "--runs", str(runs)]
    if out is not None:
        cmd += ["--out", str(out)]
    if rows is not None:
        cmd += ["--rows", ",".join(rows)]
    if seeds is not None:
        cmd += ["--seeds", str(seeds)]
    if checkpoint != CHECKPOINT:
        cmd += ["--checkpoint", checkpoint]
    if data is not None:
        cmd += ["--data", str(data)]
    if dataset != "rafdb":
        cmd += ["--dataset", dataset]
    if fraction != TOP_FRACTION:
        cmd += ["--top", str(fraction)]
    return shlex.join(cmd)


def _row_stats(runs: list[dict]) -> dict[str, dict]:
    stats = {}
    for k in ("accuracy", "overlap", "correlation", "tied_share"):
        values = [r["metrics"][k] for r in runs if k in r["metrics"]]
        if len(values) == len(runs):
            mean, std = _mean_std(values)
            stats[k] = {"values": values, "mean": mean, "std": std, "n": len(values)}
    return stats


def _prefix(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".npz", ".md") else path


def attention_study(runs: str | Path, out: str | Path | None = None,
                    rows: Sequence[str] | str | None = None, seeds: int | None = None,
                    checkpoint: str = CHECKPOINT, data: str | None = None,
                    dataset: str = "rafdb", fraction: float = TOP_FRACTION,
                    device: str | None = None, progress: bool = False,
                    command: str | None = None) -> dict:
    """Measure every run of the ablation in ``runs`` (:func:`measure_run`) and tabulate; writes
    ``out``.json, .npz and .md (default RUNS/attention). Returns the results dict
    (:func:`load_attention`), with ``maps_file`` naming the .npz."""
    t0 = time.perf_counter()
    rows = rows.split(",") if isinstance(rows, str) else rows
    top_count(4, fraction)  # refuse a bad fraction before any work
    plan = find_runs(runs, rows, seeds)
    prefix = _prefix(out if out is not None else Path(runs) / "attention")
    prov = {
        "command": command or attention_command(runs, out, rows, seeds, checkpoint, data,
                                                dataset, fraction),
        "argv": sys.argv[1:] if sys.argv[1:2] == ["attention"] else None,
        "git": git_state(), "python": platform.python_version(), "torch": _torch_version(),
        "machine": machine(), "started": _now(), "loadavg_start": _loadavg(),
    }
    faces = None
    table: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = {}
    info: dict = {}
    for name, seeds_found in plan.items():
        records = []
        for seed in seeds_found:
            run_dir = Path(runs) / name / f"seed{seed}"
            if progress:
                print(f"[attention] {name} seed {seed} <- {run_dir}", flush=True)
            record, maps = measure_run(run_dir, checkpoint, data, dataset, faces, fraction,
                                       device=device)
            if faces is None:  # the first run fixes the faces and the data for all
                faces, info = record["faces"], _data_info(record, dataset)
            elif record["data"] != info["data"] or record["num_samples"] != info["num_samples"]:
                raise DataError(f"{run_dir} was trained on {record['data']}, the runs before "
                                f"it on {info['data']}: measure runs of one data set, or pass "
                                f"--data")
            record.update(row=name, seed=seed)
            records.append(record)
            for k, v in maps.items():
                arrays[f"{name}.seed{seed}.{k}"] = v.astype(np.float16)
        table[name] = {"row": name, "description": ROWS[name].description,
                       "has_lanets": "overlap" in records[0]["metrics"],
                       "seeds": seeds_found, "runs": records, "stats": _row_stats(records)}
    arrays["faces"] = info.pop("pixels")
    arrays["labels"] = np.asarray(info["labels"], dtype=np.int64)
    comps = compare(table, COMPARISONS)
    for c in comps:  # only the measures of the maps (and the accuracy, as a check)
        c["differences"] = {k: v for k, v in c["differences"].items()
                            if k in ("overlap", "correlation", "accuracy")}
    g = info["grid"]
    t = top_count(g * g, fraction)
    prov.update(finished=_now(), loadavg_end=_loadavg(),
                wall_seconds=time.perf_counter() - t0)
    result = {
        "schema": SCHEMA, "runs": str(runs), "source_ablation": _source_ablation(runs),
        "checkpoint": checkpoint, "data": info["data"], "dataset": dataset, "split": "test",
        "num_samples": info["num_samples"], "grid": [g, g], "top_fraction": fraction,
        "top_positions": t, "chance_overlap": chance_overlap(g * g, t),
        "class_names": info["class_names"],
        "faces": [{"index": i, "label": k, "class": info["class_names"][k]}
                  for i, k in zip(faces, info["labels"])],
        "rows": list(table.values()), "comparisons": comps,
        "maps_file": prefix.name + ".npz", "maps_dtype": "float16",
        "provenance": prov,
    }
    write_results(result, arrays, prefix)
    return result


def _data_info(record: dict, dataset: str) -> dict:
    """The test set's facts for the results file, and the pixels of the figure's faces."""
    from transfer_lib.data import build_dataset

    test = build_dataset(dataset, record["data"], "test")
    return {"data": record["data"], "num_samples": record["num_samples"],
            "grid": record["grid"], "class_names": list(test.classes),
            "labels": [int(test.targets[i]) for i in record["faces"]],
            "pixels": face_pixels(test, record["faces"], record["input_size"])}


def _source_ablation(runs: str | Path) -> dict | None:
    """The command and commit of the ablation that wrote ``runs`` (its ablation.json)."""
    try:
        prov = json.loads((Path(runs) / "ablation.json").read_text())["provenance"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"command": prov.get("command"), "git": prov.get("git"),
            "torch": prov.get("torch"), "machine": prov.get("machine")}


def write_results(result: dict, arrays: dict[str, np.ndarray],
                  prefix: str | Path) -> tuple[Path, Path, Path]:
    """Write ``prefix``.json, .npz (the maps) and .md."""
    prefix = _prefix(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = tuple(prefix.with_name(prefix.name + s) for s in (".json", ".npz", ".md"))
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    np.savez_compressed(paths[1], **arrays)
    paths[2].write_text(markdown_table(result))
    return paths


def load_attention(path: str | Path) -> dict:
    """Results written by :func:`attention_study` (``path``: the .json or its prefix, e.g.
    ``book/results/attention-cpu``).

    Layout: ``runs`` (the ablation's folder), ``source_ablation``, ``checkpoint``, ``data``,
    ``num_samples``, ``grid`` [H, W], ``top_fraction`` (kappa), ``top_positions``,
    ``chance_overlap``, ``class_names``, ``faces`` (index, label, class of the faces in the
    maps file), ``rows`` (per row: ``row``, ``description``, ``has_lanets``, ``seeds``, ``runs``
    (per seed: ``seed``, ``run_dir``, ``checkpoint_sha1``, ``metrics`` {accuracy, overlap,
    correlation, tied_share, undefined_correlation}), ``stats`` {metric: {values, mean, std,
    n}}), ``comparisons`` (per pair: ``before``, ``to``, ``what``, ``seeds``, ``differences``
    {metric: {n, mean, sd, low, high, verdict}}), ``maps_file`` and ``provenance``.
    """
    return read_results(path, SCHEMA, "attention",
                        f"python -m transfer_lib attention --runs RUNS --out {_prefix(path)}")


def load_maps(path: str | Path) -> dict[str, np.ndarray]:
    """The maps file next to the results ``path`` (:func:`load_attention`): ``faces``
    (faces, S, S, 3) uint8, ``labels`` (faces,), and ``ROW.seedS.lanet`` (faces, B, H, W),
    ``ROW.seedS.fused`` and ``ROW.seedS.rollout`` (faces, H, W), as float32."""
    p = _prefix(path)
    p = p.with_name(p.name + ".npz")
    try:
        with np.load(p) as z:
            return {k: z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]
                    for k in z.files}
    except OSError:
        raise DataError(f"maps file not found: {p}") from None


def committed_measure(result: dict, row: str, seed: int, metric: str = "overlap") -> float:
    """The figure ``result`` holds for ``row`` at ``seed`` (e.g. to check a live rerun)."""
    for r in result["rows"]:
        if r["row"] == row:
            for run in r["runs"]:
                if run["seed"] == seed and metric in run["metrics"]:
                    return run["metrics"][metric]
            raise TransferError(f"row {row} has no {metric!r} at seed {seed}")
    raise TransferError(f"row {row!r} is not in these results; rows: "
                        f"{', '.join(r['row'] for r in result['rows'])}")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def markdown_table(result: dict) -> str:
    """The results as markdown: per row mean ± std over seeds, the paired differences with
    their 95 % intervals, and the provenance."""
    g, t = result["grid"], result["top_positions"]
    lines = [
        f"The two LANet maps of each test face ({result['num_samples']} faces of "
        f"{result['data']}; checkpoint {result['checkpoint']} of each run in "
        f"{result['runs']}): overlap = IoU of their top {t} of {g[0] * g[1]} positions "
        f"(chance {result['chance_overlap']:.3f}), correlation = Pearson over the positions; "
        "mean over the faces, then mean ± std over seeds. Lower = more different maps.",
        "",
        "| row | what | seeds | overlap (IoU) | correlation | accuracy (%) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        s = r["stats"]
        lines.append(f"| `{r['row']}` | {r['description']} | {len(r['runs'])} | "
                     f"{_pm3(s.get('overlap'))} | {_pm3(s.get('correlation'))} | "
                     f"{_pm(s.get('accuracy'))} |")
    comps = result.get("comparisons") or []
    if comps:
        lines += ["", "Paired differences, later row minus earlier row over the seeds both "
                  "ran, with the 95 % Student-t interval (negative: the later row's maps are "
                  "more different):", "",
                  "| comparison | measure | n | difference | 95 % interval | verdict |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for c in comps:
            for k in MEASURES:
                d = c["differences"].get(k)
                if d is None:
                    continue
                interval = "—" if d["low"] is None else f"[{d['low']:+.3f}, {d['high']:+.3f}]"
                lines.append(f"| `{c['before']}` → `{c['to']}` ({c['what']}) | {k} | "
                             f"{d['n']} | {d['mean']:+.3f} | {interval} | {d['verdict']} |")
    prov = result.get("provenance") or {}
    if prov:
        git, mach = prov.get("git") or {}, prov.get("machine") or {}
        lines += ["", f"Provenance: `{prov.get('command')}`; commit "
                  f"{(git.get('commit') or 'unknown')[:12]}"
                  + (" (tree with uncommitted changes)" if git.get("dirty") else "")
                  + f"; torch {prov.get('torch')}; {mach.get('cpu')}, "
                  f"{mach.get('cpu_count')} cores, {mach.get('torch_threads')} torch threads; "
                  f"{prov.get('wall_seconds', 0.0):.0f} s."]
    return "\n".join(lines) + "\n"


def _pm3(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat.get("std") is not None \
        else f"{stat['mean']:.3f}"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T
    from transfer_lib.data import FORMATS

    parser.add_argument("--runs", required=True, metavar="DIR",
                        help="the ablation's run directories (DIR/ROW/seedS), e.g. "
                             "runs/ablate-cpu")
    parser.add_argument("--out", metavar="PREFIX",
                        help="write PREFIX.json, .npz and .md (default DIR/attention)")
    parser.add_argument("--rows", metavar="R1,R2",
                        help="rows to read (default: every row with attention found in DIR)")
    parser.add_argument("--seeds", type=T.positive_int(1000), metavar="N",
                        help="only seeds 0..N-1")
    parser.add_argument("--checkpoint", default=CHECKPOINT, choices=("last.pt", "best.pt"),
                        help="which weights of each run (default last.pt, the final ones)")
    parser.add_argument("--data", metavar="DIR",
                        help="test set root (default: the one each run trained on)")
    parser.add_argument("--dataset", choices=FORMATS, default="rafdb")
    parser.add_argument("--top", type=T.OPEN_FRACTION, default=TOP_FRACTION, metavar="KAPPA",
                        help="share of positions in a map's top region, between 0 and 1 "
                             "(default 0.25)")
    parser.add_argument("--device", metavar="DEV")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_file

    if args.out is not None:
        prefix = _prefix(args.out)
        check_output_file(prefix.with_name(prefix.name + ".json"), "--out")
    rows = parse_rows(args.rows) if args.rows is not None else None
    result = attention_study(args.runs, args.out, rows, args.seeds, args.checkpoint,
                             args.data, args.dataset, args.top, args.device, args.progress)
    print(markdown_table(result))
    prefix = _prefix(args.out if args.out is not None else Path(args.runs) / "attention")
    print(f"wrote {prefix}.json, .npz and .md")
    return 0
