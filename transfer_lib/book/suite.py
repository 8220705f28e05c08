"""The pre-registered suite: task variants with controls, the paper's regime, fair comparators.

The design, the hypotheses and the decision rule are fixed in
``book/results/preregistration.md``, committed before any run of the suite; this module holds
that design as data (:data:`SETS`, :data:`REGIME`, :func:`design`, :data:`HYPOTHESES`,
:data:`CONTROLS`), runs it run by run and analyses what it produced.

    python -m transfer_lib.book.suite --stage pilot      # the pilot (its own seeds, its own file)
    python -m transfer_lib.book.suite --stage tune       # drop rates of MAD and the comparators
    python -m transfer_lib.book.suite --stage main       # the confirmatory runs
    python -m transfer_lib.book.suite --analyse          # book/results/suite.json from the runs

Every finished run is appended to its JSONL file at once (``book/results/suite-<stage>.jsonl``)
and a rerun of the command skips the runs already there, so the suite is made in chunks of any
length. Kernels are pinned (:mod:`transfer_lib.utils.kernels`): every figure repeats on any x86 CPU
with AVX2. ``--runs N`` stops after N runs; ``--only PATTERN`` runs the keys that contain it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import transfer_lib  # noqa: F401  (pins the kernels before torch loads)

PREREGISTRATION = "book/results/preregistration.md"
RESULTS = "book/results/suite.json"
#: The data sets: one draw each (seed DATA_SEED), uniform classes, the trainer's seeds vary.
DATA_SEED = 11
SIZES = dict(train=350, val=350, test=700)
SETS: dict[str, dict] = {
    "additive": dict(task="additive"),  # today's task, occluders on 30 % of the images
    "relational": dict(task="relational"),
    "occlusion-shift": dict(task="occlusion-shift"),
    # the planted positive control: the test's grey box on a random part of 30 % of the train
    # and val images (same faces as occlusion-shift otherwise)
    "occlusion-planted": dict(task="occlusion-shift", part_occlusion=0.3),
}
#: The recipe of every run: the cpu profile, shortened, from the pretrained stem (:func:`ensure_stem`),
#: with the head drawn from a truncated normal and dropping off during the warmup (the stall
#: study).
REGIME: dict = dict(profile="cpu", epochs=20, warmup_epochs=1.0, eval_every=20,
                    regularise_from_epoch=1, model_overrides={"head_init": "normal"})
#: The pretrained stem, the analogue of face.evoLVe's IR-50: the plain CNN (ir50) trained with
#: the cpu recipe on a large additive set that no suite set shares a face with (its own data
#: seed) and that has no occluder (so that the occlusion-shift task stays unseen), its stem
#: written in face.evoLVe's layout and loaded as ``train --ir50`` loads the real file. Like
#: pretraining on a large expression set before fine-tuning on a small one.
STEM_SET = dict(task="additive", occlusion=0.0, train=3000, val=350, test=350, seed=21,
                balance="uniform")
STEM_RUN = dict(profile="cpu", epochs=15, model_overrides={"head_init": "normal"}, seed=0)
SEEDS = tuple(range(8))  # confirmatory seeds of every compared row
PILOT_SEEDS = (900, 901, 902)
TUNE_SEED = 100
DROP_RATES = (0.2, 0.4, 0.6)
REGULARISERS = ("local_mad", "local_dropout", "local_dropblock", "local_spatial")
STALL_MARGIN = 15.7  # a run stalls at <= chance + this (30 % with 7 classes, 40.7 % with 4)


@dataclass(frozen=True)
class RunSpec:
    """One run of the suite."""

    stage: str  # pilot | tune | main
    group: str  # the hypothesis or control it serves (H1, C2, tune, ...)
    set: str  # a key of SETS (or "relational-shuffled")
    row: str  # an ablation row (transfer_lib.book.ablate.ROWS): variant and map regulariser
    seed: int
    control: str | None = None  # None | "positive" | "negative"
    arm: str = ""  # a name for the overrides below ("" for none)
    model_overrides: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        arm = f"+{self.arm}" if self.arm else ""
        return f"{self.set}/{self.row}{arm}/seed{self.seed}"


# ---------------------------------------------------------------------------------------------
# The design
# ---------------------------------------------------------------------------------------------
def _rate_arm(row: str, p: float) -> dict:
    """The overrides of a map regulariser at drop rate ``p``; the comparators keep values
    unscaled, as MAD does (``map_rescale=False``)."""
    over = {"mad_p": p}
    if row != "local_mad":
        over["map_rescale"] = False
    return dict(arm=f"p{p:g}", model_overrides=over)


def chosen_rates(tune_runs: list[dict]) -> dict[str, float] | None:
    """Each regulariser's drop rate with the best final validation mean class accuracy over
    the tuning runs (ties: the smaller rate); None until every tuning run is in."""
    best: dict[str, tuple[float, float]] = {}
    wanted = {(row, p) for row in REGULARISERS for p in DROP_RATES}
    have = {(r["row"], r["model_overrides"]["mad_p"]): r["val_mca"] for r in tune_runs}
    if not wanted <= set(have):
        return None
    for (row, p), val in sorted(have.items()):
        if row not in best or val > best[row][1]:
            best[row] = (p, val)
    return {row: best[row][0] for row in REGULARISERS}


def design(stage: str, tune_runs: list[dict] | None = None) -> list[RunSpec]:
    """The runs of ``stage`` in the order they are made (the main stage needs the tuning runs,
    which fix the comparators' drop rates)."""
    specs: list[RunSpec] = []

    def add(group, set_, row, seeds, control=None, arm=None):
        arm = arm or {}
        for s in seeds:
            specs.append(RunSpec(stage, group, set_, row, s, control, **arm))

    if stage == "pilot":  # the regime's checks and the seed-to-seed spread, on its own seeds
        mad = _rate_arm("local_mad", 0.6)
        add("pilot", "additive", "local_mad", PILOT_SEEDS, arm=mad)
        add("pilot", "additive", "transfer", PILOT_SEEDS)
        add("pilot", "relational", "ir50", PILOT_SEEDS[:2])
        add("pilot", "relational", "vit_fer", PILOT_SEEDS[:2])
        add("pilot", "occlusion-shift", "local", PILOT_SEEDS[:1])
        add("pilot", "occlusion-planted", "local", PILOT_SEEDS[:1])
        return specs
    if stage == "tune":
        for row in REGULARISERS:
            for p in DROP_RATES:
                add("tune", "additive", row, (TUNE_SEED,), arm=_rate_arm(row, p))
        return specs
    if stage != "main":
        raise ValueError(f"stage {stage!r} is not pilot, tune or main")
    mad = _rate_arm("local_mad", 0.6)  # the authors' rate
    # the positive controls first: if one fails, the design is wrong and no claim runs
    # (run_stage stops there). C1: the plain CNN must pass the per-part cap on the relational
    # task (these runs are also H1's). C2, planted: the model trained with the test's occlusion
    # must do better under it than the same model trained without (also H2's)
    add("C1", "relational", "ir50", SEEDS, control="positive")
    add("C2", "occlusion-planted", "local", SEEDS, control="positive")
    add("C2", "occlusion-shift", "local", SEEDS)
    add("C4", "relational-shuffled", "vit_fer", SEEDS[:2], control="negative")
    # H1: relations. The transformer over the stem's local features (vit_fer) against pooling
    # them (ir50), on the relational and the additive task (C3, the negative control, is the
    # additive half: there relations must add nothing that matters)
    add("H1", "relational", "vit_fer", SEEDS)
    add("H1", "additive", "ir50", SEEDS, control="negative")
    add("H1", "additive", "vit_fer", SEEDS, control="negative")
    # H2: occlusion training never showed
    add("H2", "occlusion-shift", "vit_fer", SEEDS)
    add("H2", "occlusion-shift", "local_mad", SEEDS, arm=mad)
    # H3: MSAD where the model overfits (local_mad is TransFER without MSAD)
    add("H3", "additive", "transfer", SEEDS)
    add("H3", "additive", "local_mad", SEEDS, arm=mad)
    # H4: MAD against the comparators, each at the rate the tuning chose
    rates = chosen_rates(tune_runs or [])
    if rates is not None:
        for row in REGULARISERS:
            add("H4", "additive", row, SEEDS, arm=_rate_arm(row, rates[row]))
    seen: set[str] = set()
    unique = []
    for spec in specs:  # a run two hypotheses share is made once
        if spec.key not in seen:
            seen.add(spec.key)
            unique.append(spec)
    return unique


@dataclass(frozen=True)
class Hypothesis:
    """A paired comparison: ``a`` minus ``b`` (RunSpec keys without the seed), over seeds."""

    id: str
    claim: str
    a: str
    b: str
    metric: str  # a run record's field, in %
    smallest_effect: float  # points: the smallest difference that matters


def _h4(rates: dict[str, float] | None) -> list[Hypothesis]:
    if rates is None:
        return []
    mad = f"additive/local_mad+p{rates['local_mad']:g}"
    return [Hypothesis(f"H4{c}", f"MAD beats {name}, both tuned on validation", mad,
                       f"additive/{row}+p{rates[row]:g}", "test_mca", 2.0)
            for c, row, name in (("a", "local_dropout", "Dropout"),
                                 ("b", "local_dropblock", "DropBlock"),
                                 ("c", "local_spatial", "Spatial Dropout"))]


HYPOTHESES: list[Hypothesis] = [
    Hypothesis("H1", "relations help on a task whose classes are relations, more than on an "
               "additive one: the transformer's gain over pooling (vit_fer - ir50) is larger on "
               "the relational task", "relational/vit_fer - additive/vit_fer",
               "relational/ir50 - additive/ir50", "test_mca", 3.0),
    Hypothesis("H2a", "LANets improve accuracy under an occlusion training never showed",
               "occlusion-shift/local", "occlusion-shift/vit_fer", "occluded_mca", 3.0),
    Hypothesis("H2b", "MAD improves accuracy under an occlusion training never showed",
               "occlusion-shift/local_mad+p0.6", "occlusion-shift/local", "occluded_mca", 3.0),
    Hypothesis("H3", "MSAD improves accuracy where the model overfits", "additive/transfer",
               "additive/local_mad+p0.6", "test_mca", 2.0),
]
#: Controls: (id, what it shows, the run prefixes, the check).
CONTROLS: list[dict] = [
    dict(id="C1", role="positive", runs=["relational/ir50"],
         check="the plain CNN passes the per-part cap on the relational task: the lower end of "
               "the 95 % interval of its mean test mean class accuracy lies above 62.5 %"),
    dict(id="C2", role="positive", runs=["occlusion-planted/local", "occlusion-shift/local"],
         check="trained with the test's occlusion, the model does better under it: the paired "
               "95 % interval of the occluded mean class accuracy lies above 0"),
    dict(id="C3", role="negative", runs=["additive/vit_fer", "additive/ir50"],
         check="on the additive task the transformer gains nothing that matters: the upper end "
               "of the paired 95 % interval (vit_fer - ir50) lies below 3 points"),
    dict(id="C4", role="negative", runs=["relational-shuffled/vit_fer"],
         check="with shuffled labels every run ends within 10 points of chance (25 %)"),
    dict(id="C5", role="regime", runs=["additive/local_mad+p0.6"],
         check="the regime overfits: the baseline's mean train - validation gap is at least 10 "
               "points"),
]


# ---------------------------------------------------------------------------------------------
# Data and runs
# ---------------------------------------------------------------------------------------------
def data_root(name: str) -> Path:
    from transfer_lib.train.profiles import project_root

    return project_root() / "data" / "suite" / name


def ensure_set(name: str) -> Path:
    """The data set ``name`` (generated on first use; ``relational-shuffled`` is the relational
    set with its train and val labels permuted, the images shared)."""
    from transfer_lib.data.synth import ensure_synthetic

    if name == "relational-shuffled":
        return shuffled_copy(ensure_set("relational"), data_root(f"{name}-{SIZES['train']}"))
    return ensure_synthetic(data_root(f"{name}-{SIZES['train']}"), seed=DATA_SEED,
                            balance="uniform", **SIZES,
                            **SETS[name])


def shuffled_copy(src: Path, dst: Path, seed: int = 0) -> Path:
    """``dst``: the set at ``src`` with the labels of its train and val images permuted among
    themselves (a seeded shuffle; test labels kept), the images linked. The negative control
    whose answer is known: nothing is learnable, so test accuracy is chance."""
    import shutil

    import numpy as np

    from transfer_lib.utils.atomic import atomic_write_text, link_or_copy

    labels = src / "basic" / "EmoLabel" / "list_patition_label.txt"
    marker = json.loads((src / "synthetic.json").read_text())
    want = {**marker, "labels_shuffled": {"seed": seed, "splits": ["train", "val"]}}
    done = dst / "synthetic.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "basic" / "EmoLabel").mkdir(parents=True)
    images = dst / "basic" / "Image" / "aligned"
    images.mkdir(parents=True)
    for f in (src / "basic" / "Image" / "aligned").iterdir():
        link_or_copy(f, images / f.name)
    lines = labels.read_text().split()
    names, values = lines[0::2], lines[1::2]
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        idx = [i for i, n in enumerate(names) if n.startswith(split + "_")]
        perm = rng.permutation(idx)
        values_new = [values[j] for j in perm]
        for i, v in zip(idx, values_new):
            values[i] = v
    atomic_write_text(dst / "basic" / "EmoLabel" / "list_patition_label.txt",
                      "".join(f"{n} {v}\n" for n, v in zip(names, values)))
    atomic_write_text(done, json.dumps(want, indent=1))
    return dst


def ensure_stem(out_root: str | Path = "runs/suite") -> Path:
    """The pretrained stem's weights file (``data/suite/stem/ir50-tiny-additive.pth``), trained
    on first use (:data:`STEM_SET`, :data:`STEM_RUN`; about 45,000 images seen) and reused; its
    record, with the run's validation and test figures, goes to ``book/results/suite-stem.json``."""
    import torch

    from transfer_lib.book.ablate import git_state, run_config
    from transfer_lib.data.synth import ensure_synthetic
    from transfer_lib.train import run_or_load
    from transfer_lib.train.profiles import project_root
    from transfer_lib.utils.atomic import atomic_write_text
    from transfer_lib.utils.kernels import provenance
    from transfer_lib.weights.checkpoint import save_atomic

    weights = data_root("stem") / "ir50-tiny-additive.pth"
    local = weights.with_suffix(".json")  # this machine's record of the file
    committed = project_root() / "book" / "results" / "suite-stem.json"
    want = dict(set=STEM_SET, run=STEM_RUN)
    if weights.is_file() and local.is_file() and \
            json.loads(local.read_text()).get("recipe") == want:
        return weights
    root = ensure_synthetic(data_root("stem-set"), **STEM_SET)
    run = dict(STEM_RUN)
    out = Path(out_root) / "stem"
    cfg = run_config(run.pop("profile"), "ir50", run.pop("seed"), data=str(root), out=str(out),
                     **run)
    t0 = time.perf_counter()
    summary = run_or_load(out, cfg)
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    stem = {k[len("stem."):]: v for k, v in ckpt["model"].items() if k.startswith("stem.")}
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(stem, weights)
    record = json.dumps(dict(
        recipe=want, weights=str(weights.relative_to(project_root())),
        weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
        test_mca=100 * summary["mean_class_accuracy"], test_accuracy=100 * summary["final_accuracy"],
        train_seconds=summary.get("wall_seconds"), wall_seconds=time.perf_counter() - t0,
        git=git_state(), provenance=summary.get("provenance") or provenance()), indent=1) + "\n"
    atomic_write_text(local, record)
    if not committed.is_file():  # the suite's own record is written once, never replaced
        atomic_write_text(committed, record)
    return weights


def train_config(spec: RunSpec, out: Path, pretrained: Path, **changes):
    """The TrainConfig of ``spec``: the regime (with ``changes`` on top) and the row's switches."""
    from transfer_lib.book.ablate import run_config

    regime = {**REGIME, **changes}
    overrides = {**regime.pop("model_overrides"), **spec.model_overrides}
    profile = regime.pop("profile")
    return run_config(profile, spec.row, spec.seed, data=str(ensure_set(spec.set)),
                      out=str(out), ir50=str(pretrained), model_overrides=overrides, **regime)


def _mca(model, root: Path, split: str) -> float:
    from transfer_lib.data import build_dataset
    from transfer_lib.data.transforms import eval_transform
    from transfer_lib.evaluate import evaluate

    data = build_dataset("rafdb", root, split, eval_transform(model.config))
    return 100 * evaluate(model, data)["mean_class_accuracy"]


def chance(set_name: str) -> float:
    return 25.0 if set_name.startswith("relational") else 100 / 7


def run_spec(spec: RunSpec, out_root: Path, pretrained: Path, **changes) -> dict:
    """Train ``spec`` (or load it, when its run directory holds a complete run) and measure it:
    mean class accuracy of the final weights on train (eval mode, no augmentation), val and
    test, and on the occlusion-shift sets each part hidden in turn. Returns its record.
    ``changes``: TrainConfig fields on top of the regime (:func:`rerun`)."""
    from transfer_lib.book.ablate import git_state, run_occlusion
    from transfer_lib.train import run_or_load
    from transfer_lib.utils.kernels import provenance
    from transfer_lib.weights.checkpoint import model_from_checkpoint

    t0 = time.perf_counter()
    out = out_root / spec.key
    cfg = train_config(spec, out, pretrained, **changes)
    summary = run_or_load(out, cfg)
    model = model_from_checkpoint(out / "last.pt")
    root = Path(cfg.data)
    rec = {**asdict(spec), "key": spec.key, "regime": {**REGIME, **changes}, "sizes": SIZES,
           "task": SETS.get(spec.set, SETS["relational"])["task"],
           "train_mca": _mca(model, root, "train"), "val_mca": _mca(model, root, "val"),
           "test_mca": 100 * summary["mean_class_accuracy"],
           "test_accuracy": 100 * summary["final_accuracy"], "chance": chance(spec.set)}
    rec["gap"] = rec["train_mca"] - rec["val_mca"]
    if rec["task"] == "occlusion-shift":
        occ = run_occlusion(out)["occlusion"]
        rec["occluded"] = {p: 100 * v["mean_class_accuracy"] for p, v in occ.items()}
        rec["occluded_mca"] = statistics.fmean(v for p, v in rec["occluded"].items()
                                               if p != "none")
    rec["stalled"] = rec["test_mca"] <= rec["chance"] + STALL_MARGIN
    rec.update(train_seconds=summary.get("wall_seconds"),
               wall_seconds=time.perf_counter() - t0, git=git_state(),
               provenance=summary.get("provenance") or provenance())
    return rec


def find_spec(key: str) -> RunSpec:
    """The run of the design (any stage) whose key is ``key``."""
    tune = read_jsonl(jsonl_path("tune"))
    for stage in ("main", "tune", "pilot"):
        for spec in design(stage, tune):
            if spec.key == key:
                return spec
    raise KeyError(f"no run of the suite is called {key!r}: see `python -m transfer_lib.book.suite "
                   f"--stage main --list`")


def rerun(key: str, out_root: str | Path = "runs/suite-rerun", **changes) -> dict:
    """Make the suite's run ``key`` again in ``out_root`` (never appended to the committed
    files) and return its record; ``changes`` are TrainConfig fields to change on top of the
    regime (``max_steps=1, epochs=1`` checks the path in seconds). Compare the record with the
    committed one by :func:`check_rerun`."""
    spec = find_spec(key)
    pretrained = ensure_stem(Path(out_root))
    return run_spec(spec, Path(out_root), pretrained, **changes)


def check_rerun(record: dict, runs: list[dict], metric: str = "test_mca") -> dict:
    """A rerun against the committed runs of its row: equal to its own seed's figure (to 1e-6)
    where the kernels were pinned and the stem is the committed one, else inside the 99 %
    prediction interval of the row's seeds (:func:`transfer_lib.book.ablate.check_rerun`)."""
    from transfer_lib.book.ablate import check_rerun as against

    prefix = record["key"].rsplit("/seed", 1)[0]
    committed = _by_seed(runs, prefix, metric)
    prov = record.get("provenance") or None
    same_stem = stem_reproduced() is not False
    result = against(record[metric], committed, record["seed"], prov if same_stem else None)
    if not same_stem:
        result["why"] = ("this machine's pretrained stem is not the committed one (its weights' "
                         "sha256 differ), so the run is another draw of the same recipe")
    return result


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def stage_name(stage: str) -> str:
    """The pilot's runs are filed by training-set size (``pilot-n350``), the others by stage."""
    return f"pilot-n{SIZES['train']}" if stage == "pilot" else stage


def jsonl_path(stage: str) -> Path:
    from transfer_lib.train.profiles import project_root

    return project_root() / "book" / "results" / f"suite-{stage_name(stage)}.jsonl"


def run_stage(stage: str, limit: int | None = None, only: str | None = None,
              out_root: str | Path = "runs/suite", shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Make the runs of ``stage`` that its JSONL file lacks, appending each as it ends.
    ``shard=(i, n)``: only the runs at positions i, i + n, ... of the design (so that n
    processes, one a core, share a stage; each appends its own lines)."""
    path = jsonl_path(stage)
    have = {r["key"] for r in read_jsonl(path)}
    specs = design(stage, read_jsonl(jsonl_path("tune")))
    todo = [s for i, s in enumerate(specs) if s.key not in have and i % shard[1] == shard[0]
            and (only is None or only in s.key)]
    pretrained = ensure_stem(out_root)
    made = []
    positive = {p for c in CONTROLS if c["role"] == "positive" for p in c["runs"]}
    claims = [s for s in todo if s.key.rsplit("/seed", 1)[0] not in positive]
    for spec in todo[:limit]:
        if stage == "main" and spec is (claims[0] if claims else None):
            failed = failed_positive_controls(read_jsonl(path))
            if failed:
                for c in failed:
                    print(f"positive control {c['id']} failed ({c['check']}): the design "
                          f"cannot show the claim; fix it (a dated amendment) before any "
                          f"claim runs", flush=True)
                break
        rec = run_spec(spec, Path(out_root) / stage_name(stage), pretrained)
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        made.append(rec)
        print(f"{spec.key}: train {rec['train_mca']:.1f} val {rec['val_mca']:.1f} test "
              f"{rec['test_mca']:.1f}"
              + (f" occluded {rec['occluded_mca']:.1f}" if "occluded_mca" in rec else "")
              + (" STALLED" if rec["stalled"] else "") + f" ({rec['wall_seconds']:.0f} s)",
              flush=True)
    left = len(todo) - len(made)
    print(f"{stage}: {len(made)} run(s) made, {left} left of {len(specs)}", flush=True)
    return made


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------
def t_two_sided_p(t: float, df: int) -> float:
    from transfer_lib.book.ablate import _t_central_mass

    return 1.0 - _t_central_mass(abs(t), df)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error control over ``pvalues``)."""
    order = sorted(pvalues, key=pvalues.get)
    m, adjusted, running = len(order), {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def _by_seed(runs: list[dict], prefix: str, metric: str) -> dict[int, float]:
    """``metric`` of the runs of ``prefix`` by seed; a prefix ``"x - y"`` gives the per-seed
    difference of the two (for a hypothesis about an interaction)."""
    if " - " in prefix:
        x, y = (_by_seed(runs, part, metric) for part in prefix.split(" - "))
        return {s: x[s] - y[s] for s in sorted(set(x) & set(y))}
    return {r["seed"]: r[metric] for r in runs
            if r["key"].rsplit("/seed", 1)[0] == prefix and metric in r}


def analyse(runs: list[dict], hypotheses: list[Hypothesis], alpha: float = 0.05) -> list[dict]:
    """Each hypothesis: the paired differences over the seeds both rows have, their mean, the
    two-sided paired-t p-value, Holm's adjusted p-value over the family, the interval at the
    family's Bonferroni level (1 - alpha / m) and the verdict under the registered rule:
    *supported* (Holm rejects 'no difference' and the mean is in the claimed direction), *not
    supported* (the adjusted interval lies below the smallest effect that matters, or Holm
    rejects in the other direction) or *inconclusive*."""
    from transfer_lib.book.ablate import t_quantile

    m = len(hypotheses)
    out, pvals = [], {}
    for h in hypotheses:
        a, b = _by_seed(runs, h.a, h.metric), _by_seed(runs, h.b, h.metric)
        seeds = sorted(set(a) & set(b))
        d = [a[s] - b[s] for s in seeds]
        row = dict(id=h.id, claim=h.claim, a=h.a, b=h.b, metric=h.metric,
                   smallest_effect=h.smallest_effect, seeds=seeds, differences=d,
                   estimate=statistics.fmean(d) if d else None)
        if len(d) >= 2:
            sd = statistics.stdev(d)
            se = sd / math.sqrt(len(d))
            t = row["estimate"] / se if se > 0 else math.copysign(math.inf, row["estimate"] or 1)
            row["p"] = pvals[h.id] = t_two_sided_p(t, len(d) - 1) if math.isfinite(t) else 0.0
            half = t_quantile(1 - alpha / (2 * m), len(d) - 1) * se
            row.update(sd=sd, low=row["estimate"] - half, high=row["estimate"] + half,
                       level=1 - alpha / m)
        out.append(row)
    # the family is the registered one: a hypothesis without its runs yet counts as p = 1
    adjusted = holm({h.id: pvals.get(h.id, 1.0) for h in hypotheses})
    for row in out:
        if row["id"] not in pvals:
            row.update(p_holm=None, verdict="inconclusive (too few seeds)")
            continue
        row["p_holm"] = adjusted[row["id"]]
        reject = row["p_holm"] < alpha
        if reject and row["estimate"] > 0:
            row["verdict"] = "supported"
        elif (reject and row["estimate"] < 0) or row["high"] < row["smallest_effect"]:
            row["verdict"] = "not supported"
        else:
            row["verdict"] = "inconclusive"
    return out


def _values(runs: list[dict], prefix: str, metric: str) -> list[float]:
    return list(_by_seed(runs, prefix, metric).values())


def control_results(runs: list[dict]) -> list[dict]:
    """Each control of :data:`CONTROLS` with its figures and ``passed`` (None while its runs
    are not all in)."""
    from transfer_lib.book.ablate import paired_difference, t_quantile

    out = []
    planned = [s.key for s in design("main")]
    have = {x["key"] for x in runs}
    for c in CONTROLS:
        r = dict(c)
        want = {k for k in planned if k.rsplit("/seed", 1)[0] in c["runs"]}
        complete = want <= have
        if c["id"] == "C1":
            v = _values(runs, c["runs"][0], "test_mca")
            if len(v) >= 2:
                half = t_quantile(0.975, len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))
                r.update(mean=statistics.fmean(v), low=statistics.fmean(v) - half,
                         high=statistics.fmean(v) + half)
                r["passed"] = r["low"] > 100 * 0.625
        elif c["id"] in ("C2", "C3"):
            metric = "occluded_mca" if c["id"] == "C2" else "test_mca"
            a, b = (_by_seed(runs, p, metric) for p in c["runs"])
            seeds = sorted(set(a) & set(b))
            d = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
            r.update(mean=d["mean"], low=d["low"], high=d["high"], seeds=seeds)
            if d["low"] is not None:
                r["passed"] = d["low"] > 0 if c["id"] == "C2" else d["high"] < 3.0
        elif c["id"] == "C4":
            v = _values(runs, c["runs"][0], "test_mca")
            if v:
                r.update(values=v, passed=all(abs(x - 25.0) <= 10.0 for x in v))
        elif c["id"] == "C5":
            v = _values(runs, c["runs"][0], "gap")
            if v:
                r.update(mean=statistics.fmean(v), values=v, passed=statistics.fmean(v) >= 10.0)
        r.setdefault("passed", None)
        r["complete"] = complete
        if not complete:
            r["passed"] = None
        out.append(r)
    return out


def failed_positive_controls(runs: list[dict]) -> list[dict]:
    """The positive controls whose runs are all in and that failed."""
    return [c for c in control_results(runs) if c["role"] == "positive" and c["passed"] is False]


def stalls(runs: list[dict]) -> list[str]:
    """Keys of the runs that stalled, C4's shuffled-label runs (which must) left out."""
    return [r["key"] for r in runs if r.get("stalled")
            and not r["key"].startswith("relational-shuffled/")]


def results(main_runs: list[dict] | None = None, tune_runs: list[dict] | None = None) -> dict:
    """The suite's results: every run, the chosen drop rates, each control and each hypothesis
    (:func:`analyse`), the stalls, the number of runs planned and made, and where the
    pre-registration is."""
    from transfer_lib.book.ablate import git_state

    main_runs = read_jsonl(jsonl_path("main")) if main_runs is None else main_runs
    tune_runs = read_jsonl(jsonl_path("tune")) if tune_runs is None else tune_runs
    rates = chosen_rates(tune_runs)
    hyps = HYPOTHESES + _h4(rates)
    planned = design("main", tune_runs)
    have = {r["key"] for r in main_runs}
    return dict(
        schema=1, preregistration=PREREGISTRATION, regime=REGIME, sizes=SIZES,
        data_seed=DATA_SEED, seeds=list(SEEDS), stem=dict(set=STEM_SET, run=STEM_RUN),
        chosen_rates=rates, tune_runs=tune_runs, runs=main_runs,
        planned=len(planned) + len(design("tune")), made=len(main_runs) + len(tune_runs),
        missing=[s.key for s in planned if s.key not in have],
        complete=rates is not None and all(s.key in have for s in planned),
        controls=control_results(main_runs), hypotheses=analyse(main_runs, hyps),
        stalls=stalls(main_runs + tune_runs),
        train_seconds=sum(r.get("train_seconds") or 0 for r in main_runs + tune_runs),
        wall_seconds=sum(r.get("wall_seconds") or 0 for r in main_runs + tune_runs),
        git=git_state())


def write_results(path: str | Path | None = None) -> Path:
    """Write :func:`results` to ``book/results/suite.json`` (atomically)."""
    from transfer_lib.train.profiles import project_root
    from transfer_lib.utils.atomic import atomic_write_text

    path = Path(path) if path is not None else project_root() / RESULTS
    atomic_write_text(path, json.dumps(results(), indent=1) + "\n")
    return path


def load_results(path: str | Path | None = None) -> dict:
    """The committed ``book/results/suite.json``."""
    from transfer_lib.train.profiles import project_root

    path = Path(path) if path is not None else project_root() / RESULTS
    return json.loads(path.read_text())


def stem_reproduced() -> bool | None:
    """Whether this machine's pretrained stem is the committed one, byte for byte (None while
    either record is missing): expected wherever the kernels are pinned."""
    from transfer_lib.train.profiles import project_root

    local = data_root("stem") / "ir50-tiny-additive.json"
    committed = project_root() / "book" / "results" / "suite-stem.json"
    if not (local.is_file() and committed.is_file()):
        return None
    sha = [json.loads(p.read_text())["weights_sha256"] for p in (local, committed)]
    return sha[0] == sha[1]


def describe_hypothesis(h: dict) -> str:
    """One sentence from a hypothesis of :func:`results`: the claim, the estimate with its
    adjusted interval and Holm p-value, the verdict and the registered rule behind it."""
    what = {"test_mca": "test mean class accuracy",
            "occluded_mca": "mean class accuracy with one part hidden"}[h["metric"]]
    if h.get("low") is None:
        return f"{h['id']}, {h['claim']}: not enough runs yet ({len(h['seeds'])} seed(s))."
    rule = {"supported": "Holm's test rejects 'no difference' and the difference has the "
                         "claimed sign",
            "not supported": "the adjusted interval lies below the smallest effect that matters "
                             f"({h['smallest_effect']:g} points)" if h["estimate"] >= 0 or
                             h["p_holm"] >= 0.05 else
                             "Holm's test rejects 'no difference' with the opposite sign",
            "inconclusive": "neither rule applies: the interval holds both 0 and the smallest "
                            f"effect that matters ({h['smallest_effect']:g} points)"}[h["verdict"]]
    return (f"{h['id']}, {h['claim']}: {h['estimate']:+.2f} points of {what} over "
            f"{len(h['seeds'])} seeds (adjusted interval [{h['low']:+.2f}, {h['high']:+.2f}], "
            f"Holm p = {h['p_holm']:.3g}): **{h['verdict']}**, because {rule}.")


def describe_control(c: dict) -> str:
    """One sentence from a control of :func:`results`."""
    state = {True: "passed", False: "**failed**", None: "not complete"}[c["passed"]]
    figures = ""
    if c.get("low") is not None:
        figures = f" (mean {c['mean']:+.2f}, 95 % interval [{c['low']:+.2f}, {c['high']:+.2f}])"
        if c["id"] == "C1":
            figures = (f" (mean {c['mean']:.1f} %, 95 % interval [{c['low']:.1f}, "
                       f"{c['high']:.1f}] %)")
    elif c.get("values"):
        figures = " (" + ", ".join(f"{v:.1f}" for v in c["values"]) + ")"
        if c.get("mean") is not None:
            figures = f" (mean {c['mean']:.1f}; runs {figures[2:]}"
    return f"{c['id']} ({c['role']}): {state}{figures}; it passes when {c['check']}."


def plot_forest(result: dict, ax=None):
    """Every hypothesis: its estimate with its adjusted interval (points; a diamond where the
    verdict is 'supported'), the smallest effect that matters as a tick, 0 as a line."""
    import matplotlib.pyplot as plt

    hyps = [h for h in result["hypotheses"] if h.get("low") is not None]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.55 * len(hyps) + 1.2))
    colours = {"supported": "tab:green", "not supported": "tab:red"}
    for i, h in enumerate(hyps):
        y = len(hyps) - 1 - i
        c = colours.get(h["verdict"], "tab:grey")
        ax.plot([h["low"], h["high"]], [y, y], color=c, lw=2)
        ax.plot(h["estimate"], y, "D" if h["verdict"] == "supported" else "o", color=c)
        ax.plot(h["smallest_effect"], y, "|", color="k", ms=10)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(hyps)))
    ax.set_yticklabels([f"{h['id']} ({h['verdict']})" for h in reversed(hyps)])
    ax.set_xlabel("difference, points (adjusted interval; | smallest effect that matters)")
    return ax


