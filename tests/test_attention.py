import json
import math

import numpy as np
import pytest
import torch

from transfer_lib.book.ablate import ablate
from transfer_lib.book.attention import (
    branch_diversity,
    chance_overlap,
    committed_measure,
    figure_faces,
    find_runs,
    load_attention,
    load_maps,
    map_correlation,
    measure_run,
    rollout_map,
    top_count,
    top_mask,
    top_overlap,
)
from transfer_lib.cli import main
from transfer_lib.utils.errors import DataError, TransferError


def _grid(*values):
    return torch.tensor(values, dtype=torch.float32).reshape(2, 2)


# --- the measures --------------------------------------------------------------------------
def test_top_overlap_same_disjoint_and_partial():
    a = torch.arange(16.0).reshape(4, 4)  # top quarter: positions 12..15
    assert top_count(16, 0.25) == 4
    assert top_overlap(a, a).item() == 1.0
    assert top_overlap(a, -a).item() == 0.0  # top of -a: positions 0..3
    b = a.clone()
    b.view(-1)[[14, 15]] = -1.0  # b's top: 10, 11, 12, 13
    assert top_overlap(a, b).item() == pytest.approx(2 / 6)  # |{12, 13}| / |{10..15}|
    batch = torch.stack([a, -a, b])  # (3, 4, 4) against a each
    assert torch.allclose(top_overlap(batch, a.expand(3, 4, 4)), torch.tensor([1, 0, 2 / 6]))


def test_top_mask_breaks_ties_by_position():
    m = top_mask(torch.ones(3, 3), fraction=0.25)  # round(2.25) = 2 of 9 tie: the first two
    assert m.tolist() == [True, True] + [False] * 7
    with pytest.raises(TransferError, match=r"\(0, 1\)"):
        top_count(36, 1.5)


def test_map_correlation_signs_and_constant_maps():
    a = _grid(0.1, 0.2, 0.3, 0.9)
    assert map_correlation(a, a).item() == pytest.approx(1.0)
    assert map_correlation(a, 1 - a).item() == pytest.approx(-1.0)
    assert map_correlation(a, 2 * a + 0.1).item() == pytest.approx(1.0)
    assert math.isnan(map_correlation(a, torch.full((2, 2), 0.5)).item())


def test_chance_overlap_exact_and_by_simulation():
    # 2 of 4: intersection 0, 1, 2 with probabilities 1/6, 4/6, 1/6 -> IoU 0, 1/3, 1
    assert chance_overlap(4, 2) == pytest.approx(4 / 6 / 3 + 1 / 6)
    assert chance_overlap(5, 5) == 1.0
    rng = np.random.default_rng(0)
    a, b = (torch.as_tensor(rng.random((20000, 6, 6))) for _ in range(2))
    simulated = top_overlap(a, b).mean().item()
    assert simulated == pytest.approx(chance_overlap(36, 9), abs=0.005)


def test_branch_diversity_is_the_mean_over_pairs():
    a, b = _grid(0, 1, 2, 3), _grid(3, 2, 1, 0)
    two = branch_diversity(torch.stack([a, b])[None], fraction=0.5)
    assert two["overlap"].tolist() == [0.0] and two["correlation"].tolist() == [-1.0]
    three = branch_diversity(torch.stack([a, b, a])[None], fraction=0.5)
    assert three["overlap"].item() == pytest.approx(1 / 3)  # pairs (a,b), (a,a), (b,a)
    assert three["correlation"].item() == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="2 branches"):
        branch_diversity(torch.ones(1, 1, 2, 2))


def test_rollout_map_is_the_cls_row_without_its_own_column():
    torch.manual_seed(0)
    attn = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(2)]  # 2x2 grid + cls
    r = rollout_map(attn, 2)
    assert r.shape == (2, 2, 2)
    assert ((r > 0) & (r < 1)).all() and (r.flatten(1).sum(1) < 1).all()


def test_figure_faces_takes_the_first_face_of_each_class():
    names = ["Surprise", "Fear", "Happiness"]
    assert figure_faces([2, 0, 2, 1], names, ("Happiness", "Surprise", "Anger")) == [0, 1]
    assert figure_faces([1, 1], names, ("Anger", "Sadness")) == [0, 1]


