import json

import pytest

from transfer_lib.book.ablate import (
    ROWS,
    ablate,
    committed_figure,
    describe_provenance,
    find_comparison,
    load_ablation,
    markdown_table,
    rerun,
    run_table,
    seed_values,
)
from transfer_lib.cli import main
from transfer_lib.data.synth import PARTS
from transfer_lib.utils.errors import DataError, TransferError


def test_rows_cover_the_cnn_the_paper_and_the_comparisons():
    assert list(ROWS) == ["ir50", "vit_fer", "local", "local_mad", "transfer", "transfer_token",
                          "local_dropout", "local_dropblock", "local_spatial"]
    assert ROWS["ir50"].variant == "ir50"
    assert ROWS["local_dropblock"].variant == "local_mad"


@pytest.fixture(scope="module")
def smoke_ablation(tmp_path_factory):
    """ir50, vit_fer and local at the smoke scale, 2 seeds, one step each, through the CLI."""
    tmp = tmp_path_factory.mktemp("abl")
    out, results = tmp / "runs", tmp / "results" / "ablation-smoke"
    rc = main(["ablate", "--profile", "smoke", "--seeds", "2", "--rows", "ir50,vit_fer,local",
               "--epochs", "1", "--max-steps", "1", "--out", str(out), "--results", str(results),
               "--no-progress"])
    assert rc == 0
    return out, results


def test_ablate_smoke_writes_rows_pairs_occlusion_provenance(smoke_ablation, capsys):
    out, results = smoke_ablation
    result = load_ablation(results)
    assert json.loads((out / "ablation.json").read_text()) == result
    assert result["seed_plan"] == {"ir50": [0, 1], "vit_fer": [0, 1], "local": [0, 1]}
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["ir50", "vit_fer", "local"]
    for r in rows.values():
        assert len(r["accuracy"]) == 2 and r["accuracy_std"] is not None
        assert r["paper_accuracy"] is None  # synthetic data: no paper figure
        for run in r["runs"]:
            m = run["metrics"]
            assert 0 <= m["accuracy"] <= 100 and 0 <= m["occluded_accuracy"] <= 100
            assert {f"occluded_{p}" for p in PARTS} | {f"drop_{p}" for p in PARTS} <= set(m)
            assert run["occlusion_checkpoint"] == "last.pt"
            assert run["occlusion_method"] == "re-rendered"
            occ = json.loads((out / r["row"] / f"seed{run['seed']}" / "occlusion.json").read_text())
            # the fp32 re-evaluation of the final weights gives the run's own figure (up to one
            # image, should the trainer evaluate at another precision or through its cache)
            assert abs(m["occluded_none"] - m["accuracy"]) <= 100 / occ["num_samples"] + 1e-9
            assert occ["checkpoint"] == "last.pt" and list(occ["occlusion"]) == ["none", *PARTS]
    assert rows["ir50"]["variant"] == "ir50"
    summary = json.loads((out / "ir50" / "seed1" / "summary.json").read_text())
    assert summary["variant"] == "ir50" and summary["seed"] == 1
    # the pairs: (i) -> (ii) only, since local_mad and transfer did not run
    assert [(c["before"], c["to"]) for c in result["comparisons"]] == [("vit_fer", "local")]
    diff = result["comparisons"][0]["differences"]["accuracy"]
    assert diff["n"] == 2 and diff["low"] <= diff["mean"] <= diff["high"]
    # provenance
    prov = result["provenance"]
    assert prov["command"].startswith("python -m transfer_lib ablate --profile smoke --seeds 2")
    assert f"--results {results}" in prov["command"]
    for key in ("git", "python", "torch", "machine", "loadavg_start", "loadavg_end", "started",
                "finished", "wall_seconds", "train_overrides", "runs"):
        assert key in prov
    assert prov["train_overrides"] == {"epochs": 1, "max_steps": 1}
    assert {"cpu", "cpu_count", "torch_threads"} <= set(prov["machine"])
    assert len(prov["runs"]) == 6 and all(r["wall_seconds"] > 0 for r in prov["runs"])
    assert all(r["trained_by_this_command"] for r in prov["runs"])
    md = results.with_suffix(".md").read_text()
    assert md == (out / "ablation.md").read_text() == markdown_table(result)
    assert "| `ir50` |" in md and "90.91" in md and "not reproduced" in md
    assert "`vit_fer` → `local`" in md and "95 % interval" in md and "Occlusion" in md
    assert committed_figure(results, "vit_fer", 1) == rows["vit_fer"]["runs"][1]["metrics"]["accuracy"]
    with pytest.raises(TransferError, match="no seed 7"):
        committed_figure(result, "vit_fer", 7)
    with pytest.raises(TransferError, match="not in this ablation"):
        committed_figure(result, "transfer", 0)