def results_markdown(res: dict) -> str:
    """The results page's section on the suite, from :func:`results` (its machine, commands,
    controls, verdicts and wall time)."""
    from transfer_lib.book.viz import markdown_rows

    prov = next((r["provenance"] for r in res["runs"] if r.get("provenance")), {})
    flags = ", ".join(k for k, v in (prov.get("cpu_flags") or {}).items() if v)
    commits = sorted({(r.get("git") or {}).get("commit", "?")[:7] for r in res["runs"]})
    lines = [
        "## The pre-registered suite (chapters 7, 9 and 11)",
        "",
        f"`book/results/preregistration.md` (committed before any tuning or main run), then "
        f"`python -m transfer_lib.book.suite --stage tune` and `--stage main` (two processes, "
        f"`--shard 0/2` and `1/2`, one a core) and `python -m transfer_lib.book.suite --analyse`, "
        f"which writes `book/results/suite.json`. {res['made']} of {res['planned']} runs"
        f"{' (complete)' if res['complete'] else ' (not complete)'}, pinned kernels, on a "
        f"{prov.get('cpu_count', '?')}-core {prov.get('cpu_model', '?')} ({flags}); each run "
        f"records the checkout's commit when it was appended ({', '.join(commits)}), none of "
        f"which changed training or evaluation; {res['train_seconds'] / 3600:.1f} hours of "
        f"training and "
        f"{res['wall_seconds'] / 3600:.1f} hours of wall time in all (one core a run, the other "
        f"core busy). Stalled runs outside C4: {', '.join(res['stalls']) or 'none'}. Drop "
        f"rates chosen on validation: "
        + ", ".join(f"`{k}` {v:g}" for k, v in (res["chosen_rates"] or {}).items()) + ".",
        "",
        markdown_rows(["control", "role", "passed"],
                      [[c["id"], c["role"], {True: "yes", False: "**no**", None: "-"}[c["passed"]]]
                       for c in res["controls"]]),
        "",
        markdown_rows(["hypothesis", "estimate (points)", "adjusted interval", "Holm p",
                       "verdict"],
                      [[h["id"], "-" if h["estimate"] is None else f"{h['estimate']:+.2f}",
                        "-" if h.get("low") is None else f"[{h['low']:+.2f}, {h['high']:+.2f}]",
                        "-" if h.get("p_holm") is None else f"{h['p_holm']:.3g}", h["verdict"]]
                       for h in res["hypotheses"]]),
    ]
    return "\n".join(lines)