# --- an ablation's runs --------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """vit_fer, local and local_mad at the smoke scale, 2 seeds, one step each, then the
    attention command on their run directories."""
    tmp = tmp_path_factory.mktemp("att")
    runs, prefix = tmp / "runs", tmp / "results" / "attention-smoke"
    ablate("smoke", seeds=2, rows=["vit_fer", "local", "local_mad"], out=runs,
           progress=False, occlusion=False, epochs=1, max_steps=1)
    rc = main(["attention", "--runs", str(runs), "--out", str(prefix), "--no-progress"])
    assert rc == 0
    return runs, prefix


def test_attention_writes_measures_maps_and_provenance(study):
    runs, prefix = study
    result = load_attention(prefix)
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["vit_fer", "local", "local_mad"]
    g, t = result["grid"][0], result["top_positions"]
    assert t == top_count(g * g) and result["chance_overlap"] == chance_overlap(g * g, t)
    assert not rows["vit_fer"]["has_lanets"] and "overlap" not in rows["vit_fer"]["stats"]
    for name in ("local", "local_mad"):
        r = rows[name]
        assert r["has_lanets"] and r["seeds"] == [0, 1]
        for run in r["runs"]:
            m = run["metrics"]
            assert 0 <= m["overlap"] <= 1 and -1 <= m["correlation"] <= 1
            summary = json.loads((runs / name / f"seed{run['seed']}" / "summary.json").read_text())
            # the right weights: the run's own accuracy, up to one image of another precision
            n = result["num_samples"]
            assert abs(m["accuracy"] - 100 * summary["final_accuracy"]) <= 100 / n + 1e-9
        s = r["stats"]["overlap"]
        assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(s["values"]))
    # the paired step that adds MAD, over both seeds
    assert [(c["before"], c["to"]) for c in result["comparisons"]] == [("local", "local_mad")]
    d = result["comparisons"][0]["differences"]["overlap"]
    assert d["n"] == 2 and d["low"] <= d["mean"] <= d["high"]
    values = [rows[k]["stats"]["overlap"]["values"] for k in ("local_mad", "local")]
    assert d["mean"] == pytest.approx(np.mean(np.subtract(*values)))
    # provenance
    prov = result["provenance"]
    assert prov["command"] == f"python -m transfer_lib attention --runs {runs} --out {prefix}"
    for key in ("git", "torch", "python", "machine", "started", "finished", "wall_seconds"):
        assert key in prov
    assert result["source_ablation"]["command"].startswith("python -m transfer_lib ablate")
    md = prefix.with_suffix(".md").read_text()
    assert "| `local_mad` |" in md and "`local` → `local_mad`" in md and "Provenance" in md


def test_maps_file_is_small_and_holds_what_measure_run_computes(study):
    runs, prefix = study
    result, maps = load_attention(prefix), load_maps(prefix)
    npz = prefix.with_name(prefix.name + ".npz")
    assert npz.stat().st_size < 100_000 and result["maps_file"] == npz.name
    faces = [f["index"] for f in result["faces"]]
    size = maps["faces"].shape[1]
    assert maps["faces"].dtype == np.uint8 and maps["faces"].shape == (len(faces), size, size, 3)
    assert maps["labels"].tolist() == [f["label"] for f in result["faces"]]
    assert "vit_fer.seed0.rollout" in maps and "vit_fer.seed0.lanet" not in maps
    lanet, fused = maps["local.seed1.lanet"], maps["local.seed1.fused"]
    g = result["grid"][0]
    assert lanet.shape == (len(faces), 2, g, g) and fused.shape == (len(faces), g, g)
    assert np.array_equal(fused, lanet.max(1))  # evaluation: the fused map is the max
    # measuring the run again gives the same figures and maps (float16 in the file)
    record, again = measure_run(runs / "local" / "seed1", faces=faces)
    assert record["metrics"] == pytest.approx(
        {k: v for k, v in result["rows"][1]["runs"][1]["metrics"].items()})
    assert committed_measure(result, "local", 1) == record["metrics"]["overlap"]
    assert np.allclose(again["lanet"], lanet, atol=1e-3)
    assert np.allclose(again["rollout"], maps["local.seed1.rollout"], atol=1e-3)
    # another order of the faces gives the same maps in that order
    _, reordered = measure_run(runs / "local" / "seed1", faces=faces[::-1])
    assert np.allclose(reordered["lanet"], again["lanet"][::-1])


def test_attention_errors(study, tmp_path, capsys):
    runs, _ = study
    assert main(["attention", "--runs", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["attention", "--runs", str(runs), "--rows", "ir50"]) == 2
    assert "no attention" in capsys.readouterr().err
    assert main(["attention", "--runs", str(runs), "--top", "1.5"]) == 2
    assert "(0, 1)" in capsys.readouterr().err
    assert main(["attention", "--runs", str(runs), "--rows", "transfer"]) == 2
    assert "no run directory" in capsys.readouterr().err
    (tmp_path / "only" / "ir50" / "seed0").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no run directory"):
        find_runs(tmp_path / "only")
    with pytest.raises(DataError, match="not found"):
        load_attention(tmp_path / "missing")
    with pytest.raises(TransferError, match="distinct indices"):
        measure_run(runs / "local" / "seed0", faces=[0, 0])