def test_run_table_seed_values_and_find_comparison_read_the_runs(smoke_ablation):
    _, results = smoke_ablation
    result = load_ablation(results)
    table = run_table(result)
    # one record per run, in row order, carrying every recorded metric
    assert [(t["row"], t["seed"]) for t in table] == [
        (row, seed) for row in ("ir50", "vit_fer", "local") for seed in (0, 1)]
    local1 = result["rows"][2]["runs"][1]["metrics"]
    assert table[-1] == {"row": "local", "seed": 1, **local1}
    assert seed_values(result, "local", "drop_mean") == {
        run["seed"]: run["metrics"]["drop_mean"] for run in result["rows"][2]["runs"]}
    assert seed_values(result, "ir50") == {t["seed"]: t["accuracy"] for t in table[:2]}
    with pytest.raises(TransferError, match="not in this ablation; rows: ir50, vit_fer, local"):
        seed_values(result, "transfer")
    with pytest.raises(TransferError, match="metric 'f1' not recorded"):
        seed_values(result, "ir50", "f1")
    found = find_comparison(result, "vit_fer", "local")
    assert found is result["comparisons"][0]
    # the reversed pair and a pair with a row that did not run are absent
    assert find_comparison(result, "local", "vit_fer") is None
    assert find_comparison(result, "ir50", "transfer") is None


def test_describe_provenance_names_command_commit_machine_and_run_times(smoke_ablation):
    _, results = smoke_ablation
    result = load_ablation(results)
    prov = result["provenance"]
    text = describe_provenance(result, "committed, x.json")
    lines = text.splitlines()
    assert lines[0] == "ablation committed, x.json"
    assert f"command: {prov['command']}" in text
    commit = (prov["git"] or {}).get("commit") or "unknown"
    assert f"commit {commit[:12]}" in text and f"torch {prov['torch']}" in text
    assert f"{prov['machine']['cpu_count']} cores" in text
    assert "{'epochs': 1, 'max_steps': 1}" in text
    walls = [r["wall_seconds"] for r in prov["runs"]]
    assert lines[-1].startswith(f"  6 runs, {sum(walls) / 60:.0f} min of training: "
                                f"{min(walls):.0f} to {max(walls):.0f} s a run")
    # a result without provenance (a hand-made file) still describes itself
    bare = describe_provenance({"profile": "cpu", "data": "d"}, "hand-made")
    assert "command: unknown" in bare and "runs," not in bare


def test_ablate_again_recomputes_nothing(smoke_ablation, monkeypatch):
    out, results = smoke_ablation
    before = load_ablation(results)

    def boom(*a, **k):
        raise AssertionError("a complete run was trained or tested again")

    monkeypatch.setattr("transfer_lib.train.train", boom)
    monkeypatch.setattr("transfer_lib.evaluate.occlusion.evaluate_occlusion", boom)
    again = ablate("smoke", 2, ["ir50", "vit_fer", "local"], out, progress=False,
                   epochs=1, max_steps=1)
    assert [r["runs"] for r in again["rows"]] != []
    for a, b in zip(again["rows"], before["rows"]):
        assert [r["metrics"] for r in a["runs"]] == [r["metrics"] for r in b["runs"]]
    assert not any(r["trained_by_this_command"] for r in again["provenance"]["runs"])
    # another recipe in the same folder is refused, not silently answered with the old runs
    with pytest.raises(TransferError, match="another recipe"):
        ablate("smoke", 2, ["vit_fer"], out, progress=False, epochs=2, max_steps=1)


def test_rerun_lands_on_the_committed_figure(smoke_ablation, tmp_path):
    _, results = smoke_ablation
    record = rerun(results, "ir50", 0, tmp_path / "again")
    assert record["trained"] and record["seed"] == 0
    assert abs(record["metrics"]["accuracy"] - committed_figure(results, "ir50", 0)) <= 1.0


def test_load_ablation_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_ablation(tmp_path / "nothing")
    (tmp_path / "old.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="layout version"):
        load_ablation(tmp_path / "old.json")
    (tmp_path / "list.json").write_text("[1, 2]")  # valid JSON, not a results record
    with pytest.raises(DataError, match="layout version list"):
        load_ablation(tmp_path / "list.json")
    (tmp_path / "cut.json").write_text('{"schema": ')
    with pytest.raises(DataError, match="not valid JSON"):
        load_ablation(tmp_path / "cut")


@pytest.mark.parametrize("argv, words", [
    (["--rows", "vit_fer,bogus"], ["bogus", "local_mad", "transfer_token", "ir50"]),
    (["--seeds", "0"], ["--seeds 0"]),
    (["--seeds", "3,bogus=2"], ["unknown row(s) bogus", "local_mad"]),
    (["--rows", "ir50", "--seeds", "local=5"], ["local", "--rows does not run (ir50)"]),
])
def test_bad_ablate_arguments(argv, words, tmp_path, capsys):
    assert main(["ablate", "--profile", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


def test_book_ablations_are_plans_chapter_7_can_run_and_read():
    """Chapter 7's live ablations: known profiles and rows, every row its claims table reads,
    at least 3 seeds (2 give an interval 12.7 standard errors wide), TrainConfig overrides."""
    import dataclasses

    from transfer_lib.book.ablate import BOOK_ABLATIONS, PAPER_ROWS, ROWS
    from transfer_lib.train import TrainConfig
    from transfer_lib.train.profiles import PROFILE_NAMES

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(BOOK_ABLATIONS) == {"paper", "gpu"} and set(BOOK_ABLATIONS) <= set(PROFILE_NAMES)
    for plan in BOOK_ABLATIONS.values():
        assert {"ir50", *PAPER_ROWS} <= set(plan["rows"]) <= set(ROWS)
        assert plan["seeds"] >= 3
        assert set(plan) - {"seeds", "rows"} <= fields
    assert BOOK_ABLATIONS["paper"]["rows"] == tuple(ROWS)  # the paper's budget runs every row