def runs_table(runs: list[dict]) -> str:
    """Markdown: per row (a key without its seed), the seeds and the mean (sd over seeds where
    there are two or more) of train, val and test mean class accuracy, the train - val gap, the
    occluded mean class accuracy where measured, and the seconds a run took."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        groups.setdefault(r["key"].rsplit("/seed", 1)[0], []).append(r)

    def ms(rs, k):
        v = [r[k] for r in rs if r.get(k) is not None]
        if not v:
            return "-"
        return f"{statistics.fmean(v):.1f}" + (f" ({statistics.stdev(v):.1f})" if len(v) > 1
                                               else "")
    lines = ["| row | seeds | train | val | test | gap | occluded | s a run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rs in groups.items():
        lines.append(f"| `{name}` | {','.join(str(r['seed']) for r in rs)} | "
                     + " | ".join(ms(rs, k) for k in ("train_mca", "val_mca", "test_mca", "gap",
                                                      "occluded_mca", "wall_seconds")) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from transfer_lib.cli import types as T

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=("pilot", "tune", "main"))
    p.add_argument("--analyse", action="store_true",
                   help=f"write {RESULTS} from the runs made so far and print the verdicts")
    p.add_argument("--runs", type=T.positive_int(T.MAX_STEPS), default=None,
                   help="stop after this many runs")
    p.add_argument("--only", default=None, metavar="PATTERN",
                   help="run (or --list) only the keys containing this text")
    p.add_argument("--out", default="runs/suite", help="run directories (default runs/suite)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="make only every N-th run from the I-th (one process a core: 0/2, 1/2)")
    p.add_argument("--list", action="store_true", help="list the stage's runs and stop")
    p.add_argument("--rerun", metavar="KEY", default=None,
                   help="make one run of the suite again in --out (default runs/suite-rerun), "
                        "compare it with the committed runs and stop; appends to no file")
    p.add_argument("--table", action="store_true", help="print the stage's runs as a table")
    p.add_argument("--train", type=T.Number(int, 7, T.MAX_IMAGES), default=None, metavar="N",
                   help="pilot only: training images of each set (default "
                        f"{SIZES['train']})")
    a = p.parse_args(argv)
    try:
        shard = tuple(int(x) for x in a.shard.split("/"))
        if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
            raise ValueError
    except ValueError:
        p.error(f"--shard {a.shard!r}: give I/N with 0 <= I < N, e.g. 0/2")
    if a.rerun:
        out = a.out if a.out != "runs/suite" else "runs/suite-rerun"
        try:
            record = rerun(a.rerun, out)
        except KeyError as err:
            p.error(str(err.args[0]))
        check = check_rerun(record, read_jsonl(jsonl_path("main")) + read_jsonl(
            jsonl_path("tune")))
        print(f"{a.rerun}: test mean class accuracy {record['test_mca']:.2f} % "
              f"({check['mode']} check): {check['message']}\n{check['why']}")
        return 0 if check["ok"] else 1
    if a.analyse:
        path = write_results()
        res = load_results(path)
        for h in res["hypotheses"]:
            est = "-" if h["estimate"] is None else f"{h['estimate']:+.2f}"
            ci = "" if h.get("low") is None else f" [{h['low']:+.2f}, {h['high']:+.2f}]"
            print(f"{h['id']:4} {est}{ci} {h['verdict']}")
        for c in res["controls"]:
            print(f"{c['id']:4} {c['role']:8} passed={c['passed']}")
        print(f"{res['made']} of {res['planned']} runs; stalls: {res['stalls'] or 'none'}; "
              f"wrote {path}")
        return 0
    if a.stage is None:
        p.error("--stage is required (or --analyse)")
    if a.train is not None:
        if a.stage != "pilot":
            p.error(f"--train is for the pilot only (--stage pilot): --stage {a.stage} uses "
                    f"the registered sizes")
        SIZES["train"] = a.train
    if a.table:
        print(runs_table(read_jsonl(jsonl_path(a.stage))))
        return 0
    specs = design(a.stage, read_jsonl(jsonl_path("tune")))
    if a.only is not None:
        specs = [s for s in specs if a.only in s.key]
        if not specs:
            p.error(f"--only {a.only!r} matches no run of --stage {a.stage}: list the "
                    f"stage's run keys with --stage {a.stage} --list (without --only) and "
                    f"give a part of one")
    if a.list:
        have = {r["key"] for r in read_jsonl(jsonl_path(a.stage))}
        for s in specs:
            print(("done  " if s.key in have else "to do ") + s.group.ljust(6) + s.key)
        return 0
    run_stage(a.stage, a.runs, a.only, a.out, shard)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
